// Creation order of the publication and the replication slot, and the fatal errors
// for a slot without a usable publication, against a real PostgreSQL server and the
// walhook CLI.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';

import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { LOG_LEVEL, startWalhook } from '../helpers/walhook-process.js';
import type { WalhookProcess } from '../helpers/walhook-process.js';

/** Maximum time walhook may take to give up on a slot it cannot use. */
const FATAL_EXIT_DEADLINE_MS = 15_000;

interface SlotRow extends Record<string, unknown> {
  plugin: string;
  temporary: boolean;
  database: string;
  confirmed_flush_lsn: string;
  catalog_xmin: string;
}

describe('publication and slot order', () => {
  const servers = setUpSuiteServers();

  /** Creates a database with the tables `items` and `other` and connects a client to it. */
  async function createDatabase(name: string): Promise<{ client: pg.Client; connection: string }> {
    const connection = await servers.postgres.createDatabase(name);
    const client = new pg.Client({ connectionString: connection });
    await client.connect();
    await client.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
    await client.query('CREATE TABLE other (id int PRIMARY KEY)');
    return { client, connection };
  }

  async function readSlot(slot: string): Promise<SlotRow | undefined> {
    const rows = await servers.postgres.query<SlotRow>(
      `SELECT plugin, temporary, database, confirmed_flush_lsn::text, catalog_xmin::text
         FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    );
    return rows[0];
  }

  function startItemsWalhook(
    connection: string,
    slot: string,
    t: { after(fn: () => unknown): void },
  ): Promise<WalhookProcess> {
    return startWalhook({
      config: {
        source: { connection, slot, publication: 'walhook_items' },
        webhooks: [{ name: 'items-api', url: servers.receiver.url }],
        triggers: [{ name: 'item_events', table: 'items', webhook: 'items-api' }],
      },
      t,
    });
  }

  /** Waits for walhook to exit 1 without retrying and returns the message of its one fatal log entry. */
  async function expectFatalExit(walhook: WalhookProcess): Promise<string> {
    const status = await walhook.waitForExit({ timeoutMs: FATAL_EXIT_DEADLINE_MS });
    assert.deepEqual(status, { code: 1, signal: null });
    const fatal = walhook.logs.filter((entry) => entry.level === LOG_LEVEL.fatal);
    assert.equal(fatal.length, 1, `expected one fatal entry, got ${JSON.stringify(fatal)}`);
    assert.equal(
      walhook.logs.filter((entry) => entry.msg === 'reconnecting to the replication slot').length,
      0,
      'walhook retried instead of stopping',
    );
    return fatal[0]?.msg ?? '';
  }

  test('publication is created before the slot', async (t) => {
    const slot = 'order_fresh';
    const { client, connection } = await createDatabase('order_fresh');
    t.after(() => client.end());
    const from = servers.receiver.requests.length;

    const walhook = await startItemsWalhook(connection, slot, t);
    await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
    await client.query("INSERT INTO items VALUES (1, 'right after start')");
    const [request] = (await servers.receiver.waitForRequests(from + 1, { timeoutMs: 10_000 })).slice(from);

    assert.deepEqual((request?.json as { event: { data: unknown } }).event.data, {
      old: null,
      new: { id: 1, note: 'right after start' },
    });
    const messages = walhook.logs.map((entry) => entry.msg);
    const publicationCreated = messages.indexOf('publication created');
    const slotCreated = messages.indexOf('replication slot created');
    assert.ok(publicationCreated >= 0, 'no publication created entry');
    assert.ok(slotCreated >= 0, 'no replication slot created entry');
    assert.ok(publicationCreated < slotCreated, 'the slot was created before the publication');

    const publications = await client.query<{ puballtables: boolean }>(
      "SELECT puballtables FROM pg_publication WHERE pubname = 'walhook_items'",
    );
    assert.deepEqual(publications.rows, [{ puballtables: false }]);
    const published = await client.query<{ tablename: string }>(
      "SELECT schemaname || '.' || tablename AS tablename FROM pg_publication_tables WHERE pubname = 'walhook_items'",
    );
    assert.deepEqual(published.rows, [{ tablename: 'public.items' }]);
    const slotRow = await readSlot(slot);
    assert.equal(slotRow?.plugin, 'pgoutput');
    assert.equal(slotRow?.temporary, false);
    assert.equal(slotRow?.database, 'order_fresh');
    assert.deepEqual(await walhook.stop({ timeoutMs: 10_000 }), { code: 0, signal: null });
  });

  test('slot older than publication is fatal', async (t) => {
    const slot = 'order_slot_first';
    const { client, connection } = await createDatabase('order_slot_first');
    t.after(() => client.end());
    await client.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    await client.query("INSERT INTO items VALUES (1, 'before the publication')");
    await client.query('CREATE PUBLICATION walhook_items FOR TABLE items');
    await client.query("INSERT INTO items VALUES (2, 'after the publication')");
    const before = await readSlot(slot);
    assert.ok(before !== undefined);
    const from = servers.receiver.requests.length;

    const walhook = await startItemsWalhook(connection, slot, t);
    const fatal = await expectFatalExit(walhook);

    assert.match(fatal, /created before publication 'walhook_items'/);
    assert.match(fatal, new RegExp(`pg_drop_replication_slot\\('${slot}'\\)`));
    assert.match(fatal, /creates the publication first, then the slot/);
    assert.deepEqual(await readSlot(slot), before, 'walhook changed, dropped or recreated the slot');
    assert.equal(walhook.logs.filter((entry) => entry.msg === 'replication slot created').length, 0);
    assert.equal(servers.receiver.requests.length, from, 'walhook delivered changes from a slot it rejects');
  });

  test('slot without publication is fatal', async (t) => {
    const slot = 'order_no_publication';
    const { client, connection } = await createDatabase('order_no_publication');
    t.after(() => client.end());
    await client.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    await client.query("INSERT INTO items VALUES (1, 'no publication yet')");
    const before = await readSlot(slot);
    assert.ok(before !== undefined);

    const walhook = await startItemsWalhook(connection, slot, t);
    const fatal = await expectFatalExit(walhook);

    assert.match(fatal, new RegExp(`replication slot '${slot}' exists but publication 'walhook_items' does not`));
    assert.match(fatal, new RegExp(`pg_drop_replication_slot\\('${slot}'\\)`));
    const publications = await client.query("SELECT 1 FROM pg_publication WHERE pubname = 'walhook_items'");
    assert.equal(publications.rowCount, 0, 'walhook created the publication after the slot');
    assert.deepEqual(await readSlot(slot), before, 'walhook changed, dropped or recreated the slot');
  });
});
