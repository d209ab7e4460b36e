/**
 * Drain rate: how fast a consumer empties a slot's backlog, in events per second, for
 * pg_recvlogical (the decode-and-send ceiling of the server) and for walhook with
 * per-event and batched requests. Every consumer reads a slot of its own, and all the
 * slots are created one after another before the backlog is written, so each one
 * decodes the same changes.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { TestPostgres } from '../test/helpers/postgres.js';
import { parseLsn } from '../test/helpers/replication.js';
import { startRecvlogical, type PostgresTools } from './postgres-tools.js';
import { ProcessSampler, readCpuSeconds, type SamplerResult } from './proc-stats.js';
import { summarizeCpuProfile, type ProfileSummary } from './profile.js';
import type { BenchReceiver } from './receiver.js';
import { BenchWalhook } from './walhook-runner.js';
import {
  createSlot,
  dropWorkload,
  prepareWorkload,
  walInsertLsn,
  withClient,
  type Workload,
  workloadWalhookConfig,
} from './workloads.js';

export type DrainConsumer = 'pg_recvlogical' | 'walhook per-event' | 'walhook batched';

export interface DrainMeasurement {
  readonly consumer: DrainConsumer;
  /**
   * False when the run hit the time limit before the slot confirmed the whole backlog.
   * The rate then counts the events the receiver got within the limit.
   */
  readonly complete: boolean;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** walhook only: from process start to the 'streaming' log line, not part of `seconds`. */
  readonly startupSeconds?: number;
  /** CPU seconds per wall second of the consumer process (1.0 is one core). */
  readonly consumerCpuShare: number;
  /** CPU seconds per wall second of the walsender that decoded for this consumer. */
  readonly walsenderCpuShare: number | null;
  /** CPU seconds per wall second of the benchmark process, which runs the receiver. */
  readonly receiverCpuShare?: number;
  /** walhook only: VmHWM of the process at the end of the drain, in bytes. */
  readonly peakRssBytes?: number;
  /** walhook only: events and requests counted by the receiver. */
  readonly receivedEvents?: number;
  readonly requests?: number;
}

export interface DrainResult {
  readonly workload: string;
  readonly description: string;
  readonly events: number;
  /** WAL between the slots' start and the end of the backlog, in bytes. */
  readonly walBytes: number;
  readonly startLsn: string;
  readonly endLsn: string;
  readonly measurements: DrainMeasurement[];
  /** Failures of single consumers, which leave the other measurements valid. */
  readonly errors: string[];
  /** CPU profiles of extra walhook drains, taken after the timed ones. */
  readonly profiles: ProfileSummary[];
}

export interface DrainContext {
  readonly server: TestPostgres;
  readonly tools: PostgresTools;
  readonly receiver: BenchReceiver;
  readonly batchingAvailable: boolean;
  /** Directory for CPU profiles, which are taken only for the workloads in `profileWorkloads`. */
  readonly profileDir: string;
  readonly profileWorkloads: ReadonlySet<string>;
  /** Longest timed walhook drain; a slower drain reports a partial rate. */
  readonly maxDrainSeconds: number;
  /** Length of each profiled drain. */
  readonly profileSeconds: number;
  readonly log: (message: string) => void;
}

/** Maximum time of one drain: the backlog at 100 events/s plus 2 minutes. */
function drainTimeoutMs(events: number): number {
  return (events / 100 + 120) * 1000;
}

