/**
 * Scenario 2: the receiver is down for longer than wal_sender_timeout, first refusing
 * connections and then responding 503. walhook must keep its replication connection,
 * so the server logs no replication timeout, and deliver everything afterwards.
 */
import { setTimeout as delay } from 'node:timers/promises';

import {
  CONNECTION_FAILED_LOG,
  Harness,
  SLOT,
  WAL_SENDER_TIMEOUT,
  type ScenarioOptions,
  type ScenarioResult,
} from '../harness.js';
import { HEALTHY, UNAVAILABLE } from '../receiver.js';

const DESCRIPTION =
  `receiver refuses connections, then responds 503, each for longer than wal_sender_timeout (${WAL_SENDER_TIMEOUT})`;

/** The debug line walhook logs when undelivered events fill its in-flight budget. */
const BUDGET_FULL_LOG = 'in-flight budget full, pausing replication reads';
const STREAM_ENDED_LOG = 'replication stream ended by the server';

/** PostgreSQL's message when a walsender hears nothing for wal_sender_timeout. */
const REPLICATION_TIMEOUT_PATTERN = /terminating walsender process due to replication timeout/;

/**
 * A small in-flight budget, so that the outage also fills it and walhook stops reading
 * from the replication connection, the case in which only its timer sends status
 * updates.
 */
const MAX_INFLIGHT_EVENTS = 300;

export async function runReceiverOutageScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const phaseMs = options.short ? 7_000 : 20_000;
  const harness = await Harness.start({ ...options, maxInflightEvents: MAX_INFLIGHT_EVENTS, logLevel: 'debug' });
  try {
    harness.receiver.respond(HEALTHY);
    const walhook = await harness.startWalhook();
    await harness.waitForStreaming(walhook);
    // The slot exists now: changes committed before it would never be streamed.
    harness.load.start();
    await delay(3_000);

    const walsenderBefore = await walsenderPid(harness);
    const logIndex = walhook.logs.length;
    const start = harness.faultStarted();
    await harness.receiver.refuse();
    options.progress(`receiver refuses connections for ${phaseMs / 1000} s`);
    await delay(phaseMs);
    harness.receiver.respond(UNAVAILABLE);
    await harness.receiver.accept();
    options.progress(`receiver responds 503 for ${phaseMs / 1000} s`);
    await delay(phaseMs);
    harness.receiver.respond(HEALTHY);
    const record = harness.faultEnded('receiver down (refused, then 503)', start);
    const caughtUp = await harness.waitForCatchUp(record, 120_000);
    options.progress(caughtUp ? `caught up ${record.caughtUpAfterMs} ms after the receiver came back` : 'no catch-up');
    await delay(2_000);
    const walsenderAfter = await walsenderPid(harness);

    const outageLogs = walhook.logs.slice(logIndex);
    const connectionLosses = outageLogs.filter(
      (entry) => entry.msg === CONNECTION_FAILED_LOG || entry.msg === STREAM_ENDED_LOG,
    ).length;
    const budgetFullCount = outageLogs.filter((entry) => entry.msg === BUDGET_FULL_LOG).length;
    const serverLog = await harness.server.logTail(100_000);
    const replicationTimeouts = serverLog.split('\n').filter((line) => REPLICATION_TIMEOUT_PATTERN.test(line));

    if (walsenderBefore === null || walsenderBefore !== walsenderAfter) {
      harness.problems.push(
        `the replication connection was replaced: walsender pid ${walsenderBefore} before the outage, ${walsenderAfter} after`,
      );
    }
    if (connectionLosses > 0) {
      harness.problems.push(`walhook lost its replication connection ${connectionLosses} time(s) during the outage`);
    }
    if (replicationTimeouts.length > 0) {
      harness.problems.push(`the server log has ${replicationTimeouts.length} replication timeout(s)`);
    }
    if (!caughtUp) harness.problems.push('walhook did not catch up within 120 s after the receiver came back');
    if (budgetFullCount === 0) {
      harness.notes.push('the in-flight budget never filled, so paused reads were not exercised');
    }

    await harness.drain(options.short ? 60_000 : 120_000);
    await harness.stopWalhooks();
    return await harness.finish('receiver-outage', DESCRIPTION, {
      walSenderTimeout: WAL_SENDER_TIMEOUT,
      refusedMs: phaseMs,
      unavailableMs: phaseMs,
      maxInflightEvents: MAX_INFLIGHT_EVENTS,
      inflightBudgetFilled: budgetFullCount,
      walsenderPidBefore: walsenderBefore,
      walsenderPidAfter: walsenderAfter,
      connectionLosses,
      replicationTimeoutsInServerLog: replicationTimeouts.length,
    });
  } finally {
    await harness.close();
  }
}

async function walsenderPid(harness: Harness): Promise<number | null> {
  const rows = await harness.server.query<{ pid: number | null }>(
    'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
    [SLOT],
  );
  return rows[0]?.pid ?? null;
}
