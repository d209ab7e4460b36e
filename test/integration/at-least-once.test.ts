/**
 * The at-least-once rule end to end: a real PostgreSQL, a real HTTP receiver and the
 * walhook CLI as a child process. While an event is undelivered, the slot's
 * confirmed_flush_lsn must stay at or before its transaction's commit record, whatever
 * status the receiver returns and however walhook stops. After a restart every row
 * arrives, and a repeated row carries the same event id.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type ReceivedRequest, startReceiver } from '../helpers/receiver.js';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { waitFor } from '../helpers/wait.js';
import {
  type CommittedTransaction,
  commitTransaction,
  walSenderState,
  watchSlot,
} from '../helpers/wal-positions.js';
import { testConfig } from '../helpers/walhook-config.js';
import { type WalhookProcess, startWalhook } from '../helpers/walhook-process.js';
import { eventIdsByRow, eventsFor, parseEvent, rowOf } from '../helpers/webhook-events.js';

const STREAMING = 'streaming from the replication slot';
const ATTEMPT_FAILED = 'delivery attempt failed, will retry';
/** Configured in testConfig: retry.initial_delay 100ms, retry.max_delay 1s. */
const INITIAL_DELAY_MS = 100;
const MAX_DELAY_MS = 1_000;
/** Longer than any test runs, so such a response never arrives. */
const NEVER_MS = 600_000;

let server: TestPostgres;

before(async () => {
  // walhook sends a status update every third of wal_sender_timeout. With 3 s it sends
  // one every second, so a position confirmed too early reaches the slot in the test.
  server = await startPostgres({ settings: { wal_sender_timeout: '3s' } });
});

after(async () => {
  await server?.close();
});

async function startStreaming(config: object, t: TestContext): Promise<WalhookProcess> {
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog(STREAMING, { timeoutMs: 20_000 });
  return walhook;
}

/**
 * Waits until the walsender has sent the WAL up to `lsn`, and then until walhook has
 * sent a status update. After that, the slot shows whatever walhook confirms for the
 * transactions up to `lsn`.
 */
async function waitForStatusUpdatePast(slot: string, lsn: string): Promise<void> {
  await waitFor(
    async () => {
      const sender = await walSenderState(server, slot);
      return sender !== undefined && compareLsn(sender.sentLsn, lsn) >= 0;
    },
    { timeoutMs: 20_000, message: `the walsender of slot ${slot} to send past ${lsn}` },
  );
  const sentAt = Date.now();
  await waitFor(
    async () => {
      const sender = await walSenderState(server, slot);
      return sender?.replyTime != null && sender.replyTime.getTime() > sentAt;
    },
    { timeoutMs: 10_000, message: `a status update from walhook on slot ${slot}` },
  );
}

async function waitForSlotInactive(slot: string): Promise<void> {
  await waitFor(async () => (await slotState(server, slot))?.active === false, {
    timeoutMs: 10_000,
    message: `slot ${slot} to become inactive`,
  });
}

async function waitForSlotAtLeast(slot: string, lsn: string): Promise<string> {
  return waitFor(
    async () => {
      const confirmed = (await slotState(server, slot))?.confirmedFlushLsn ?? null;
      return confirmed !== null && compareLsn(confirmed, lsn) >= 0 ? confirmed : undefined;
    },
    { timeoutMs: 20_000, message: `slot ${slot} to confirm ${lsn}` },
  );
}

async function killWalhook(walhook: WalhookProcess): Promise<void> {
  walhook.kill('SIGKILL');
  const status = await walhook.waitForExit();
  assert.equal(status.signal, 'SIGKILL');
}

function assertNeverPast(confirmed: readonly string[], limit: CommittedTransaction): void {
  assert.ok(confirmed.length > 0, 'no slot position was read');
  for (const lsn of confirmed) {
    assert.ok(
      compareLsn(lsn, limit.commitLsn) <= 0,
      `slot confirmed ${lsn}, past the undelivered commit at ${limit.commitLsn}`,
    );
  }
}

function rowIdOf(request: ReceivedRequest): unknown {
  return rowOf(parseEvent(request)).id;
}

async function dropSlot(slot: string): Promise<void> {
  await waitForSlotInactive(slot);
  await server.query('SELECT pg_drop_replication_slot($1)', [slot]);
}

