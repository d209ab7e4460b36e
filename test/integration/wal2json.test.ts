// walhook with source.plugin wal2json through the real CLI: the main job, agreement
// with pgoutput on the same changes, the NaN limit and a server without the plugin.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, after, before, test } from 'node:test';
import pg from 'pg';
import YAML from 'yaml';

import { type RowImageEvent, openDatabase, pluginConfig, skipWithoutPlugin, waitForSlotToCatchUp } from '../helpers/plugins.js';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type ReceivedRequest, startReceiver } from '../helpers/receiver.js';
import { compareLsn, slotState } from '../helpers/replication.js';
import { commitTransaction } from '../helpers/wal-positions.js';
import { runCli } from '../helpers/walhook-cli.js';
import { LOG_LEVEL, type LogEntry, startWalhook } from '../helpers/walhook-process.js';
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

/**
 * Starts walhook with wal2json on a new database `name` of `target`, waits for it to exit
 * with code 1, and returns its fatal log entry and its configuration.
 */
async function startWal2jsonUntilExit(
  t: TestContext,
  target: TestPostgres,
  name: string,
): Promise<{ fatal: LogEntry | undefined; config: object }> {
  const db = await openDatabase(t, target, name);
  await db.query('CREATE TABLE orders (id int PRIMARY KEY)');
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const config = pluginConfig({ plugin: 'wal2json', database: db, receiver, slot: name, tables: ['orders'] });
  const walhook = await startWalhook({ config, t });
  const exit = await walhook.waitForExit({ timeoutMs: 20_000 });
  assert.equal(exit.code, 1);
  return { fatal: walhook.logs.find((entry) => entry.level === LOG_LEVEL.fatal), config };
}

test('missing plugin stops walhook with a clear error', async (t) => {
  if (await server.hasPlugin('wal2json')) {
    // Only a server without wal2json can show this; the embedded server is one.
    t.skip('this server has wal2json installed');
    return;
  }
  const { fatal } = await startWal2jsonUntilExit(t, server, 'missing_plugin');
  assert.equal(fatal?.code, 'WALHOOK_PLUGIN_UNSUPPORTED');
  assert.match(fatal?.msg ?? '', /cannot load the output plugin 'wal2json'.*set source\.plugin: pgoutput/);
});

test('disallowed plugin stops walhook with the fix', async (t) => {
  // PostgreSQL 15 since 15.19 allows only the output plugins in output_plugin_libraries.
  const restricted = await startPostgres({ settings: { output_plugin_libraries: 'pgoutput' } }).catch(
    (err: unknown) => err as Error,
  );
  if (restricted instanceof Error) {
    t.skip(`this server version has no output_plugin_libraries parameter (${restricted.message.split('\n')[0]})`);
    return;
  }
  t.after(() => restricted.close());
  if (!(await restricted.hasPlugin('wal2json'))) {
    t.skip('this server does not have wal2json installed');
    return;
  }
  const { fatal, config } = await startWal2jsonUntilExit(t, restricted, 'plugin_not_allowed');
  assert.equal(fatal?.code, 'WALHOOK_PLUGIN_UNSUPPORTED');
  assert.match(fatal?.msg ?? '', /does not allow the output plugin 'wal2json'/);
  assert.match(fatal?.msg ?? '', /ALTER SYSTEM SET output_plugin_libraries = 'pgoutput, test_decoding, wal2json'/);

  // validate --connect finds the same problem before a start.
  const configDir = await mkdtemp(join(tmpdir(), 'walhook-plugin-check-'));
  t.after(() => rm(configDir, { recursive: true, force: true }));
  const configPath = join(configDir, 'walhook.yaml');
  await writeFile(configPath, YAML.stringify(config));
  const check = await runCli(['validate', '--config', configPath, '--connect']);
  assert.equal(check.code, 1, check.stdout + check.stderr);
  assert.match(check.stdout + check.stderr, /output_plugin_libraries \('pgoutput'\) does not allow source\.plugin 'wal2json'/);
  assert.match(check.stdout + check.stderr, /ALTER SYSTEM SET output_plugin_libraries = 'pgoutput, wal2json'/);
});

