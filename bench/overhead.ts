/**
 * Source overhead: closed-loop pgbench TPS of single-row INSERT transactions with no
 * capture, with walhook attached, and with the trigger capture. A run with
 * pg_recvlogical attached shows what any logical replication client costs the server.
 *
 * Two placements are measured. `shared`: every process may run on every core, as on a
 * single 2-core host. `pinned`: PostgreSQL and pgbench run on CPU 0, and the capture's
 * client side (walhook or the poller, and the receiver) on CPU 1. The pinned
 * placement stands for the usual deployment, where walhook runs on another host than
 * the database. It therefore counts what the capture costs the database server itself.
 * For walhook that is the walsender's decoding, and for the baseline the trigger and
 * the poller's queries.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

import type { TestPostgres } from '../test/helpers/postgres.js';
import { type PhaseContext, insertTableSql, recreateDatabase, startPerEventWalhook, writeInsertScript } from './insert-load.js';
import { pinProcess, pinServer, runPgbench, startRecvlogical, type RecvlogicalRun } from './postgres-tools.js';
import { readCpuSeconds } from './proc-stats.js';
import { mean } from './stats.js';
import { TriggerPoller } from './trigger-baseline.js';
import { PENDING_EVENTS_SQL, TRIGGER_SETUP_SQL, attachTriggerSql, detachTriggerSql } from './trigger-sql.js';
import type { BenchWalhook } from './walhook-runner.js';
import { createSlot, dropSlot, withClient } from './workloads.js';

export type CaptureMode = 'none' | 'walhook' | 'pg_recvlogical' | 'trigger';
export type Placement = 'shared' | 'pinned';

export interface OverheadRun {
  readonly placement: Placement;
  readonly mode: CaptureMode;
  readonly round: number;
  readonly tps: number;
  readonly transactions: number;
  /** Events the receiver got during the pgbench run, per second. */
  readonly deliveredPerSecond: number | null;
  /** walhook and pg_recvlogical: WAL bytes the slot had not confirmed when pgbench ended. */
  readonly lagBytesAtEnd: number | null;
  /** trigger: events not yet delivered when pgbench ended. */
  readonly pendingEventsAtEnd: number | null;
  /** CPU seconds per wall second of walhook, pg_recvlogical or the poller. */
  readonly captureCpuShare: number | null;
  /** walhook and pg_recvlogical: CPU seconds per wall second of the walsender that decodes for it. */
  readonly walsenderCpuShare: number | null;
}

export interface OverheadSummary {
  readonly placement: Placement;
  readonly noneTps: number;
  readonly walhookTps: number;
  readonly triggerTps: number;
  readonly recvlogicalTps: number;
  readonly walhookRatio: number;
  readonly triggerRatio: number;
  readonly recvlogicalRatio: number;
}

export interface OverheadResult {
  readonly clients: number;
  readonly threads: number;
  readonly seconds: number;
  readonly runs: OverheadRun[];
  readonly summaries: OverheadSummary[];
  /** Reason the pinned placement was skipped, or null when it ran. */
  readonly pinnedSkipped: string | null;
}

export type OverheadContext = PhaseContext;

const DATABASE = 'bench_overhead';
const TABLE = 'overhead_rows';
const PGBENCH_CLIENTS = 8;
const PGBENCH_THREADS = 2;
const ALL_CPUS = '0-1';

export async function measureOverhead(context: OverheadContext): Promise<OverheadResult> {
  const { server, log } = context;
  await recreateDatabase(server, DATABASE);
  await withClient(server, DATABASE, async (client) => {
    await client.query(insertTableSql(TABLE));
    for (const sql of TRIGGER_SETUP_SQL) await client.query(sql);
    await client.query(`CREATE PUBLICATION ${DATABASE} FOR TABLE ${TABLE}`);
  });
  const script = await writeInsertScript(join(context.workDir, 'overhead.sql'), TABLE, 'overhead');

  const placements: Placement[] = ['shared'];
  const pinnedSkipped = availableParallelism() < 2 ? `only ${availableParallelism()} CPU available` : null;
  if (pinnedSkipped === null) placements.push('pinned');

  const runs: OverheadRun[] = [];
  for (const placement of placements) {
    if (placement === 'pinned') {
      await pinServer(server, '0');
      await pinProcess(process.pid, '1');
    }
    try {
      for (let round = 1; round <= context.scale.overheadRounds; round++) {
        for (const mode of ['none', 'walhook', 'pg_recvlogical', 'trigger'] as const) {
          const run = await runOnce(context, script, placement, mode, round);
          log(
            `overhead ${placement} round ${round} ${mode}: ${run.tps.toFixed(0)} tps` +
              (run.deliveredPerSecond === null ? '' : `, capture delivered ${run.deliveredPerSecond.toFixed(0)} events/s`),
          );
          runs.push(run);
        }
      }
    } finally {
      if (placement === 'pinned') {
        await pinServer(server, ALL_CPUS);
        await pinProcess(process.pid, ALL_CPUS);
      }
    }
  }
  await server.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);

  const summaries = placements.map((placement) => {
    const tpsOf = (mode: CaptureMode): number =>
      mean(runs.filter((run) => run.placement === placement && run.mode === mode).map((run) => run.tps));
    const noneTps = tpsOf('none');
    return {
      placement,
      noneTps,
      walhookTps: tpsOf('walhook'),
      triggerTps: tpsOf('trigger'),
      walhookRatio: tpsOf('walhook') / noneTps,
      triggerRatio: tpsOf('trigger') / noneTps,
      recvlogicalTps: tpsOf('pg_recvlogical'),
      recvlogicalRatio: tpsOf('pg_recvlogical') / noneTps,
    };
  });
  return {
    clients: PGBENCH_CLIENTS,
    threads: PGBENCH_THREADS,
    seconds: context.scale.overheadSeconds,
    runs,
    summaries,
    pinnedSkipped,
  };
}