interface OutageCase {
  readonly stopSignal: 'SIGTERM' | 'SIGKILL';
  /** `retry.on_status`, or undefined for the default `[408, 425, 429, 5xx]`. */
  readonly retryOnStatus: readonly (number | '4xx' | '5xx')[] | undefined;
  /** Statuses the receiver returns in turn during the outage. walhook retries each. */
  readonly failures: readonly number[];
}

const OUTAGE_CASES: readonly OutageCase[] = [
  { stopSignal: 'SIGTERM', retryOnStatus: undefined, failures: [500, 502, 503, 504, 429, 408] },
  { stopSignal: 'SIGKILL', retryOnStatus: [302, '4xx', '5xx'], failures: [302, 400, 404, 409, 500, 503] },
];

for (const { stopSignal, retryOnStatus, failures: failureStatuses } of OUTAGE_CASES) {
  const how = stopSignal === 'SIGTERM' ? 'clean restart' : 'kill -9';

  test(`receiver outage, then ${how}, delivers every row`, async (t) => {
    const table = `outage_${stopSignal.toLowerCase()}`;
    await server.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, note text NOT NULL)`);
    const receiver = await startReceiver();
    t.after(() => receiver.close());
    let healthy = false;
    const statuses: number[] = [];
    receiver.respond((_request, index) => {
      const status = healthy ? 200 : failureStatuses[index % failureStatuses.length]!;
      statuses[index] = status;
      // A redirect is no delivery, wherever it points.
      return status === 302 ? { status, headers: { location: receiver.url } } : { status };
    });
    const config = testConfig({ server, receiver, slot: table, tables: [table], retryOnStatus });

    const first = await startStreaming(config, t);
    const watch = watchSlot(server, table, { t });
    const single = await commitTransaction(server, [`INSERT INTO ${table} VALUES (1, 'keep me')`]);
    const pair = await commitTransaction(server, [
      `INSERT INTO ${table} VALUES (2, 'two')`,
      `INSERT INTO ${table} VALUES (3, 'three')`,
    ]);
    const last = await commitTransaction(server, [`INSERT INTO ${table} VALUES (4, 'four')`]);

    // Each row is retried on its own. Wait for several failed attempts of the first.
    const attempts = 5;
    const firstTry = await receiver.waitForRequest((request) => rowIdOf(request) === 1, {
      timeoutMs: 20_000,
    });
    const firstEventId = parseEvent(firstTry).id;
    await first.waitForLog(
      (entry) => entry.msg === ATTEMPT_FAILED && entry.eventId === firstEventId && entry.attempt === attempts,
      { timeoutMs: 30_000 },
    );
    await waitForStatusUpdatePast(table, last.endLsn);

    const failedRequests = receiver.requests.slice();
    assert.ok(
      statuses.every((status) => status !== 200),
      'the receiver answered 200 during the outage',
    );
    // Throws when a row was attempted under two event ids.
    eventIdsByRow(failedRequests.map(parseEvent));
    checkRetries(first, failedRequests, statuses, firstEventId, attempts);

    if (stopSignal === 'SIGTERM') {
      assert.deepEqual(await first.stop({ timeoutMs: 15_000 }), { code: 0, signal: null });
    } else {
      await killWalhook(first);
    }
    await waitForSlotInactive(table);
    assertNeverPast(await watch.stop(), single);

    healthy = true;
    const outageRequests = receiver.requests.length;
    const second = await startStreaming(config, t);
    const deliveredRows = (requests: readonly ReceivedRequest[]): Set<unknown> =>
      new Set(requests.slice(outageRequests).map(rowIdOf));
    await receiver.waitForRequests((requests) => deliveredRows(requests).size === 4, {
      timeoutMs: 20_000,
      description: 'rows 1 to 4 after the restart',
    });

    const events = eventsFor(receiver.requests, table);
    // Throws when a row arrived under two event ids, before or after the restart.
    const eventIds = eventIdsByRow(events);
    assert.equal(eventIds.get(1), firstEventId);
    const delivered = events.slice(outageRequests);
    assert.deepEqual(
      delivered.map((event) => rowOf(event)).sort((a, b) => Number(a.id) - Number(b.id)),
      [
        { id: 1, note: 'keep me' },
        { id: 2, note: 'two' },
        { id: 3, note: 'three' },
        { id: 4, note: 'four' },
      ],
    );
    const xidOfRow = new Map(delivered.map((event) => [rowOf(event).id, event.xid]));
    assert.equal(xidOfRow.get(1), single.xid);
    assert.equal(xidOfRow.get(2), pair.xid);
    assert.equal(xidOfRow.get(3), pair.xid);
    assert.equal(xidOfRow.get(4), last.xid);

    await waitForSlotAtLeast(table, last.endLsn);
    assert.deepEqual(await second.stop({ timeoutMs: 15_000 }), { code: 0, signal: null });
    await dropSlot(table);
  });
}

/**
 * Checks the first `attempts` failed attempts of event `eventId`. Each request counts
 * its earlier attempts in `current_retry`, each failure is logged with the status and
 * a backoff within the configured bounds, and the next request waits that long.
 */
function checkRetries(
  walhook: WalhookProcess,
  requests: readonly ReceivedRequest[],
  statuses: readonly number[],
  eventId: string,
  attempts: number,
): void {
  const tries = requests.filter((request) => parseEvent(request).id === eventId);
  assert.ok(tries.length >= attempts, `only ${tries.length} attempts of event ${eventId}`);
  assert.deepEqual(
    tries.map((request) => parseEvent(request).delivery_info.current_retry),
    tries.map((_request, index) => index),
  );
  for (const request of tries) {
    assert.equal(request.headers['webhook-id'], eventId);
  }

  const failures = walhook.logs.filter((entry) => entry.msg === ATTEMPT_FAILED && entry.eventId === eventId);
  for (let index = 0; index < attempts; index += 1) {
    const entry = failures[index];
    const request = tries[index]!;
    assert.ok(entry !== undefined, `no log entry for failed attempt ${index + 1}`);
    assert.equal(entry.attempt, index + 1);
    assert.equal(entry.status, statuses[request.index]);
    const delayMs = entry.nextDelayMs;
    assert.ok(typeof delayMs === 'number', `attempt ${index + 1} logged no nextDelayMs`);
    const ceilingMs = Math.min(MAX_DELAY_MS, INITIAL_DELAY_MS * 2 ** index);
    assert.ok(delayMs >= 1, `attempt ${index + 1} logged a delay of ${delayMs} ms`);
    assert.ok(delayMs <= ceilingMs, `delay ${delayMs} ms above the backoff ceiling of ${ceilingMs} ms`);
    const next = tries[index + 1];
    if (next !== undefined) {
      const gapMs = next.receivedAt - request.receivedAt;
      assert.ok(gapMs >= delayMs - 5, `attempt ${index + 2} came ${gapMs} ms after a ${delayMs} ms backoff`);
    }
  }
}

test('kill -9 during a slow delivery redelivers the row', async (t) => {
  const table = 'slow_receiver';
  await server.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, note text NOT NULL)`);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  let slow = true;
  receiver.respond((request) => (slow && rowIdOf(request) === 1 ? { delayMs: NEVER_MS } : { status: 200 }));
  const config = testConfig({ server, receiver, slot: table, tables: [table] });

  const first = await startStreaming(config, t);
  const watch = watchSlot(server, table, { t });
  const slowRow = await commitTransaction(server, [`INSERT INTO ${table} VALUES (1, 'slow')`]);
  const laterRow = await commitTransaction(server, [`INSERT INTO ${table} VALUES (2, 'later')`]);

  // Row 2 has another key, so it is delivered while row 1 is still in flight. Its
  // commit comes after row 1's, so the slot must still wait for row 1.
  const inFlight = await receiver.waitForRequest((request) => rowIdOf(request) === 1, {
    timeoutMs: 20_000,
  });
  const laterRequest = await receiver.waitForRequest((request) => rowIdOf(request) === 2, {
    timeoutMs: 20_000,
  });
  const laterEventId = parseEvent(laterRequest).id;
  await first.waitForLog((entry) => entry.msg === 'delivered' && entry.eventId === laterEventId, {
    timeoutMs: 20_000,
  });
  await waitForStatusUpdatePast(table, laterRow.endLsn);
  assert.equal(receiver.inFlight, 1);
  assert.equal(receiver.requests.length, 2);

  await killWalhook(first);
  await waitForSlotInactive(table);
  assertNeverPast(await watch.stop(), slowRow);

  slow = false;
  const second = await startStreaming(config, t);
  await receiver.waitForRequests(
    (requests) => new Set(requests.slice(2).map(rowIdOf)).size === 2,
    { timeoutMs: 20_000, description: 'rows 1 and 2 after the restart' },
  );

  const events = eventsFor(receiver.requests, table);
  const eventIds = eventIdsByRow(events);
  assert.equal(eventIds.get(1), parseEvent(inFlight).id);
  assert.equal(inFlight.headers['webhook-id'], parseEvent(inFlight).id);
  // Row 2 arrives again, as a duplicate with the same event id.
  assert.deepEqual(
    events
      .slice(2)
      .map((event) => rowOf(event))
      .sort((a, b) => Number(a.id) - Number(b.id)),
    [
      { id: 1, note: 'slow' },
      { id: 2, note: 'later' },
    ],
  );

  await waitForSlotAtLeast(table, laterRow.endLsn);
  assert.deepEqual(await second.stop({ timeoutMs: 15_000 }), { code: 0, signal: null });
  assert.equal(receiver.requests.length, 4);
  await dropSlot(table);
});