test('wal2json changes arrive and the slot follows delivery', async (t) => {
  if (await skipWithoutPlugin(t, server, 'wal2json')) return;
  // The postgres database, where commitTransaction reads the WAL with pg_walinspect.
  const db = { connectionString: server.connectionString, query: server.query.bind(server) };
  await db.query(`
    CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL);
    CREATE TABLE audit (id bigint PRIMARY KEY, entry text);`);
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  receiver.respond(() => ({ status: 503 }));
  const slot = 'main_wal2json';
  const walhook = await startWalhook({
    config: pluginConfig({ plugin: 'wal2json', database: db, receiver, slot, tables: ['orders'] }),
    t,
  });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  const first = await commitTransaction(server, ["INSERT INTO orders VALUES (1, 'first')"]);
  await receiver.waitForRequests(3, { timeoutMs: 20_000 });
  const during = await slotState(server, slot);
  assert.ok(during?.confirmedFlushLsn);
  // A slot confirmed at or before the commit record's start sends the transaction again.
  assert.ok(
    compareLsn(during.confirmedFlushLsn, first.commitLsn) <= 0,
    `the slot (${during.confirmedFlushLsn}) stays at or before the undelivered commit (${first.commitLsn})`,
  );
  receiver.respond(() => ({ status: 200 }));
  const failedAttempts = receiver.requests.length;

  await db.query("INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(2, 200) g");
  await db.query("UPDATE orders SET note = note || ' (paid)' WHERE id <= 50");
  await db.query('DELETE FROM orders WHERE id > 150');
  await db.query("INSERT INTO audit SELECT g, 'entry' FROM generate_series(1, 30) g");
  await db.query('TRUNCATE orders');
  const expected = 200 + 50 + 50 + 1;
  await receiver.waitForRequests(failedAttempts + expected, { timeoutMs: 60_000 });
  await waitForSlotToCatchUp(server, slot);

  const events = eventsOf(receiver.requests.slice(failedAttempts - 1));
  const ids = new Set(events.map((e) => e.id));
  assert.equal(ids.size, expected, 'one event id per change; the retried first event counts once');
  const count = (op: string): number => new Set(events.filter((e) => e.event.op === op).map((e) => e.id)).size;
  assert.equal(count('INSERT'), 200);
  assert.equal(count('UPDATE'), 50);
  assert.equal(count('DELETE'), 50);
  assert.equal(count('TRUNCATE'), 1);
  assert.ok(events.every((e) => e.table.name === 'orders'), 'audit has no trigger');

  const firstEvent = events.find((e) => e.event.data.new?.id === 1 && e.event.op === 'INSERT');
  assert.deepEqual(firstEvent?.event.data.new, { id: 1, note: 'first' });
  assert.equal(firstEvent?.xid, first.xid);
  const opsOfRow = events.filter((e) => (e.event.data.new ?? e.event.data.old)?.id === 175).map((e) => e.event.op);
  assert.deepEqual(opsOfRow, ['INSERT', 'DELETE'], 'changes of one row arrive in commit order');

  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});

const VALUES_TABLE = `
CREATE TYPE mood AS ENUM ('happy', 'it''s "odd"');
CREATE DOMAIN big_amount AS int8;
CREATE TYPE pair AS (n int8, at timestamptz);
CREATE TABLE vals (
  id int PRIMARY KEY, i8 int8, num numeric, f8 float8, js jsonb, j json, b bytea, ts timestamptz,
  t text, arr int8[], tags text[], d date, iv interval, u uuid, m mood, amount big_amount, p pair,
  doc text);
ALTER TABLE vals ALTER doc SET STORAGE EXTERNAL;`;

