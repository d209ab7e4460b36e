/**
 * Commit-to-receipt latency under an open-loop load: pgbench `--rate` schedules
 * single-row INSERT transactions at a fixed rate whatever the capture does, and the
 * receiver records, for each event, its arrival time minus its commit time. walhook
 * and the trigger baseline each capture their own table in the same database.
 */
import { join } from 'node:path';

import { type PhaseContext, insertTableSql, recreateDatabase, startPerEventWalhook, writeInsertScript } from './insert-load.js';
import { runPgbench } from './postgres-tools.js';
import { readCpuSeconds } from './proc-stats.js';
import { percentile } from './stats.js';
import { TriggerPoller } from './trigger-baseline.js';
import { TRIGGER_SETUP_SQL, attachTriggerSql } from './trigger-sql.js';
import { createSlot, dropSlot, withClient } from './workloads.js';

export type Capture = 'walhook' | 'trigger';

export interface LatencyRun {
  readonly capture: Capture;
  readonly targetRate: number;
  /** Rate pgbench achieved, in transactions per second. */
  readonly achievedRate: number;
  /** Average lag of pgbench behind its schedule, in ms. */
  readonly scheduleLagMs: number | null;
  readonly transactions: number;
  /** Events committed after the warm-up, which the percentiles cover. */
  readonly samples: number;
  /**
   * Events that had not arrived when the wait ended. They count as slower than every
   * arrived event, so a percentile that falls among them is reported as null.
   */
  readonly missing: number;
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  /** CPU seconds per wall second of walhook or the poller during the run. */
  readonly captureCpuShare: number | null;
}

export type LatencyContext = PhaseContext;

const DATABASE = 'bench_latency';
const WALHOOK_TABLE = 'latency_walhook';
const TRIGGER_TABLE = 'latency_trigger';
const PGBENCH_CLIENTS = 4;
const PGBENCH_THREADS = 2;

export async function measureLatency(context: LatencyContext): Promise<LatencyRun[]> {
  const { server, receiver, scale, log } = context;
  await recreateDatabase(server, DATABASE);
  await withClient(server, DATABASE, async (client) => {
    for (const table of [WALHOOK_TABLE, TRIGGER_TABLE]) await client.query(insertTableSql(table));
    for (const sql of TRIGGER_SETUP_SQL) await client.query(sql);
    await client.query(attachTriggerSql(TRIGGER_TABLE));
    await client.query(`CREATE PUBLICATION ${DATABASE} FOR TABLE ${WALHOOK_TABLE}`);
  });
  await createSlot(server, DATABASE, `${DATABASE}_walhook`);

  const runs: LatencyRun[] = [];
  receiver.responseDelayMs = 0;

  const walhook = await startPerEventWalhook(context, {
    database: DATABASE,
    slot: `${DATABASE}_walhook`,
    table: WALHOOK_TABLE,
  });
  try {
    for (const rate of scale.latencyRates) {
      const run = await runAtRate(context, 'walhook', WALHOOK_TABLE, rate, walhook.pid);
      log(describeRun(run));
      runs.push(run);
    }
  } finally {
    await walhook.stop();
  }

  const poller = await TriggerPoller.start(server.connectionStringFor(DATABASE), receiver.url);
  try {
    for (const rate of scale.latencyRates) {
      const run = await runAtRate(context, 'trigger', TRIGGER_TABLE, rate, poller.pid);
      log(describeRun(run));
      runs.push(run);
    }
  } finally {
    await poller.stop();
  }
  await dropSlot(server, `${DATABASE}_walhook`);
  await server.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  return runs;
}

async function runAtRate(
  context: LatencyContext,
  capture: Capture,
  table: string,
  rate: number,
  capturePid: number,
): Promise<LatencyRun> {
  const { server, tools, receiver, scale } = context;
  const script = await writeInsertScript(join(context.workDir, `latency-${table}.sql`), table, 'latency');
  receiver.resetCounts();
  const startedAtMs = Date.now();
  receiver.startSampling(startedAtMs + scale.latencyWarmupSeconds * 1000);
  const cpuBefore = readCpuSeconds(capturePid);
  const wallBefore = performance.now();

  const pgbench = await runPgbench(tools, server, {
    database: DATABASE,
    scriptFile: script,
    clients: PGBENCH_CLIENTS,
    threads: PGBENCH_THREADS,
    seconds: scale.latencySeconds,
    rate,
  });
  // A capture that keeps up delivers the last events within a few seconds. One that
  // falls behind gets as long as the run itself to catch up, then the rest is missing.
  const waitMs = Math.max(10_000, scale.latencySeconds * 1000);
  let arrived = true;
  try {
    await receiver.waitForEvents(pgbench.transactions, waitMs);
  } catch {
    arrived = false;
  }
  const cpuAfter = readCpuSeconds(capturePid);
  const wallSeconds = (performance.now() - wallBefore) / 1000;
  const samples = receiver.stopSampling();
  const received = receiver.counts().events;
  // Missing events were committed at some time in the run; counting all of them as
  // samples is the conservative choice for the percentiles.
  const missing = arrived ? 0 : Math.max(0, pgbench.transactions - received);
  const sorted = samples.sort((a, b) => a - b);
  const total = sorted.length + missing;
  const at = (fraction: number): number | null => {
    const rank = Math.ceil(fraction * total);
    return rank <= sorted.length ? percentile(sorted, rank) : null;
  };
  return {
    capture,
    targetRate: rate,
    achievedRate: pgbench.tps,
    scheduleLagMs: pgbench.scheduleLagAverageMs,
    transactions: pgbench.transactions,
    samples: total,
    missing,
    p50Ms: at(0.5),
    p95Ms: at(0.95),
    p99Ms: at(0.99),
    maxMs: missing > 0 ? null : (sorted[sorted.length - 1] ?? null),
    captureCpuShare: cpuBefore === undefined || cpuAfter === undefined ? null : (cpuAfter - cpuBefore) / wallSeconds,
  };
}

function describeRun(run: LatencyRun): string {
  const ms = (value: number | null): string => (value === null ? 'n/a' : `${value.toFixed(1)} ms`);
  const missing = run.missing > 0 ? `, ${run.missing} events missing` : '';
  return (
    `latency ${run.capture} at ${run.targetRate} tps (achieved ${run.achievedRate.toFixed(0)}): ` +
    `p50 ${ms(run.p50Ms)}, p95 ${ms(run.p95Ms)}, p99 ${ms(run.p99Ms)}${missing}`
  );
}