async function runOnce(
  context: OverheadContext,
  script: string,
  placement: Placement,
  mode: CaptureMode,
  round: number,
): Promise<OverheadRun> {
  const { server, tools, receiver } = context;
  const serverCpus = placement === 'pinned' ? '0' : undefined;
  const captureCpus = placement === 'pinned' ? '1' : undefined;
  const slot = `${DATABASE}_${placement}_${round}`;

  await withClient(server, DATABASE, async (client) => {
    await client.query(`TRUNCATE ${TABLE}, bench_event_log`);
    await client.query('VACUUM ANALYZE');
    await client.query('CHECKPOINT');
  });
  receiver.resetCounts();
  receiver.responseDelayMs = 0;

  let walhook: BenchWalhook | undefined;
  let poller: TriggerPoller | undefined;
  let recvlogical: RecvlogicalRun | undefined;
  if (mode === 'walhook') {
    await createSlot(server, DATABASE, slot);
    walhook = await startPerEventWalhook(context, {
      database: DATABASE,
      slot,
      table: TABLE,
      ...(captureCpus === undefined ? {} : { cpuList: captureCpus }),
    });
  } else if (mode === 'pg_recvlogical') {
    await createSlot(server, DATABASE, slot);
    recvlogical = startRecvlogical(context.tools, server, {
      database: DATABASE,
      slot,
      publication: DATABASE,
      ...(captureCpus === undefined ? {} : { cpuList: captureCpus }),
    });
  } else if (mode === 'trigger') {
    await withClient(server, DATABASE, (client) => client.query(attachTriggerSql(TABLE)));
    poller = await TriggerPoller.start(server.connectionStringFor(DATABASE), receiver.url, captureCpus);
  }
  const capturePid = walhook?.pid ?? recvlogical?.pid ?? poller?.pid;
  const walsenderPid = walhook !== undefined || recvlogical !== undefined ? await activeWalsenderPid(server, slot) : undefined;

  try {
    const cpuBefore = capturePid === undefined ? undefined : readCpuSeconds(capturePid);
    const walsenderCpuBefore = walsenderPid === undefined ? undefined : readCpuSeconds(walsenderPid);
    const startedAt = performance.now();
    const pgbench = await runPgbench(tools, server, {
      database: DATABASE,
      scriptFile: script,
      clients: PGBENCH_CLIENTS,
      threads: PGBENCH_THREADS,
      seconds: context.scale.overheadSeconds,
      ...(serverCpus === undefined ? {} : { cpuList: serverCpus }),
    });
    const wallSeconds = (performance.now() - startedAt) / 1000;
    const cpuAfter = capturePid === undefined ? undefined : readCpuSeconds(capturePid);
    const walsenderCpuAfter = walsenderPid === undefined ? undefined : readCpuSeconds(walsenderPid);
    const delivered = receiver.counts().events;

    let lagBytesAtEnd: number | null = null;
    let pendingEventsAtEnd: number | null = null;
    if (mode === 'walhook' || mode === 'pg_recvlogical') {
      const rows = await server.query<{ lag: string }>(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag
           FROM pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      lagBytesAtEnd = Number(rows[0]?.lag ?? Number.NaN);
    } else if (mode === 'trigger') {
      pendingEventsAtEnd = await withClient(server, DATABASE, async (client) => {
        const result = await client.query<{ pending: number }>(PENDING_EVENTS_SQL);
        return result.rows[0]!.pending;
      });
    }
    return {
      placement,
      mode,
      round,
      tps: pgbench.tps,
      transactions: pgbench.transactions,
      deliveredPerSecond: mode === 'none' || mode === 'pg_recvlogical' ? null : delivered / wallSeconds,
      lagBytesAtEnd,
      pendingEventsAtEnd,
      captureCpuShare:
        cpuBefore === undefined || cpuAfter === undefined ? null : (cpuAfter - cpuBefore) / wallSeconds,
      walsenderCpuShare:
        walsenderCpuBefore === undefined || walsenderCpuAfter === undefined
          ? null
          : (walsenderCpuAfter - walsenderCpuBefore) / wallSeconds,
    };
  } finally {
    if (walhook !== undefined) {
      await walhook.stop();
      await dropSlot(server, slot);
    }
    if (recvlogical !== undefined) {
      recvlogical.kill();
      // pg_recvlogical exits with an error status when it is stopped by a signal.
      await recvlogical.exited.catch(() => undefined);
      await dropSlot(server, slot);
    }
    if (poller !== undefined) {
      await poller.stop();
      await withClient(server, DATABASE, (client) => client.query(detachTriggerSql(TABLE)));
    }
  }
}

/**
 * Returns the process id of the walsender streaming from `slot`, waiting up to 5 s for a
 * client that is still connecting, or undefined.
 */
async function activeWalsenderPid(server: TestPostgres, slot: string): Promise<number | undefined> {
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline) {
    const rows = await server.query<{ active_pid: number | null }>(
      'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    const pid = rows[0]?.active_pid;
    if (pid !== null && pid !== undefined) return pid;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
}