const VALUE_ROWS = [
  `(1, 9223372036854775807, 123456789012345678901234567890.123456789, 0.1,
    '{"n": 12345678901234567891, "s": "x\\\\y"}', '{ "b" : [1, 2.50] }', '\\x00ff5c22',
    '2024-03-10 12:34:56.789123+05:30', E'caf\\u00e9 \\U0001F600 "q" \\\\ \\n', ARRAY[9007199254740993, NULL],
    ARRAY['a,b', NULL, 'NULL', ''], '0044-03-15 BC', '1 year 2 months -3 days 04:05:06.789', 
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'it''s "odd"', 9007199254740993,
    ROW(-9223372036854775808, 'infinity'), repeat('x', 5000))`,
  `(2, -9223372036854775808, '-0.000000000000000001', '-0', 'null', '"text"', '\\x', '-infinity',
    '', '{}', '{}', 'infinity', '-00:00:00.000001', NULL, 'happy', NULL, ROW(NULL, NULL), NULL)`,
  `(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
];

test('both plugins send identical bodies equal to to_jsonb', async (t) => {
  if (await skipWithoutPlugin(t, server, 'wal2json')) return;
  const db = await openDatabase(t, server, 'agree');
  await db.query(VALUES_TABLE);
  const receivers = { pgoutput: await startReceiver(), wal2json: await startReceiver() };
  t.after(() => Promise.all([receivers.pgoutput.close(), receivers.wal2json.close()]));
  for (const plugin of ['pgoutput', 'wal2json'] as const) {
    const config = pluginConfig({
      plugin,
      database: db,
      receiver: receivers[plugin],
      slot: `agree_${plugin}`,
      tables: ['vals'],
    });
    const walhook = await startWalhook({ config, t });
    await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  }

  // to_jsonb as PostgreSQL computes it in a UTC session, read at each change.
  const compare = new pg.Client({ connectionString: db.connectionString, options: '-c TimeZone=UTC' });
  await compare.connect();
  t.after(() => compare.end());
  const expectedRows = new Map<string, string>();
  const snapshot = async (label: string, id: number): Promise<void> => {
    const rows = await compare.query<{ row: string }>('SELECT to_jsonb(v)::text AS row FROM vals v WHERE id = $1', [id]);
    expectedRows.set(label, rows.rows[0]!.row);
  };
  for (const row of VALUE_ROWS) await compare.query(`INSERT INTO vals VALUES ${row}`);
  for (const id of [1, 2, 3]) await snapshot(`insert ${id}`, id);
  await compare.query("UPDATE vals SET t = 'updated' WHERE id = 1");
  await snapshot('update 1', 1);
  // The update leaves the TOASTed doc unchanged, so the event names it instead of sending it.
  expectedRows.set('update 1', (await compare.query<{ row: string }>(`SELECT ($1::jsonb - 'doc')::text AS row`, [
    expectedRows.get('update 1'),
  ])).rows[0]!.row);
  await compare.query('UPDATE vals SET id = 4 WHERE id = 2');
  await compare.query('DELETE FROM vals WHERE id = 3');
  await compare.query('TRUNCATE vals');
  const expectedCount = 3 + 2 + 1 + 1;
  await receivers.pgoutput.waitForRequests(expectedCount, { timeoutMs: 20_000 });
  await receivers.wal2json.waitForRequests(expectedCount, { timeoutMs: 20_000 });

  const byId = (requests: readonly ReceivedRequest[]): Map<string, string> =>
    new Map(requests.map((request) => [parseEvent(request).id, request.body]));
  const fromPgoutput = byId(receivers.pgoutput.requests);
  const fromWal2json = byId(receivers.wal2json.requests);
  assert.deepEqual([...fromWal2json.keys()].sort(), [...fromPgoutput.keys()].sort(), 'the same event ids');
  for (const [id, body] of fromPgoutput) {
    const other = fromWal2json.get(id)!;
    if (parseEvent({ json: JSON.parse(body) } as ReceivedRequest).event.op === 'TRUNCATE') {
      // wal2json does not report the TRUNCATE options.
      assert.equal(other, body.replace('"cascade":false,"restart_identity":false', '"cascade":null,"restart_identity":null'));
    } else {
      assert.equal(other, body, `body of event ${id}`);
    }
  }

  // Compare the raw bodies inside PostgreSQL: a JavaScript parse would round int8 values.
  const requests = receivers.wal2json.requests;
  const bodyOf = (match: (event: RowImageEvent) => boolean): string | undefined =>
    requests.find((request) => match(parseEvent(request) as RowImageEvent))?.body;
  const checks: [string, string | undefined][] = [
    ...[1, 2, 3].map((id): [string, string | undefined] => [
      `insert ${id}`,
      bodyOf((e) => e.event.op === 'INSERT' && e.event.data.new?.id === id),
    ]),
    ['update 1', bodyOf((e) => e.event.data.new?.t === 'updated')],
  ];
  const update = eventsOf(requests).find((e) => e.event.data.new?.t === 'updated');
  assert.deepEqual(update?.event.unchanged_columns, ['doc']);
  for (const [label, body] of checks) {
    assert.ok(body, `${label} was delivered`);
    const equal = await compare.query<{ equal: boolean; actual: string }>(
      `SELECT ($1::jsonb -> 'event' -> 'data' -> 'new') = $2::jsonb AS equal,
              left(($1::jsonb -> 'event' -> 'data' -> 'new')::text, 600) AS actual`,
      [body, expectedRows.get(label)],
    );
    assert.equal(equal.rows[0]?.equal, true, `${label}: delivered ${equal.rows[0]?.actual}`);
  }
  const rawInsert = receivers.wal2json.requests.find((r) => r.body.includes('"id":1,'))!.body;
  assert.match(rawInsert, /"i8":9223372036854775807,/, 'int8 keeps its digits');
  assert.match(rawInsert, /"num":123456789012345678901234567890\.123456789,/);
  assert.match(rawInsert, /"amount":9007199254740993,/);
});

test('wal2json delivers NaN as null and warns once', async (t) => {
  if (await skipWithoutPlugin(t, server, 'wal2json')) return;
  const db = await openDatabase(t, server, 'not_finite');
  await db.query('CREATE TABLE readings (id int PRIMARY KEY, value float8, total numeric)');
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const walhook = await startWalhook({
    config: pluginConfig({ plugin: 'wal2json', database: db, receiver, slot: 'not_finite', tables: ['readings'] }),
    t,
  });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  await db.query("INSERT INTO readings VALUES (1, 'NaN', 'Infinity'), (2, 'Infinity', NULL), (3, NULL, 1.5)");
  await receiver.waitForRequests(3, { timeoutMs: 20_000 });
  const rows = eventsOf(receiver.requests).map((e) => e.event.data.new);
  assert.deepEqual(
    rows.sort((a, b) => Number(a?.id) - Number(b?.id)),
    [
      { id: 1, value: null, total: null },
      { id: 2, value: null, total: null },
      { id: 3, value: null, total: 1.5 },
    ],
  );
  const warnings = walhook.logs.filter((entry) => entry.msg.startsWith('wal2json sent null for a float or numeric'));
  assert.deepEqual(
    warnings.map((entry) => entry.column).sort(),
    ['total', 'value'],
    'one warning per column, not per row',
  );
  await walhook.stop();
});