test('pending delivery holds the slot while keepalives pass it', async (t) => {
  const watched = 'held_watched';
  const other = 'held_other';
  await server.query(`CREATE TABLE ${watched} (id bigint PRIMARY KEY, note text NOT NULL)`);
  await server.query(`CREATE TABLE ${other} (id bigint PRIMARY KEY, pad text NOT NULL)`);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  let slow = true;
  receiver.respond(() => (slow ? { delayMs: NEVER_MS } : { status: 200 }));
  const config = testConfig({ server, receiver, slot: watched, tables: [watched] });

  const first = await startStreaming(config, t);

  // With nothing pending, the slot follows the keepalives past writes to other tables.
  await writeOtherTable(other, 0, 1);
  const idleEnd = await currentWalLsn(server);
  await waitForSlotAtLeast(watched, idleEnd);

  const watch = watchSlot(server, watched, { t });
  const held = await commitTransaction(server, [`INSERT INTO ${watched} VALUES (1, 'held')`]);
  const inFlight = await receiver.waitForRequest((request) => rowIdOf(request) === 1, {
    timeoutMs: 20_000,
  });
  const bulkStart = await currentWalLsn(server);
  await writeOtherTable(other, 1, 4);
  const bulkEnd = await currentWalLsn(server);
  const bulkBytes = await server.query<{ bytes: string }>(
    'SELECT pg_wal_lsn_diff($1, $2)::text AS bytes',
    [bulkEnd, bulkStart],
  );
  assert.ok(Number(bulkBytes[0]?.bytes) >= 4 * 1024 * 1024, `only ${bulkBytes[0]?.bytes} bytes of WAL`);

  // The walsender has sent the WAL past the bulk write, which the slot followed
  // before the insert, and walhook has sent a status update since. It still
  // confirms no further than the pending commit.
  await waitForStatusUpdatePast(watched, bulkEnd);
  const sender = await walSenderState(server, watched);
  assert.ok(sender?.flushLsn != null, 'walhook reported no flush position');
  assert.ok(
    compareLsn(sender.flushLsn, held.commitLsn) <= 0,
    `walhook reported ${sender.flushLsn}, past the pending commit at ${held.commitLsn}`,
  );

  await killWalhook(first);
  await waitForSlotInactive(watched);
  assertNeverPast(await watch.stop(), held);

  slow = false;
  const second = await startStreaming(config, t);
  await receiver.waitForRequests(2, { timeoutMs: 20_000, description: 'the held row after the restart' });
  const events = eventsFor(receiver.requests, watched);
  assert.equal(events.length, receiver.requests.length, 'a request for another table arrived');
  assert.equal(eventIdsByRow(events).get(1), parseEvent(inFlight).id);
  assert.deepEqual(rowOf(events[1]!), { id: 1, note: 'held' });

  // Once nothing is pending, the slot follows the keepalives again.
  await waitForSlotAtLeast(watched, bulkEnd);
  assert.deepEqual(await second.stop({ timeoutMs: 15_000 }), { code: 0, signal: null });
  assert.equal(receiver.requests.length, 2);
  await dropSlot(watched);
});