export async function measureDrain(context: DrainContext, workload: Workload): Promise<DrainResult> {
  const { server, log } = context;
  log(`${workload.id}: preparing ${workload.description}`);
  await prepareWorkload(server, workload);

  const slots = drainSlots(workload, context);
  const startLsns: string[] = [];
  for (const slot of slots) startLsns.push(await createSlot(server, workload.database, slot.name));

  const { events, endLsn } = await withClient(server, workload.database, async (client) => {
    const count = await workload.backlog(client);
    return { events: count, endLsn: await walInsertLsn(client) };
  });
  const startLsn = startLsns[0]!;
  const walBytes = Number(parseLsn(endLsn) - parseLsn(startLsn));
  log(`${workload.id}: backlog of ${events} events, ${(walBytes / 2 ** 20).toFixed(1)} MiB of WAL, slots at ${startLsns.join(', ')}`);

  const measurements: DrainMeasurement[] = [];
  const profiles: ProfileSummary[] = [];
  const errors: string[] = [];
  for (const slot of slots) {
    try {
      if (slot.consumer === 'pg_recvlogical') {
        measurements.push(await drainWithRecvlogical(context, workload, slot.name, endLsn, events));
      } else if (slot.profile) {
        profiles.push(await profileWalhookDrain(context, workload, slot.name, slot.consumer, endLsn, events));
      } else {
        measurements.push(await drainWithWalhook(context, workload, slot.name, slot.consumer, endLsn, events));
      }
      const last = slot.profile ? undefined : measurements[measurements.length - 1];
      if (last !== undefined) {
        const progress = last.complete ? `drained ${events} events` : `hit the ${context.maxDrainSeconds} s limit`;
        log(`${workload.id}: ${last.consumer} ${progress} in ${last.seconds.toFixed(2)} s (${Math.round(last.eventsPerSecond)} events/s)`);
      }
    } catch (error) {
      const message = `${slot.consumer}${slot.profile ? ' (profile)' : ''}: ${(error as Error).message}`;
      errors.push(message);
      log(`${workload.id}: FAILED ${message}`);
    }
  }
  await dropWorkload(server, workload);
  return { workload: workload.id, description: workload.description, events, walBytes, startLsn, endLsn, measurements, errors, profiles };
}

interface DrainSlot {
  readonly name: string;
  readonly consumer: DrainConsumer;
  /** True for the extra drain under --cpu-prof. */
  readonly profile: boolean;
}

function drainSlots(workload: Workload, context: DrainContext): DrainSlot[] {
  const database = workload.database;
  const slots: DrainSlot[] = [
    { name: `${database}_recvlogical`, consumer: 'pg_recvlogical', profile: false },
    { name: `${database}_per_event`, consumer: 'walhook per-event', profile: false },
  ];
  if (context.batchingAvailable) slots.push({ name: `${database}_batched`, consumer: 'walhook batched', profile: false });
  if (context.profileWorkloads.has(workload.id)) {
    slots.push({ name: `${database}_profile_per_event`, consumer: 'walhook per-event', profile: true });
    if (context.batchingAvailable) {
      slots.push({ name: `${database}_profile_batched`, consumer: 'walhook batched', profile: true });
    }
  }
  return slots;
}

async function drainWithRecvlogical(
  context: DrainContext,
  workload: Workload,
  slot: string,
  endLsn: string,
  events: number,
): Promise<DrainMeasurement> {
  const startedAt = performance.now();
  const run = startRecvlogical(context.tools, context.server, {
    database: workload.database,
    slot,
    publication: workload.publication,
    endLsn,
  });
  const consumer = new ProcessSampler(run.pid, { countFromProcessStart: true });
  consumer.start();
  const walsender = watchWalsender(context.server, slot);
  const timer = setTimeout(() => run.kill(), drainTimeoutMs(events));
  try {
    await run.exited;
  } finally {
    clearTimeout(timer);
  }
  const seconds = (performance.now() - startedAt) / 1000;
  const consumerStats = consumer.stop();
  const walsenderStats = await walsender.stop();
  return {
    consumer: 'pg_recvlogical',
    complete: true,
    seconds,
    eventsPerSecond: events / seconds,
    consumerCpuShare: consumerStats.cpuSeconds / seconds,
    walsenderCpuShare: walsenderStats === null ? null : walsenderStats.cpuSeconds / seconds,
  };
}

async function drainWithWalhook(
  context: DrainContext,
  workload: Workload,
  slot: string,
  consumer: DrainConsumer,
  endLsn: string,
  events: number,
): Promise<DrainMeasurement> {
  return runWalhookDrain(context, workload, slot, consumer, endLsn, events, {
    limitSeconds: context.maxDrainSeconds,
  });
}

async function profileWalhookDrain(
  context: DrainContext,
  workload: Workload,
  slot: string,
  consumer: DrainConsumer,
  endLsn: string,
  events: number,
): Promise<ProfileSummary> {
  const label = `${workload.id}-${consumer.replace('walhook ', '')}`;
  const directory = join(context.profileDir, label);
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true });
  const measurement = await runWalhookDrain(context, workload, slot, consumer, endLsn, events, {
    limitSeconds: context.profileSeconds,
    cpuProfileDir: directory,
  });
  context.log(
    `${workload.id}: profiled ${consumer} for ${measurement.seconds.toFixed(1)} s under --cpu-prof ` +
      `(${Math.round(measurement.eventsPerSecond)} events/s)`,
  );
  return summarizeCpuProfile(directory, label, {
    drainSeconds: measurement.seconds,
    eventsPerSecond: measurement.eventsPerSecond,
    skipSeconds: measurement.startupSeconds ?? 0,
  });
}

