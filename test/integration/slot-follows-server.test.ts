/**
 * With nothing pending, walhook confirms the WAL position from the server's keepalives
 * (or the commits of transactions without matching events), so the slot follows the
 * server while the configured tables are quiet and other tables are busy. Otherwise
 * the slot would retain that WAL, and a fast shutdown of PostgreSQL would wait for
 * walhook to confirm it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';

import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { waitFor } from '../helpers/wait.js';
import { commitTransaction } from '../helpers/wal-positions.js';
import { testConfig } from '../helpers/walhook-config.js';
import { startWalhook } from '../helpers/walhook-process.js';
import { eventsFor, rowOf } from '../helpers/webhook-events.js';

const STREAMING = 'streaming from the replication slot';
const MEGABYTE = 1024 * 1024;
/** WAL written into the unconfigured table, in transactions of about 1 MB. */
const BUSY_MEGABYTES = 16;
/** Largest lag the slot may keep once walhook has caught up with the busy table. */
const MAX_LAG_BYTES = MEGABYTE;
/** Longest `pg_ctl stop -m fast` that counts as returning in seconds. */
const MAX_FAST_STOP_MS = 10_000;

interface Setup {
  readonly server: TestPostgres;
  readonly receiver: Receiver;
}

async function setUp(t: TestContext, watched: string, busy: string): Promise<Setup> {
  // A short pg_ctl deadline, so a shutdown that waits for walhook fails fast.
  const server = await startPostgres({ timeoutMs: 30_000 });
  t.after(() => server.close());
  await server.query(`CREATE TABLE ${watched} (id bigint PRIMARY KEY, note text NOT NULL)`);
  await server.query(`CREATE TABLE ${busy} (id bigint PRIMARY KEY, pad text NOT NULL)`);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  return { server, receiver };
}

/** Writes BUSY_MEGABYTES of WAL into `table` and returns the WAL position after it. */
async function writeBusyTable(server: TestPostgres, table: string): Promise<string> {
  const start = await currentWalLsn(server);
  const rowsPerTransaction = 1_000;
  for (let index = 0; index < BUSY_MEGABYTES; index += 1) {
    const firstId = index * rowsPerTransaction + 1;
    await server.query(
      `INSERT INTO ${table}
       SELECT id, repeat(md5(id::text), 32) FROM generate_series($1::bigint, $2::bigint) AS id`,
      [firstId, firstId + rowsPerTransaction - 1],
    );
  }
  const end = await currentWalLsn(server);
  const written = await server.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS bytes', [
    end,
    start,
  ]);
  assert.ok(
    Number(written[0]?.bytes) >= BUSY_MEGABYTES * MEGABYTE,
    `the busy table wrote only ${written[0]?.bytes} bytes of WAL`,
  );
  return end;
}

/**
 * Runs the scenario on a server whose publication `slot` either lists the watched
 * table only (walhook creates it) or covers all tables (the test created it).
 */
async function checkSlotFollowsServer(setup: Setup, t: TestContext, watched: string, busy: string): Promise<void> {
  const { server, receiver } = setup;
  const slot = watched;
  const walhook = await startWalhook({
    config: testConfig({ server, receiver, slot, tables: [watched] }),
    t,
  });
  await walhook.waitForLog(STREAMING, { timeoutMs: 20_000 });

  const busyEnd = await writeBusyTable(server, busy);
  const caughtUp = await waitFor(
    async () => {
      const state = await slotState(server, slot);
      const confirmed = state?.confirmedFlushLsn ?? null;
      const lag = state?.lagBytes ?? null;
      if (confirmed === null || lag === null) {
        return undefined;
      }
      return compareLsn(confirmed, busyEnd) >= 0 && lag < BigInt(MAX_LAG_BYTES) ? state : undefined;
    },
    { timeoutMs: 30_000, message: `slot ${slot} to pass ${busyEnd} with less than ${MAX_LAG_BYTES} bytes of lag` },
  );
  assert.equal(caughtUp.walStatus, 'reserved');
  assert.deepEqual(receiver.requests, [], 'the busy table, which has no trigger, caused webhook calls');

  // The configured table still delivers, and its commit is confirmed.
  const row = await commitTransaction(server, [`INSERT INTO ${watched} VALUES (1, 'quiet')`]);
  await receiver.waitForRequests(1, { timeoutMs: 20_000 });
  const events = eventsFor(receiver.requests, watched);
  assert.equal(events.length, 1);
  assert.deepEqual(rowOf(events[0]!), { id: 1, note: 'quiet' });
  await waitFor(
    async () => {
      const confirmed = (await slotState(server, slot))?.confirmedFlushLsn ?? null;
      return confirmed !== null && compareLsn(confirmed, row.endLsn) >= 0;
    },
    { timeoutMs: 20_000, message: `slot ${slot} to confirm the watched row at ${row.endLsn}` },
  );

  // A checkpoint writes WAL without a transaction, which only a keepalive carries.
  await server.query('CHECKPOINT');
  const checkpointEnd = await currentWalLsn(server);
  await waitFor(
    async () => {
      const confirmed = (await slotState(server, slot))?.confirmedFlushLsn ?? null;
      return confirmed !== null && compareLsn(confirmed, checkpointEnd) >= 0;
    },
    { timeoutMs: 20_000, message: `slot ${slot} to follow a checkpoint to ${checkpointEnd}` },
  );

  // In a fast shutdown each walsender exits only once its client has confirmed
  // everything sent, including the shutdown checkpoint (WalSndDone in PostgreSQL's
  // walsender.c), so a client that does not follow the keepalives blocks it.
  assert.equal((await slotState(server, slot))?.active, true);
  const stopStarted = performance.now();
  await server.stopServer('fast');
  const stopMs = performance.now() - stopStarted;
  assert.ok(stopMs < MAX_FAST_STOP_MS, `pg_ctl stop -m fast took ${Math.round(stopMs)} ms`);

  assert.deepEqual(await walhook.stop({ timeoutMs: 15_000 }), { code: 0, signal: null });
  assert.equal(receiver.requests.length, 1);
}

test('slot follows busy unpublished tables', async (t) => {
  const watched = 'listed_watched';
  const busy = 'listed_busy';
  const setup = await setUp(t, watched, busy);

  await checkSlotFollowsServer(setup, t, watched, busy);

  await setup.server.startServer();
  const published = await setup.server.query<{ tablename: string }>(
    'SELECT tablename FROM pg_publication_tables WHERE pubname = $1',
    [watched],
  );
  assert.deepEqual(
    published.map((row) => row.tablename),
    [watched],
  );
});

test('slot follows busy tables under FOR ALL TABLES', async (t) => {
  const watched = 'all_watched';
  const busy = 'all_busy';
  const setup = await setUp(t, watched, busy);
  // walhook never creates such a publication, but it streams an existing one and
  // drops the changes of tables without a trigger.
  await setup.server.query(`CREATE PUBLICATION ${watched} FOR ALL TABLES`);

  await checkSlotFollowsServer(setup, t, watched, busy);

  await setup.server.startServer();
  const publication = await setup.server.query<{ puballtables: boolean }>(
    'SELECT puballtables FROM pg_publication WHERE pubname = $1',
    [watched],
  );
  assert.deepEqual(publication, [{ puballtables: true }]);
});
