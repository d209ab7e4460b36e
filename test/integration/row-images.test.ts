// Row images through the real CLI under each output plugin: unchanged TOAST values,
// old rows under each replica identity, truncates of several tables and identifiers
// that need quoting.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  PLUGINS,
  type RowImageEvent,
  openDatabase,
  pluginConfig,
  skipWithoutPlugin,
  waitForSlotToCatchUp,
} from '../helpers/plugins.js';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type ReceivedRequest, startReceiver } from '../helpers/receiver.js';
import { type WalhookProcess, startWalhook } from '../helpers/walhook-process.js';
import { parseEvent } from '../helpers/webhook-events.js';

let server: TestPostgres;

before(async () => {
  server = await startPostgres();
});

after(async () => {
  await server?.close();
});

function eventsOf(requests: readonly ReceivedRequest[]): RowImageEvent[] {
  return requests.map((request) => parseEvent(request) as RowImageEvent);
}

function findEvent(
  events: readonly RowImageEvent[],
  description: string,
  match: (event: RowImageEvent) => boolean,
): RowImageEvent {
  const found = events.filter(match);
  assert.equal(found.length, 1, `exactly one event is ${description}, got ${found.length}`);
  return found[0]!;
}

async function startStreaming(config: object, t: { after(fn: () => unknown): void }): Promise<WalhookProcess> {
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  return walhook;
}

