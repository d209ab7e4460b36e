/**
 * SIGTERM: walhook stops reading, lets requests in flight finish within
 * `shutdown_timeout`, sends a last status update with the confirmed position and
 * exits 0, also when the receiver does not respond before the deadline.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { TestContext } from 'node:test';

import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type ReceivedRequest, startReceiver } from '../helpers/receiver.js';
import { compareLsn, slotState } from '../helpers/replication.js';
import { waitFor } from '../helpers/wait.js';
import { commitTransaction, watchSlot } from '../helpers/wal-positions.js';
import { testConfig } from '../helpers/walhook-config.js';
import { type WalhookProcess, startWalhook } from '../helpers/walhook-process.js';
import { eventIdsByRow, eventsFor, parseEvent, rowOf } from '../helpers/webhook-events.js';

const STREAMING = 'streaming from the replication slot';
const SIGNAL_RECEIVED = 'signal received, shutting down';
const STOPPING = 'walhook stopping';
const STOPPED = 'walhook stopped';
/** Longer than any test runs, so such a response never arrives. */
const NEVER_MS = 600_000;

let server: TestPostgres;

before(async () => {
  server = await startPostgres();
});

after(async () => {
  await server?.close();
});

async function startStreaming(config: object, t: TestContext): Promise<WalhookProcess> {
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog(STREAMING, { timeoutMs: 20_000 });
  return walhook;
}

/** Sends SIGTERM, waits for the exit and returns the milliseconds in between. */
async function terminate(walhook: WalhookProcess): Promise<number> {
  const startedAt = performance.now();
  assert.ok(walhook.kill('SIGTERM'), 'walhook exited before SIGTERM');
  const status = await walhook.waitForExit({ timeoutMs: 30_000 });
  const elapsedMs = performance.now() - startedAt;
  assert.deepEqual(status, { code: 0, signal: null });
  return elapsedMs;
}

function logIndex(walhook: WalhookProcess, msg: string): number {
  return walhook.logs.findIndex((entry) => entry.msg === msg);
}

function rowIdOf(request: ReceivedRequest): unknown {
  return rowOf(parseEvent(request)).id;
}