/**
 * Runs walhook on `slot` until the slot confirms `endLsn` or `limitSeconds` pass. A run
 * stopped by the limit reports the rate of the events the receiver got until then.
 */
async function runWalhookDrain(
  context: DrainContext,
  workload: Workload,
  slot: string,
  consumer: DrainConsumer,
  endLsn: string,
  events: number,
  options: { limitSeconds: number; cpuProfileDir?: string },
): Promise<DrainMeasurement> {
  const { server, receiver } = context;
  receiver.resetCounts();
  receiver.responseDelayMs = 0;
  const spawnedAt = performance.now();
  const walhook = await BenchWalhook.start({
    config: workloadWalhookConfig(server, workload, {
      slot,
      receiverUrl: receiver.url,
      batched: consumer === 'walhook batched',
    }),
    ...(options.cpuProfileDir === undefined ? {} : { cpuProfileDir: options.cpuProfileDir }),
  });
  try {
    const sampler = new ProcessSampler(walhook.pid);
    sampler.start();
    const streamingAt = await walhook.waitForStreaming();
    const cpuAtStreaming = readCpuSeconds(walhook.pid) ?? 0;
    const receiverCpuAtStart = process.cpuUsage();
    const walsender = watchWalsender(server, slot);
    const limitMs = Math.min(drainTimeoutMs(events), options.limitSeconds * 1000);
    const complete = await waitForConfirmed(server, slot, endLsn, limitMs);
    const seconds = (performance.now() - streamingAt) / 1000;
    const counts = receiver.counts();
    const receiverCpu = process.cpuUsage(receiverCpuAtStart);
    const cpuAtEnd = readCpuSeconds(walhook.pid) ?? cpuAtStreaming;
    const walhookStats: SamplerResult = sampler.stop();
    const walsenderStats = await walsender.stop();
    return {
      consumer,
      complete,
      seconds,
      eventsPerSecond: (complete ? events : counts.events) / seconds,
      startupSeconds: (streamingAt - spawnedAt) / 1000,
      consumerCpuShare: (cpuAtEnd - cpuAtStreaming) / seconds,
      walsenderCpuShare: walsenderStats === null ? null : walsenderStats.cpuSeconds / seconds,
      receiverCpuShare: (receiverCpu.user + receiverCpu.system) / 1e6 / seconds,
      peakRssBytes: walhookStats.peakRssBytes,
      receivedEvents: counts.events,
      requests: counts.requests,
    };
  } finally {
    const exitCode = await walhook.stop();
    if (exitCode !== 0) context.log(`walhook on slot ${slot} exited with ${exitCode}; last output:\n${walhook.outputTail()}`);
  }
}

/**
 * Polls the slot every 20 ms until its confirmed_flush_lsn reaches `endLsn`. Returns
 * false when `timeoutMs` passes first.
 */
export async function waitForConfirmed(
  server: TestPostgres,
  slot: string,
  endLsn: string,
  timeoutMs: number,
): Promise<boolean> {
  const target = parseLsn(endLsn);
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const rows = await server.query<{ confirmed_flush_lsn: string | null }>(
      'SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    const confirmed = rows[0]?.confirmed_flush_lsn ?? null;
    if (confirmed !== null && parseLsn(confirmed) >= target) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

/**
 * Finds the walsender that serves `slot` once it is active and samples its CPU time.
 * stop() returns null when no walsender was seen.
 */
function watchWalsender(server: TestPostgres, slot: string): { stop(): Promise<SamplerResult | null> } {
  let sampler: ProcessSampler | undefined;
  let stopped = false;
  const found = (async () => {
    while (!stopped && sampler === undefined) {
      const rows = await server.query<{ active_pid: number | null }>(
        'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      const pid = rows[0]?.active_pid;
      if (pid !== null && pid !== undefined) {
        sampler = new ProcessSampler(pid, { countFromProcessStart: true });
        sampler.start();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await found;
      return sampler?.stop() ?? null;
    },
  };
}