/** A 13 000-character text, above the 2 kB TOAST threshold. */
const LONG_DOC = Array.from({ length: 13_000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');

for (const plugin of PLUGINS) {
  describe(`row images under ${plugin}`, () => {
    test('unchanged TOAST value is named, not null', async (t) => {
      if (await skipWithoutPlugin(t, server, plugin)) return;
      const db = await openDatabase(t, server, `toast_${plugin}`);
      await db.query(`
        CREATE TABLE c12 (id int PRIMARY KEY, status text, doc text);
        ALTER TABLE c12 ALTER doc SET STORAGE EXTERNAL;`);
      const receiver = await startReceiver();
      t.after(() => receiver.close());
      const config = pluginConfig({ plugin, database: db, receiver, slot: `toast_${plugin}`, tables: ['c12'] });

      const first = await startStreaming(config, t);
      await db.query('INSERT INTO c12 VALUES (1, $1, $2)', ['new', LONG_DOC]);
      await db.query("UPDATE c12 SET status = 'paid' WHERE id = 1");
      await receiver.waitForRequests(2, { timeoutMs: 20_000 });

      const events = eventsOf(receiver.requests);
      const insert = findEvent(events, 'the insert', (e) => e.event.op === 'INSERT');
      assert.equal(insert.event.data.new?.doc, LONG_DOC, 'the insert carries the whole value');
      assert.equal(insert.event.unchanged_columns, undefined);

      const paidIndex = events.findIndex((e) => e.event.data.new?.status === 'paid');
      const paid = events[paidIndex]!;
      assert.equal(paid.event.op, 'UPDATE');
      assert.deepEqual(paid.event.data.new, { id: 1, status: 'paid' });
      assert.deepEqual(paid.event.unchanged_columns, ['doc']);
      assert.doesNotMatch(receiver.requests[paidIndex]!.body, /"doc":null/);
      assert.equal(paid.event.data.old, null);
      assert.equal(first.exitStatus, undefined);
      await first.stop();

      // After a restart the table's first change is an update, so the decoder has seen
      // no insert of it: the left-out column must still be named.
      const second = await startStreaming(config, t);
      await db.query("UPDATE c12 SET status = 'shipped' WHERE id = 1");
      await receiver.waitForRequest((r) => parseEvent(r).event.data.new?.status === 'shipped', {
        timeoutMs: 20_000,
        description: 'the update after the restart',
      });
      const shipped = findEvent(eventsOf(receiver.requests), 'the update after the restart', (e) => {
        return e.event.data.new?.status === 'shipped';
      });
      assert.deepEqual(shipped.event.data.new, { id: 1, status: 'shipped' });
      assert.deepEqual(shipped.event.unchanged_columns, ['doc']);
      await second.stop();
    });

    test('old rows follow the replica identity', async (t) => {
      if (await skipWithoutPlugin(t, server, plugin)) return;
      const db = await openDatabase(t, server, `identity_${plugin}`);
      await db.query('CREATE TABLE c13 (id int PRIMARY KEY, note text, amount int)');
      const receiver = await startReceiver();
      t.after(() => receiver.close());
      const walhook = await startStreaming(
        pluginConfig({ plugin, database: db, receiver, slot: `identity_${plugin}`, tables: ['c13'] }),
        t,
      );

      await db.query("INSERT INTO c13 VALUES (1, 'a', 10)");
      await db.query("UPDATE c13 SET note = 'b' WHERE id = 1");
      await db.query('UPDATE c13 SET id = 2 WHERE id = 1');
      await db.query('DELETE FROM c13 WHERE id = 2');
      await db.query('ALTER TABLE c13 REPLICA IDENTITY FULL');
      await db.query("INSERT INTO c13 VALUES (3, 'c', 30)");
      await db.query("UPDATE c13 SET note = 'd' WHERE id = 3");
      await db.query('DELETE FROM c13 WHERE id = 3');
      await receiver.waitForRequests(7, { timeoutMs: 20_000 });
      const events = eventsOf(receiver.requests);

      const nonKey = findEvent(events, 'the update of a non-key column', (e) => {
        return e.event.data.new?.id === 1 && e.event.data.new.note === 'b';
      });
      assert.equal(nonKey.event.data.old, null, 'no old row, not a row of nulls');
      assert.equal(nonKey.event.old_row, undefined);

      const keyChange = findEvent(events, 'the update of the key', (e) => e.event.data.new?.id === 2);
      assert.deepEqual(keyChange.event.data.old, { id: 1 });
      assert.equal(keyChange.event.old_row, 'key');
      assert.deepEqual(keyChange.event.data.new, { id: 2, note: 'b', amount: 10 });

      const keyDelete = findEvent(events, 'the delete under DEFAULT', (e) => {
        return e.event.op === 'DELETE' && e.event.data.old?.id === 2;
      });
      assert.deepEqual(keyDelete.event.data.old, { id: 2 });
      assert.equal(keyDelete.event.old_row, 'key');
      assert.equal(keyDelete.event.data.new, null);

      const fullUpdate = findEvent(events, 'the update under FULL', (e) => e.event.data.new?.note === 'd');
      assert.deepEqual(fullUpdate.event.data.old, { id: 3, note: 'c', amount: 30 });
      assert.equal(fullUpdate.event.old_row, 'full');

      const fullDelete = findEvent(events, 'the delete under FULL', (e) => {
        return e.event.op === 'DELETE' && e.event.data.old?.id === 3;
      });
      assert.deepEqual(fullDelete.event.data.old, { id: 3, note: 'd', amount: 30 });
      assert.equal(fullDelete.event.old_row, 'full');
      await walhook.stop();
    });

    test('truncate of several tables', async (t) => {
      if (await skipWithoutPlugin(t, server, plugin)) return;
      const db = await openDatabase(t, server, `truncate_${plugin}`);
      await db.query(`
        CREATE TABLE parent (id serial PRIMARY KEY, note text);
        CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent);
        CREATE TABLE unwatched (id serial PRIMARY KEY);`);
      const receiver = await startReceiver();
      t.after(() => receiver.close());
      const walhook = await startStreaming(
        pluginConfig({ plugin, database: db, receiver, slot: `truncates_${plugin}`, tables: ['parent', 'child'] }),
        t,
      );

      await db.query("INSERT INTO parent (note) VALUES ('one'), ('two')");
      await db.query('INSERT INTO child (parent_id) VALUES (1)');
      await db.query('INSERT INTO unwatched DEFAULT VALUES');
      await receiver.waitForRequests(3, { timeoutMs: 20_000 });

      await db.query('TRUNCATE parent RESTART IDENTITY CASCADE');
      await db.query('TRUNCATE unwatched');
      await db.query("INSERT INTO parent (note) VALUES ('after')");
      await receiver.waitForRequests(6, { timeoutMs: 20_000 });
      await waitForSlotToCatchUp(server, `truncates_${plugin}`);

      const events = eventsOf(receiver.requests);
      assert.equal(events.length, 6, 'nothing for the unwatched table');
      assert.ok(events.every((e) => e.table.name !== 'unwatched'));
      const truncates = events.filter((e) => e.event.op === 'TRUNCATE');
      assert.deepEqual(truncates.map((e) => e.table.name).sort(), ['child', 'parent']);
      // wal2json 2.5 does not report the TRUNCATE options, so walhook sends null.
      const flags = plugin === 'pgoutput' ? { cascade: true, restart_identity: true } : { cascade: null, restart_identity: null };
      for (const truncate of truncates) {
        assert.deepEqual(truncate.event.truncate, flags, `flags of ${truncate.table.name}`);
        assert.deepEqual(truncate.event.data, { old: null, new: null });
        assert.equal(truncate.table.schema, 'public');
      }
      assert.notEqual(truncates[0]!.id, truncates[1]!.id, 'each table has its own event id');

      const afterIndex = events.findIndex((e) => e.event.data.new?.note === 'after');
      assert.deepEqual(events[afterIndex]!.event.data.new, { id: 1, note: 'after' }, 'RESTART IDENTITY took effect');
      const parentTruncateIndex = events.findIndex((e) => e.event.op === 'TRUNCATE' && e.table.name === 'parent');
      assert.ok(parentTruncateIndex < afterIndex, 'the insert arrives after the truncate of its table');
      await walhook.stop();
    });

    test('identifiers with dots, spaces and quotes', async (t) => {
      if (await skipWithoutPlugin(t, server, plugin)) return;
      const db = await openDatabase(t, server, `identifiers_${plugin}`);
      await db.query(`
        CREATE SCHEMA "Sales.EU";
        CREATE SCHEMA "Sales";
        CREATE TABLE "Sales.EU"."Order Items" ("Id" int PRIMARY KEY, "naïve col" text, "emoji😀" text, "quote""d" text);
        CREATE TABLE "Sales.EU"."order items" ("Id" int PRIMARY KEY, "naïve col" text);
        CREATE TABLE "Sales"."EU.Order Items" ("Id" int PRIMARY KEY, "naïve col" text);`);
      const receiver = await startReceiver();
      t.after(() => receiver.close());
      const walhook = await startStreaming(
        pluginConfig({
          plugin,
          database: db,
          receiver,
          slot: `identifiers_${plugin}`,
          publication: 'CDC Pub',
          tables: ['"Sales.EU"."Order Items"'],
        }),
        t,
      );

      await db.query(`INSERT INTO "Sales.EU"."Order Items" VALUES (1, 'a', 'b', 'c')`);
      await db.query(`INSERT INTO "Sales.EU"."order items" VALUES (1, 'look-alike')`);
      await db.query(`INSERT INTO "Sales"."EU.Order Items" VALUES (1, 'look-alike')`);
      await db.query(`INSERT INTO "Sales.EU"."Order Items" VALUES (2, 'd', 'e', 'f')`);
      await receiver.waitForRequests(2, { timeoutMs: 20_000 });
      await waitForSlotToCatchUp(server, `identifiers_${plugin}`);

      const events = eventsOf(receiver.requests);
      assert.equal(events.length, 2, 'one event per insert into the watched table, none for look-alikes');
      for (const event of events) {
        assert.deepEqual(event.table, { schema: 'Sales.EU', name: 'Order Items' });
        assert.deepEqual(Object.keys(event.event.data.new ?? {}), ['Id', 'naïve col', 'emoji😀', 'quote"d']);
      }
      assert.deepEqual(events.map((e) => e.event.data.new?.Id).sort(), [1, 2]);
      await walhook.stop();
    });
  });
}
