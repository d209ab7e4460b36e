/**
 * Scenario 3: the walsender is terminated, then PostgreSQL restarts with a fast
 * shutdown, then it crashes (immediate shutdown) and starts again, then it is stopped
 * for a while. The same walhook process must reconnect
 * with backoff each time and deliver everything.
 *
 * The receiver responds 503 from shortly before each server fault until it is lifted,
 * so deliveries are pending when the server goes down. A fast shutdown waits until each
 * walsender's client confirmed everything sent, which walhook must not do for
 * undelivered events, so this is the case in which a shutdown can hang.
 */
import { setTimeout as delay } from 'node:timers/promises';

import type { WalhookProcess } from '../../test/helpers/walhook-process.js';
import { type FaultRecord, Harness, SLOT, type ScenarioOptions, type ScenarioResult } from '../harness.js';
import { HEALTHY, UNAVAILABLE } from '../receiver.js';

const DESCRIPTION =
  'walsender terminated, then PostgreSQL restarted (fast), crashed (immediate) and stopped for a while';

/** How long the receiver fails before a server fault, so that deliveries are pending. */
const FAILING_BEFORE_FAULT_MS = 1_000;
/** A fast shutdown that takes longer than this is reported as a problem. */
const MAX_SHUTDOWN_MS = 10_000;

/** How long walhook may take to stream again after the server is back. */
const RECONNECT_TIMEOUT_MS = 90_000;
const CATCH_UP_TIMEOUT_MS = 60_000;

export async function runPostgresOutageScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const stoppedMs = options.short ? 10_000 : 60_000;
  const harness = await Harness.start(options);
  try {
    harness.receiver.respond(HEALTHY);
    const walhook = await harness.startWalhook();
    await harness.waitForStreaming(walhook);
    // The slot exists now: changes committed before it would never be streamed.
    harness.load.start();
    await delay(3_000);

    let start = harness.faultStarted();
    let logIndex = walhook.logs.length;
    const terminated = await harness.server.query<{ pid: number; terminated: boolean }>(
      `SELECT active_pid AS pid, pg_terminate_backend(active_pid) AS terminated
         FROM pg_replication_slots WHERE slot_name = $1 AND active`,
      [SLOT],
    );
    if (terminated[0]?.terminated !== true) harness.problems.push('no walsender was found to terminate');
    await recover(harness, walhook, harness.faultEnded('walsender terminated', start), logIndex, options);

    await failReceiverBeforeFault(harness);
    start = harness.faultStarted();
    logIndex = walhook.logs.length;
    const restartShutdownMs = await stopServer(harness, 'restart');
    await harness.server.startServer();
    harness.receiver.respond(HEALTHY);
    await recover(harness, walhook, harness.faultEnded('PostgreSQL restarted (fast)', start), logIndex, options);

    // An immediate shutdown is a crash: the server recovers from the WAL, and the slot
    // may restart from the position saved at the last checkpoint.
    await failReceiverBeforeFault(harness);
    start = harness.faultStarted();
    logIndex = walhook.logs.length;
    await harness.server.stopServer('immediate');
    await harness.server.startServer();
    harness.receiver.respond(HEALTHY);
    await recover(harness, walhook, harness.faultEnded('PostgreSQL crashed (immediate)', start), logIndex, options);

    await failReceiverBeforeFault(harness);
    start = harness.faultStarted();
    logIndex = walhook.logs.length;
    const stopShutdownMs = await stopServer(harness, 'stop');
    options.progress(`PostgreSQL stopped for ${stoppedMs / 1000} s`);
    await delay(stoppedMs);
    await harness.server.startServer();
    harness.receiver.respond(HEALTHY);
    const stopped = harness.faultEnded(`PostgreSQL stopped for ${stoppedMs / 1000} s`, start);
    await recover(harness, walhook, stopped, logIndex, options);

    if (harness.processes.length !== 1 || walhook.exitStatus !== undefined) {
      harness.problems.push('walhook did not survive the outages in one process');
    }
    await harness.drain(options.short ? 60_000 : 120_000);
    await harness.stopWalhooks();
    return await harness.finish('postgres-outage', DESCRIPTION, {
      stoppedMs,
      fastShutdownMs: { restart: restartShutdownMs, stop: stopShutdownMs },
      walhookPid: walhook.pid,
    });
  } finally {
    await harness.close();
  }
}

async function failReceiverBeforeFault(harness: Harness): Promise<void> {
  harness.receiver.respond(UNAVAILABLE);
  await delay(FAILING_BEFORE_FAULT_MS);
}

/**
 * Stops the server with a fast shutdown and returns how long it took. A shutdown that
 * takes longer than MAX_SHUTDOWN_MS is a problem: it waited for walhook.
 */
async function stopServer(harness: Harness, label: string): Promise<number> {
  const startedAt = Date.now();
  await harness.server.stopServer('fast');
  const shutdownMs = Date.now() - startedAt;
  if (shutdownMs > MAX_SHUTDOWN_MS) {
    harness.problems.push(
      `${label}: the fast shutdown took ${shutdownMs} ms while deliveries were pending, because the walsender waited for walhook`,
    );
  }
  return shutdownMs;
}

/** Waits until walhook streams again and has delivered the fault's backlog. */
async function recover(
  harness: Harness,
  walhook: WalhookProcess,
  record: FaultRecord,
  logIndex: number,
  options: ScenarioOptions,
): Promise<void> {
  try {
    await harness.waitForStreaming(walhook, RECONNECT_TIMEOUT_MS, logIndex);
  } catch (error) {
    harness.problems.push(`${record.kind}: walhook did not stream again: ${(error as Error).message.split('\n')[0]}`);
    return;
  }
  const caughtUp = await harness.waitForCatchUp(record, CATCH_UP_TIMEOUT_MS);
  if (!caughtUp) harness.problems.push(`${record.kind}: walhook did not catch up within ${CATCH_UP_TIMEOUT_MS} ms`);
  options.progress(`${record.kind}: ${caughtUp ? `caught up after ${record.caughtUpAfterMs} ms` : 'no catch-up'}`);
  await delay(2_000);
}