/** Writes `count` transactions of about 1 MB each into `table`, after the first `offset`. */
async function writeOtherTable(table: string, offset: number, count: number): Promise<void> {
  const rowsPerTransaction = 1_000;
  for (let index = offset; index < offset + count; index += 1) {
    const firstId = index * rowsPerTransaction + 1;
    await server.query(
      `INSERT INTO ${table}
       SELECT id, repeat(md5(id::text), 32) FROM generate_series($1::bigint, $2::bigint) AS id`,
      [firstId, firstId + rowsPerTransaction - 1],
    );
  }
}

test('out-of-order completions hold the slot at the first gap', async (t) => {
  const table = 'gapped_stream';
  const rowCount = 60;
  // Requests for these rows hang until walhook is killed. Row 8 is the first gap, and
  // row 23 is inside the transaction of rows 21-30.
  const gaps = new Set([8, 23, 41]);
  await server.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, note text NOT NULL)`);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  let firstRun = true;
  const answered = new Set<number>();
  receiver.respond(async (request) => {
    const rowId = Number(rowIdOf(request));
    if (firstRun && gaps.has(rowId)) {
      return { delayMs: NEVER_MS };
    }
    // Response times from 0 to 48 ms, spread over the rows, so deliveries overlap
    // and finish out of commit order.
    await delay((rowId * 7) % 50);
    answered.add(rowId);
    return { status: 200 };
  });
  const config = testConfig({ server, receiver, slot: table, tables: [table] });

  const first = await startStreaming(config, t);
  // Rows 1-20 and 31-60 in a transaction each, rows 21-30 in one transaction.
  const transactionOfRow = new Map<number, CommittedTransaction>();
  const commitRows = async (ids: number[]): Promise<void> => {
    const statements = ids.map((id) => `INSERT INTO ${table} VALUES (${id}, 'row ${id}')`);
    const committed = await commitTransaction(server, statements);
    for (const id of ids) {
      transactionOfRow.set(id, committed);
    }
  };
  const watch = watchSlot(server, table, { intervalMs: 20, t });
  for (let id = 1; id <= 20; id += 1) {
    await commitRows([id]);
  }
  await commitRows(Array.from({ length: 10 }, (_value, index) => 21 + index));
  for (let id = 31; id <= rowCount; id += 1) {
    await commitRows([id]);
  }
  const beforeGap = transactionOfRow.get(7)!;
  const firstGap = transactionOfRow.get(8)!;
  const lastRow = transactionOfRow.get(rowCount)!;

  // Every row but the gaps is delivered, and the slot moves up to the last commit
  // before the first gap, but not past it.
  await waitFor(() => answered.size === rowCount - gaps.size, {
    timeoutMs: 20_000,
    message: `${rowCount - gaps.size} answered rows`,
  });
  await waitForSlotAtLeast(table, beforeGap.endLsn);
  await waitForStatusUpdatePast(table, lastRow.endLsn);
  await killWalhook(first);
  await waitForSlotInactive(table);
  assertNeverPast(await watch.stop(), firstGap);
  const firstRunRequests = receiver.requests.length;

  firstRun = false;
  const second = await startStreaming(config, t);
  const restartedRows = (requests: readonly ReceivedRequest[]): Set<unknown> =>
    new Set(requests.slice(firstRunRequests).map(rowIdOf));
  await receiver.waitForRequests((requests) => restartedRows(requests).size === rowCount - 7, {
    timeoutMs: 20_000,
    description: `rows 8 to ${rowCount} after the restart`,
  });
  await waitForSlotAtLeast(table, lastRow.endLsn);
  assert.deepEqual(await second.stop({ timeoutMs: 15_000 }), { code: 0, signal: null });

  const events = eventsFor(receiver.requests, table);
  // Throws when a row arrived under two event ids.
  eventIdsByRow(events);
  for (const event of events) {
    const row = rowOf(event);
    assert.equal(row.note, `row ${String(row.id)}`);
    assert.equal(event.xid, transactionOfRow.get(Number(row.id))?.xid);
  }
  // The restart resends every transaction from the first gap on, and none before it.
  const restarted = [...restartedRows(receiver.requests)].map(Number).sort((a, b) => a - b);
  assert.deepEqual(
    restarted,
    Array.from({ length: rowCount - 7 }, (_value, index) => 8 + index),
  );
  await dropSlot(table);
});