async function createTable(table: string): Promise<void> {
  await server.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, note text NOT NULL)`);
}

async function dropSlot(slot: string): Promise<void> {
  await waitFor(async () => (await slotState(server, slot))?.active === false, {
    timeoutMs: 10_000,
    message: `slot ${slot} to become inactive`,
  });
  await server.query('SELECT pg_drop_replication_slot($1)', [slot]);
}

test('SIGTERM while idle exits 0 at once', async (t) => {
  const table = 'idle_stop';
  await createTable(table);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const walhook = await startStreaming(testConfig({ server, receiver, slot: table, tables: [table] }), t);

  const elapsedMs = await terminate(walhook);

  assert.ok(elapsedMs < 5_000, `exit took ${Math.round(elapsedMs)} ms`);
  assert.ok(logIndex(walhook, SIGNAL_RECEIVED) >= 0, 'no log entry for the signal');
  assert.ok(logIndex(walhook, STOPPED) > logIndex(walhook, SIGNAL_RECEIVED));
  await dropSlot(table);
});

test('SIGTERM lets the request in flight finish', async (t) => {
  const table = 'finish_in_flight';
  const responseDelayMs = 1_500;
  await createTable(table);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  let slow = true;
  receiver.respond(() => (slow ? { status: 200, delayMs: responseDelayMs } : { status: 200 }));
  const config = testConfig({ server, receiver, slot: table, tables: [table], shutdownTimeout: '10s' });

  const first = await startStreaming(config, t);
  const delivered = await commitTransaction(server, [`INSERT INTO ${table} VALUES (1, 'in flight')`]);
  const inFlight = await receiver.waitForRequest((request) => rowIdOf(request) === 1, { timeoutMs: 20_000 });
  const eventId = parseEvent(inFlight).id;

  const signalledAt = performance.now();
  assert.ok(first.kill('SIGTERM'), 'walhook exited before SIGTERM');
  // walhook has stopped reading, so a change committed now waits for the next start.
  await first.waitForLog(STOPPING);
  const unread = await commitTransaction(server, [`INSERT INTO ${table} VALUES (2, 'after the signal')`]);
  assert.deepEqual(await first.waitForExit({ timeoutMs: 30_000 }), { code: 0, signal: null });
  const elapsedMs = performance.now() - signalledAt;

  // The exit waited for the response, and not for the whole deadline.
  const trace = first.logs.map((entry) => `${entry.time} ${entry.msg} ${entry.eventId ?? ''}`).join('\n');
  const sinceRequestMs = Date.now() - inFlight.receivedAt;
  assert.ok(sinceRequestMs >= responseDelayMs, `exited ${sinceRequestMs} ms after the request\n${trace}`);
  assert.ok(elapsedMs < 8_000, `exit took ${Math.round(elapsedMs)} ms`);
  const signalIndex = logIndex(first, SIGNAL_RECEIVED);
  const deliveredIndex = first.logs.findIndex((entry) => entry.msg === 'delivered' && entry.eventId === eventId);
  assert.ok(signalIndex >= 0, 'no log entry for the signal');
  assert.ok(deliveredIndex > signalIndex, `the delivery did not finish after the signal\n${trace}`);
  assert.ok(logIndex(first, STOPPED) > deliveredIndex, `the stop was logged before the delivery\n${trace}`);
  assert.deepEqual(receiver.requests.map(rowIdOf), [1]);

  // The delivery finished after SIGTERM, so only a status update sent during the
  // shutdown can have moved the slot past the row's commit.
  const confirmed = (await slotState(server, table))?.confirmedFlushLsn ?? null;
  assert.ok(confirmed !== null, `slot ${table} has no confirmed position`);
  assert.ok(
    compareLsn(confirmed, delivered.endLsn) >= 0,
    `slot at ${confirmed} after the shutdown, before the delivered commit ending at ${delivered.endLsn}`,
  );
  assert.ok(
    compareLsn(confirmed, unread.commitLsn) <= 0,
    `slot at ${confirmed} after the shutdown, past the unread commit at ${unread.commitLsn}`,
  );

  // After a restart the unread row arrives, and the delivered one does not again.
  slow = false;
  const second = await startStreaming(config, t);
  await receiver.waitForRequest((request) => rowIdOf(request) === 2, { timeoutMs: 20_000 });
  await waitFor(
    async () => {
      const lsn = (await slotState(server, table))?.confirmedFlushLsn ?? null;
      return lsn !== null && compareLsn(lsn, unread.endLsn) >= 0;
    },
    { timeoutMs: 20_000, message: `slot to confirm ${unread.endLsn}` },
  );
  assert.deepEqual(receiver.requests.map(rowIdOf), [1, 2]);
  await terminate(second);
  await dropSlot(table);
});

test('SIGTERM exits at shutdown_timeout while the receiver hangs', async (t) => {
  const table = 'hanging_receiver';
  const shutdownTimeoutMs = 1_000;
  await createTable(table);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  let hanging = true;
  receiver.respond(() => (hanging ? { delayMs: NEVER_MS } : { status: 200 }));
  const config = testConfig({
    server,
    receiver,
    slot: table,
    tables: [table],
    shutdownTimeout: `${shutdownTimeoutMs}ms`,
  });

  const first = await startStreaming(config, t);
  const watch = watchSlot(server, table, { t });
  const row = await commitTransaction(server, [`INSERT INTO ${table} VALUES (1, 'undelivered')`]);
  const inFlight = await receiver.waitForRequest((request) => rowIdOf(request) === 1, { timeoutMs: 20_000 });

  const elapsedMs = await terminate(first);

  assert.ok(elapsedMs >= shutdownTimeoutMs - 50, `exit after ${Math.round(elapsedMs)} ms, before the deadline`);
  assert.ok(elapsedMs < shutdownTimeoutMs + 4_000, `exit took ${Math.round(elapsedMs)} ms`);
  assert.ok(logIndex(first, STOPPED) > logIndex(first, SIGNAL_RECEIVED));
  const confirmed = await watch.stop();
  for (const lsn of confirmed) {
    assert.ok(
      compareLsn(lsn, row.commitLsn) <= 0,
      `slot confirmed ${lsn}, past the undelivered commit at ${row.commitLsn}`,
    );
  }

  hanging = false;
  const second = await startStreaming(config, t);
  await receiver.waitForRequests(2, { timeoutMs: 20_000, description: 'the row after the restart' });
  const events = eventsFor(receiver.requests, table);
  assert.equal(eventIdsByRow(events).get(1), parseEvent(inFlight).id);
  assert.deepEqual(rowOf(events[1]!), { id: 1, note: 'undelivered' });
  await waitFor(
    async () => {
      const lsn = (await slotState(server, table))?.confirmedFlushLsn ?? null;
      return lsn !== null && compareLsn(lsn, row.endLsn) >= 0;
    },
    { timeoutMs: 20_000, message: `slot to confirm ${row.endLsn}` },
  );
  await terminate(second);
  await dropSlot(table);
});
