// Connection loss while streaming: a killed walsender, a fast server restart and a
// server outage, all survived by one walhook process without losing a change.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { startReceiver } from '../helpers/receiver.js';
import type { ReceivedRequest, Receiver } from '../helpers/receiver.js';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { waitFor } from '../helpers/wait.js';
import { LOG_LEVEL, startWalhook } from '../helpers/walhook-process.js';
import type { LogEntry, WalhookProcess } from '../helpers/walhook-process.js';

const SLOT = 'walhook_reconnect';
const RECONNECTING = 'reconnecting to the replication slot';
const STREAMING = 'streaming from the replication slot';

/**
 * Reconnect backoff of src/source/replication-source.ts: after `failures` failed
 * attempts the delay is drawn from [1, min(30 s, 500 ms * 2^failures)].
 */
const RECONNECT_INITIAL_DELAY_MS = 500;
const RECONNECT_MAX_DELAY_MS = 30_000;

/**
 * Failed attempts to wait for while the server is down. Three take at most
 * 0.5 + 1 + 2 s of backoff, so a short outage shows the same growing bound as a long one.
 */
const OUTAGE_FAILED_ATTEMPTS = 3;

function insertedId(request: ReceivedRequest): number | undefined {
  return (request.json as { event?: { data?: { new?: { id?: number } } } } | undefined)?.event?.data?.new?.id;
}

function reconnectBound(failures: number): number {
  return Math.min(RECONNECT_MAX_DELAY_MS, RECONNECT_INITIAL_DELAY_MS * 2 ** failures);
}

describe('reconnects', () => {
  let server: TestPostgres;
  let receiver: Receiver;
  let walhook: WalhookProcess;

  before(async () => {
    server = await startPostgres();
    await server.query('CREATE TABLE readings (id int PRIMARY KEY, note text)');
    receiver = await startReceiver();
    walhook = await startWalhook({
      config: {
        source: { connection: server.connectionString, slot: SLOT },
        webhooks: [{ name: 'readings-api', url: receiver.url }],
        triggers: [{ name: 'reading_events', table: 'readings', webhook: 'readings-api' }],
      },
    });
    await walhook.waitForLog(STREAMING, { timeoutMs: 20_000 });
  });

  after(async () => {
    await walhook?.close();
    await receiver?.close();
    await server?.close();
  });

  async function insertReading(id: number, note: string): Promise<void> {
    await server.query('INSERT INTO readings VALUES ($1, $2)', [id, note]);
  }

  function waitForReading(id: number, timeoutMs: number): Promise<ReceivedRequest> {
    return receiver.waitForRequest((request) => insertedId(request) === id, {
      timeoutMs,
      description: `the insert of reading ${id}`,
    });
  }

  /** Returns the process id of the walsender that streams the slot, or null while none does. */
  async function activeWalsenderPid(): Promise<number | null> {
    const rows = await server.query<{ pid: number | null }>(
      'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
      [SLOT],
    );
    return rows[0]?.pid ?? null;
  }

  /** Waits until walhook streams again after the log entry at `fromIndex`. */
  async function waitForReconnect(fromIndex: number, timeoutMs: number): Promise<LogEntry> {
    await walhook.waitForLog(RECONNECTING, { fromIndex, timeoutMs });
    return walhook.waitForLog(STREAMING, { fromIndex, timeoutMs });
  }

  test('resumes after walsender termination', async () => {
    await insertReading(1, 'before the kill');
    await waitForReading(1, 10_000);
    const walsender = await waitFor(activeWalsenderPid, { timeoutMs: 5_000, message: 'the walsender of the slot' });
    const mark = walhook.logs.length;

    const terminated = await server.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [walsender]);
    assert.deepEqual(terminated, [{ ok: true }]);
    await insertReading(2, 'after the kill');

    await waitForReading(2, 15_000);
    await waitForReconnect(mark, 15_000);
    const failed = walhook.logs.slice(mark).filter((entry) => entry.level >= LOG_LEVEL.warn);
    assert.ok(failed.length >= 1, 'no warning for the lost connection');
  });

  test('resumes after fast server restart', async () => {
    const mark = walhook.logs.length;

    await server.restart();
    await insertReading(3, 'after the restart');

    await waitForReading(3, 20_000);
    // The restart also ends the leader lock session, so walhook fences itself and
    // streams again once it holds the lock again.
    await walhook.waitForLog(STREAMING, { fromIndex: mark, timeoutMs: 20_000 });
  });

  test('retries during an outage and resumes', async () => {
    const mark = walhook.logs.length;

    await server.stopServer('fast');
    await walhook.waitForLog((entry) => entry.msg.startsWith('lock session unavailable'), {
      fromIndex: mark,
      timeoutMs: 15_000,
    });
    const lost = walhook.logs.slice(mark).find((entry) => entry.msg.startsWith('leadership lost'));
    assert.ok(lost !== undefined, 'the leader did not fence itself when its lock session ended');
    await server.startServer();
    await insertReading(4, 'after the outage');

    await waitForReading(4, 40_000);
    const reconnected = await walhook.waitForLog('lock session connected again', { fromIndex: mark, timeoutMs: 5_000 });
    assert.ok((reconnected.failedAttempts as number) >= 1, 'no failed attempt during the outage');
    await walhook.waitForLog(STREAMING, { fromIndex: mark, timeoutMs: 5_000 });
  });

  test('one run delivers every insert', async () => {
    const delivered = receiver.requests.map(insertedId);
    const firstArrivals = delivered.filter((id, index) => delivered.indexOf(id) === index);
    assert.deepEqual(firstArrivals, [1, 2, 3, 4]);

    assert.equal(walhook.exitStatus, undefined, 'walhook exited');
    // Streaming restarts after each lost leader lock, within the same process.
    assert.ok(walhook.logs.filter((entry) => entry.msg === 'walhook starting').length >= 1);
    assert.equal(walhook.logs.filter((entry) => entry.msg === 'replication slot created').length, 1);
    assert.equal(walhook.logs.filter((entry) => entry.level === LOG_LEVEL.fatal).length, 0);
    const slots = await server.query<{ temporary: boolean }>(
      'SELECT temporary FROM pg_replication_slots WHERE slot_name = $1',
      [SLOT],
    );
    assert.deepEqual(slots, [{ temporary: false }]);

    const walAfterInserts = await currentWalLsn(server);
    await waitFor(
      async () => {
        const state = await slotState(server, SLOT);
        return state?.active && state.confirmedFlushLsn && compareLsn(state.confirmedFlushLsn, walAfterInserts) >= 0;
      },
      { timeoutMs: 15_000, message: 'the slot to confirm past the last insert' },
    );
  });
});
