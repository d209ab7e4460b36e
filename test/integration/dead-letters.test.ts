// The dead-letter store against a real PostgreSQL server, and the `walhook dead-letters`
// commands as child processes that redeliver to a local HTTP receiver.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import YAML from 'yaml';

import type { WalhookError } from '../../src/core/errors.js';
import { uuidFromText } from '../../src/pipeline/envelope.js';
import {
  type DeadLetterEntry,
  type DeadLetterRecord,
  DeadLetterStore,
  InvalidDeadLetterError,
} from '../../src/sinks/dead-letter/store.js';
import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { startReceiver } from '../helpers/receiver.js';
import type { Receiver } from '../helpers/receiver.js';
import { runCli } from '../helpers/walhook-cli.js';

/** A Standard Webhooks secret: `whsec_` and a base64 key. */
const SIGNING_SECRET = `whsec_${randomBytes(24).toString('base64')}`;

/** A header value that must never appear in the command output. */
const SECRET_TOKEN = 'Bearer dead-letter-test-secret-7f3a';

const HOUR_MS = 3_600_000;

/**
 * Builds envelope text in walhook's layout, with a big number that JavaScript numbers
 * cannot hold, whitespace inside a json column value, and a `delivery_info` key
 * nested in row data that redelivery must leave alone.
 */
function envelopeText(eventId: string, trigger: string, maxRetries: number, currentRetry: number): string {
  return (
    `{"id":"${eventId}","created_at":"2025-01-31T12:00:00.123456Z","trigger":{"name":"${trigger}"},` +
    '"table":{"schema":"public","name":"orders"},' +
    '"event":{"op":"INSERT","data":{"old":null,"new":{"id":9007199254740993,"amount":12345678901234567890.125,' +
    '"meta":{"b": 1,  "a" : [1, 2 ], "delivery_info":{"max_retries":0,"current_retry":0}},"note":"a \\"}\\" brace"}},' +
    '"session_variables":null},' +
    `"delivery_info":{"max_retries":${maxRetries},"current_retry":${currentRetry}},"lsn":"0/16B3748","xid":1234}`
  );
}

function entry(overrides: Partial<DeadLetterEntry> = {}): DeadLetterEntry {
  const eventId = overrides.eventId ?? randomUUID();
  const trigger = overrides.trigger ?? 'orders';
  return {
    eventId,
    trigger,
    webhook: 'orders-api',
    table: { schema: 'public', name: 'orders' },
    op: 'INSERT',
    lsn: '0/16B3748',
    envelope: envelopeText(eventId, trigger, 4, 4),
    attempts: 5,
    lastStatus: 503,
    lastError: null,
    reason: 'attempts exhausted',
    firstAttemptAt: new Date('2025-01-31T12:00:01.000Z'),
    lastAttemptAt: new Date('2025-01-31T12:00:09.500Z'),
    ...overrides,
  };
}

describe('dead letters', () => {
  let server: TestPostgres;
  let connection: string;
  let receiver: Receiver;
  let configDir: string;
  let schemaCount = 0;

  before(async () => {
    server = await startPostgres();
    connection = await server.createDatabase('dead_letter_shop');
    receiver = await startReceiver();
    receiver.respond((request) => (request.url.startsWith('/failing') ? { status: 500 } : { status: 200 }));
    configDir = await mkdtemp(join(tmpdir(), 'walhook-dead-letter-test-'));
  });

  after(async () => {
    await receiver?.close();
    await server?.close();
    if (configDir !== undefined) {
      await rm(configDir, { recursive: true, force: true });
    }
  });

  /** Creates a store on a schema of its own, so that tests do not see each other's rows. */
  async function newStore(t: { after(fn: () => unknown): void }, schema = `dl_test_${++schemaCount}`) {
    const store = new DeadLetterStore({ connection, schema });
    t.after(() => store.close());
    await store.ensureTable();
    return { store, schema };
  }

  /** Writes a configuration file whose dead letters live in `schema`, and returns its path. */
  async function writeConfig(schema: string): Promise<string> {
    const failingUrl = `http://127.0.0.1:${receiver.port}/failing`;
    const path = join(configDir, `${schema}.yaml`);
    const config = {
      source: { connection },
      webhooks: [
        { name: 'orders-api', url: receiver.url, headers: { Authorization: SECRET_TOKEN }, timeout: '5s' },
        { name: 'failing-api', url: failingUrl, timeout: '5s' },
        { name: 'signed-api', url: `${receiver.url}?signed`, signing_secret: SIGNING_SECRET },
        { name: 'templated-api', url: `http://127.0.0.1:${receiver.port}/tables/{{ table.name }}` },
        { name: 'batch-api', url: `${receiver.url}?batch`, batch: { max_events: 10 } },
      ],
      triggers: [
        { name: 'orders', table: 'public.orders', webhook: 'orders-api' },
        { name: 'customers', table: 'public.customers', webhook: 'orders-api' },
        {
          name: 'shaped',
          table: 'public.orders',
          webhook: 'orders-api',
          transform: { body: '{ "event_id": id, "retry": delivery_info.current_retry }' },
        },
      ],
      dead_letters: { schema },
    };
    await writeFile(path, YAML.stringify(config), { mode: 0o600 });
    return path;
  }

  async function readRow(store: DeadLetterStore, id: string): Promise<DeadLetterRecord> {
    const [row] = await store.get([id]);
    assert.ok(row !== undefined, `dead letter ${id} not found`);
    return row;
  }

  async function writeAndList(store: DeadLetterStore, entries: DeadLetterEntry[]): Promise<DeadLetterRecord[]> {
    for (const item of entries) {
      await store.write(item);
    }
    return store.list({ includeRedelivered: true });
  }

  describe('store', () => {
    test('store round trip keeps envelope text', async (t) => {
      const { store } = await newStore(t);
      const written = entry({ lastError: 'ECONNRESET: socket hang up', table: { schema: 'Sales', name: 'Order Items' } });

      const [row, ...rest] = await writeAndList(store, [written]);

      assert.equal(rest.length, 0);
      assert.ok(row !== undefined);
      assert.equal(row.envelope, written.envelope);
      assert.match(row.envelope, /"amount":12345678901234567890\.125/);
      assert.match(row.envelope, /"meta":\{"b": 1, {2}"a" : \[1, 2 \]/);
      assert.equal(row.eventId, written.eventId);
      assert.equal(row.trigger, 'orders');
      assert.equal(row.webhook, 'orders-api');
      assert.deepEqual(row.table, { schema: 'Sales', name: 'Order Items' });
      assert.equal(row.op, 'INSERT');
      assert.equal(row.lsn, '0/16B3748');
      assert.equal(row.attempts, 5);
      assert.equal(row.lastStatus, 503);
      assert.equal(row.lastError, 'ECONNRESET: socket hang up');
      assert.equal(row.reason, 'attempts exhausted');
      assert.equal(row.firstAttemptAt.toISOString(), '2025-01-31T12:00:01.000Z');
      assert.equal(row.lastAttemptAt.toISOString(), '2025-01-31T12:00:09.500Z');
      assert.equal(row.redeliveredAt, null);
      assert.equal(row.redeliveryAttempts, 0);
      assert.match(row.id, /^[1-9][0-9]*$/);
    });

    test('store keeps a null table and status', async (t) => {
      const { store } = await newStore(t);

      const [row] = await writeAndList(store, [entry({ table: null, op: 'TRUNCATE', lastStatus: null })]);

      assert.equal(row?.table, null);
      assert.equal(row?.op, 'TRUNCATE');
      assert.equal(row?.lastStatus, null);
    });

    test('store drops a repeated pending event', async (t) => {
      const { store } = await newStore(t);
      const first = entry();

      const rows = await writeAndList(store, [first, { ...first, attempts: 9 }]);

      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.attempts, 5);
    });

    test('store adds an event again after redelivery', async (t) => {
      const { store } = await newStore(t);
      const first = entry();
      await store.write(first);
      const [row] = await store.list();
      assert.ok(row !== undefined);
      assert.equal(await store.markRedelivered(row.id, new Date()), true);

      const rows = await writeAndList(store, [first]);

      assert.equal(rows.length, 2);
    });

    test('store quotes the schema name', async (t) => {
      const { store } = await newStore(t, 'Dead "Letters"');

      await store.write(entry());
      await store.ensureTable();

      assert.equal(store.table, '"Dead ""Letters"""."dead_letters"');
      assert.equal((await store.list()).length, 1);
    });

    test('store rejects a foreign dead_letters table', async (t) => {
      const schema = `dl_foreign_${++schemaCount}`;
      await rawQuery(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".dead_letters (id int, note text)`);
      const store = new DeadLetterStore({ connection, schema });
      t.after(() => store.close());

      await assert.rejects(store.ensureTable(), (error: unknown) => {
        assert.equal((error as WalhookError).code, 'WALHOOK_DEAD_LETTER_TABLE');
        assert.match((error as Error).message, /column id is integer, expected bigint/);
        assert.match((error as Error).message, /column envelope is missing/);
        return true;
      });
    });

    test('store creates the table once under concurrency', async (t) => {
      const schema = `dl_concurrent_${++schemaCount}`;
      const stores = [0, 1, 2].map(() => new DeadLetterStore({ connection, schema }));
      t.after(() => Promise.all(stores.map((store) => store.close())));

      await Promise.all(stores.map((store) => store.ensureTable()));

      await stores[0]?.write(entry());
      assert.equal((await stores[1]?.list())?.length, 1);
    });

    test('store write overrides synchronous_commit off', async (t) => {
      const database = `dl_async_${++schemaCount}`;
      const asyncConnection = await server.createDatabase(database);
      await server.query(`ALTER DATABASE ${database} SET synchronous_commit = off`);
      const store = new DeadLetterStore({ connection: asyncConnection, schema: 'walhook' });
      t.after(() => store.close());
      await store.ensureTable();
      // A trigger copies the setting that the inserting transaction runs with into the row.
      await rawQuery(
        `CREATE FUNCTION walhook.record_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.last_error := current_setting('synchronous_commit'); RETURN NEW; END $$;
         CREATE TRIGGER record_commit_setting BEFORE INSERT ON walhook.dead_letters
         FOR EACH ROW EXECUTE FUNCTION walhook.record_commit_setting();`,
        [],
        asyncConnection,
      );

      await store.write(entry());

      const [row] = await store.list();
      assert.equal(row?.lastError, 'on');
    });

    test('store works with the documented grants', async (t) => {
      const { schema } = await newStore(t);
      const role = `dl_role_${schemaCount}`;
      const password = randomUUID();
      await rawQuery(
        `CREATE ROLE ${role} LOGIN PASSWORD '${password}';
         GRANT USAGE ON SCHEMA "${schema}" TO ${role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON "${schema}".dead_letters TO ${role};
         GRANT USAGE ON SEQUENCE "${schema}".dead_letters_id_seq TO ${role};`,
      );
      const url = new URL(connection);
      url.username = role;
      url.password = password;
      const store = new DeadLetterStore({ connection: url.toString(), schema });
      t.after(() => store.close());

      await store.ensureTable();
      await store.write(entry());
      const [row] = await store.list();
      assert.ok(row !== undefined);
      assert.equal(await store.recordRedeliveryFailure(row.id, 500, null), true);
      assert.equal(await store.markRedelivered(row.id, new Date()), true);
      assert.equal(await store.purge({ before: new Date(Date.now() + HOUR_MS) }), 1);
      const other = new DeadLetterStore({ connection: url.toString(), schema: `dl_not_created_${schemaCount}` });
      t.after(() => other.close());
      await assert.rejects(other.ensureTable(), /permission denied for database/);
    });

    test('store rejects entries it cannot store', async (t) => {
      const { store } = await newStore(t);

      await assert.rejects(store.write(entry({ lsn: 'not-an-lsn' })), InvalidDeadLetterError);
      await assert.rejects(store.write(entry({ envelope: '{"a":"\u0000"}' })), InvalidDeadLetterError);
      await assert.rejects(store.write(entry({ envelope: '{"a":"\ud800"}' })), InvalidDeadLetterError);
      await assert.rejects(store.write(entry({ attempts: -1 })), InvalidDeadLetterError);
      await assert.rejects(store.write(entry({ firstAttemptAt: new Date(Number.NaN) })), InvalidDeadLetterError);
      assert.equal((await store.list()).length, 0);
    });

    test('store replaces NUL in the last error', async (t) => {
      const { store } = await newStore(t);

      const [row] = await writeAndList(store, [entry({ lastError: 'bad\u0000byte' })]);

      assert.equal(row?.lastError, 'bad\ufffdbyte');
    });

    test('store list filters by trigger and time', async (t) => {
      const { store, schema } = await newStore(t);
      await store.write(entry({ trigger: 'orders' }));
      await store.write(entry({ trigger: 'orders' }));
      await store.write(entry({ trigger: 'customers' }));
      const [oldest] = await store.list();
      assert.ok(oldest !== undefined);
      await rawQuery(`UPDATE "${schema}".dead_letters SET created_at = now() - interval '2 hours' WHERE id = $1`, [
        oldest.id,
      ]);
      const oneHourAgo = new Date(Date.now() - HOUR_MS);

      const orders = await store.list({ trigger: 'orders' });
      const recent = await store.list({ since: oneHourAgo });
      const recentOrders = await store.list({ trigger: 'orders', since: oneHourAgo });
      const firstTwo = await store.list({ limit: 2 });
      const afterFirst = await store.list({ afterId: oldest.id });

      assert.equal(orders.length, 2);
      assert.deepEqual(
        recent.map((row) => row.trigger),
        ['orders', 'customers'],
      );
      assert.equal(recentOrders.length, 1);
      assert.notEqual(recentOrders[0]?.id, oldest.id);
      assert.equal(firstTwo.length, 2);
      assert.equal(firstTwo[0]?.id, oldest.id);
      assert.equal(afterFirst.length, 2);
    });

    test('store list hides redelivered rows', async (t) => {
      const { store } = await newStore(t);
      await store.write(entry());
      await store.write(entry());
      const [first] = await store.list();
      assert.ok(first !== undefined);
      const at = new Date('2025-02-01T08:00:00.000Z');

      assert.equal(await store.markRedelivered(first.id, at), true);

      assert.equal((await store.list()).length, 1);
      assert.equal((await store.list({ includeRedelivered: true })).length, 2);
      const marked = await readRow(store, first.id);
      assert.equal(marked.redeliveredAt?.toISOString(), at.toISOString());
      assert.equal(marked.redeliveryAttempts, 1);
      assert.equal(await store.markRedelivered('999999', at), false);
    });

    test('store records a redelivery failure', async (t) => {
      const { store } = await newStore(t);
      await store.write(entry());
      const [row] = await store.list();
      assert.ok(row !== undefined);

      assert.equal(await store.recordRedeliveryFailure(row.id, 502, null), true);
      assert.equal(await store.recordRedeliveryFailure(row.id, null, 'timed out after 5000 ms'), true);

      const failed = await readRow(store, row.id);
      assert.equal(failed.lastStatus, null);
      assert.equal(failed.lastError, 'timed out after 5000 ms');
      assert.equal(failed.redeliveryAttempts, 2);
      assert.equal(failed.redeliveredAt, null);
    });

    test('store purge returns the count', async (t) => {
      const { store, schema } = await newStore(t);
      await store.write(entry({ trigger: 'orders' }));
      await store.write(entry({ trigger: 'customers' }));
      await store.write(entry({ trigger: 'orders' }));
      await rawQuery(`UPDATE "${schema}".dead_letters SET created_at = now() - interval '3 days' WHERE id < (
        SELECT max(id) FROM "${schema}".dead_letters)`);
      const oneDayAgo = new Date(Date.now() - 24 * HOUR_MS);

      assert.equal(await store.purge({ before: oneDayAgo, trigger: 'orders' }), 1);
      assert.equal(await store.purge({ before: oneDayAgo }), 1);
      assert.equal(await store.purge({ before: oneDayAgo }), 0);
      assert.equal((await store.list()).length, 1);
    });

    test('store get returns rows by id', async (t) => {
      const { store } = await newStore(t);
      const [a, b] = await writeAndList(store, [entry(), entry()]);
      assert.ok(a !== undefined);
      assert.ok(b !== undefined);

      const rows = await store.get([b.id, '999999', a.id]);

      assert.deepEqual(
        rows.map((row) => row.id),
        [a.id, b.id],
      );
      await assert.rejects(store.get(['1; DROP TABLE x']), RangeError);
    });
  });

  describe('command line', () => {
    test('list prints a table', async (t) => {
      const { store, schema } = await newStore(t);
      const [row] = await writeAndList(store, [entry({ reason: 'permanent status 404', lastStatus: 404 })]);
      assert.ok(row !== undefined);
      const config = await writeConfig(schema);

      const result = await runCli(['dead-letters', 'list', '--config', config]);

      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, '');
      const lines = result.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 2, result.stdout);
      assert.match(
        lines[0] ?? '',
        /^id +created_at +trigger +webhook +op +table +attempts +last_status +reason$/,
      );
      const cells = (lines[1] ?? '').split(/ {2,}/);
      assert.deepEqual(cells, [
        row.id,
        row.createdAt.toISOString(),
        'orders',
        'orders-api',
        'INSERT',
        'public.orders',
        '5',
        '404',
        'permanent status 404',
      ]);
    });

    test('list filters and prints JSON', async (t) => {
      const { store, schema } = await newStore(t);
      const rows = await writeAndList(store, [
        entry({ trigger: 'orders' }),
        entry({ trigger: 'orders' }),
        entry({ trigger: 'customers' }),
      ]);
      await rawQuery(`UPDATE "${schema}".dead_letters SET created_at = now() - interval '2 hours' WHERE id = $1`, [
        rows[0]?.id,
      ]);
      const config = await writeConfig(schema);

      const result = await runCli([
        'dead-letters', 'list', '--config', config, '--trigger', 'orders', '--since', '1h', '--json',
      ]);

      assert.equal(result.code, 0, result.stderr);
      const printed = JSON.parse(result.stdout) as Record<string, unknown>[];
      assert.equal(printed.length, 1);
      const [item] = printed;
      assert.equal(item?.['id'], rows[1]?.id);
      assert.equal(item?.['event_id'], rows[1]?.eventId);
      assert.equal(item?.['envelope'], rows[1]?.envelope);
      assert.deepEqual(item?.['table'], { schema: 'public', name: 'orders' });
      assert.equal(item?.['lsn'], '0/16B3748');
      assert.equal(item?.['redelivered_at'], null);
    });

    test('list reports a missing table', async () => {
      const config = await writeConfig('dl_never_created');

      const result = await runCli(['dead-letters', 'list', '--config', config]);

      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'no dead letters found\n');
      assert.match(result.stderr, /table "dl_never_created"\."dead_letters" does not exist yet/);
    });

    test('list reports a connection failure', async (t) => {
      const { schema } = await newStore(t);
      const closed = await startReceiver();
      const closedPort = closed.port;
      await closed.close();
      const path = join(configDir, 'unreachable.yaml');
      const config = {
        source: { connection: `postgres://walhook:connection-secret-91c2@127.0.0.1:${closedPort}/shop` },
        webhooks: [{ name: 'orders-api', url: receiver.url }],
        triggers: [{ name: 'orders', table: 'public.orders', webhook: 'orders-api' }],
        dead_letters: { schema },
      };
      await writeFile(path, YAML.stringify(config), { mode: 0o600 });

      const result = await runCli(['dead-letters', 'list', '--config', path]);

      assert.equal(result.code, 1);
      assert.match(result.stderr, /^error: .*ECONNREFUSED/m);
      assert.equal(result.stderr.includes('connection-secret-91c2'), false);
      assert.equal(result.stdout, '');
    });

    test('redeliver sends the stored envelope', async (t) => {
      const { store, schema } = await newStore(t);
      const [row] = await writeAndList(store, [entry()]);
      assert.ok(row !== undefined);
      const config = await writeConfig(schema);
      const startedAt = Math.floor(Date.now() / 1000);

      const result = await runCli(['dead-letters', 'redeliver', '--config', config, row.id]);

      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^id ${row.id}: delivered to webhook orders-api, status 200, current_retry 5$`, 'm'));
      assert.match(result.stdout, /^redelivered 1 of 1 dead letters, 0 failed$/m);
      const request = await receiver.waitForRequest((candidate) => candidate.headers['webhook-id'] === row.eventId);
      assert.equal(request.method, 'POST');
      assert.equal(request.url, '/hooks');
      assert.equal(request.headers['content-type'], 'application/json');
      assert.equal(request.headers['authorization'], SECRET_TOKEN);
      const timestamp = Number(request.headers['webhook-timestamp']);
      assert.ok(timestamp >= startedAt, `webhook-timestamp ${timestamp} is before the start ${startedAt}`);
      assert.ok(timestamp <= startedAt + 60, `webhook-timestamp ${timestamp} is over a minute after the start ${startedAt}`);
      assert.equal(request.body, envelopeText(row.eventId, 'orders', 4, 5));
      const marked = await readRow(store, row.id);
      assert.notEqual(marked.redeliveredAt, null);
      assert.equal(marked.redeliveryAttempts, 1);
      assert.equal(result.stdout.includes(SECRET_TOKEN), false);
      assert.equal(result.stderr.includes(SECRET_TOKEN), false);
    });

    test('redeliver all of one trigger', async (t) => {
      const { store, schema } = await newStore(t);
      const rows = await writeAndList(store, [
        entry({ trigger: 'orders' }),
        entry({ trigger: 'customers' }),
        entry({ trigger: 'orders', attempts: 2 }),
      ]);
      const [firstOrder, customer, secondOrder] = rows;
      assert.ok(firstOrder !== undefined);
      assert.ok(customer !== undefined);
      assert.ok(secondOrder !== undefined);
      const config = await writeConfig(schema);

      const result = await runCli(['dead-letters', 'redeliver', '--config', config, '--all', '--trigger', 'orders']);

      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^redelivered 2 of 2 dead letters, 0 failed$/m);
      const first = await receiver.waitForRequest((request) => request.headers['webhook-id'] === firstOrder.eventId);
      const second = await receiver.waitForRequest((request) => request.headers['webhook-id'] === secondOrder.eventId);
      assert.equal(first.body, envelopeText(firstOrder.eventId, 'orders', 4, 5));
      assert.equal(second.body, envelopeText(secondOrder.eventId, 'orders', 4, 2));
      assert.equal(
        receiver.requests.some((request) => request.headers['webhook-id'] === customer.eventId),
        false,
      );
      assert.notEqual((await readRow(store, firstOrder.id)).redeliveredAt, null);
      assert.notEqual((await readRow(store, secondOrder.id)).redeliveredAt, null);
      assert.equal((await readRow(store, customer.id)).redeliveredAt, null);
    });

    test('redeliver failure exits 1 and records it', async (t) => {
      const { store, schema } = await newStore(t);
      const [row] = await writeAndList(store, [entry({ webhook: 'failing-api' })]);
      assert.ok(row !== undefined);
      const config = await writeConfig(schema);

      const firstRun = await runCli(['dead-letters', 'redeliver', '--config', config, row.id]);
      const secondRun = await runCli(['dead-letters', 'redeliver', '--config', config, row.id]);

      assert.equal(firstRun.code, 1);
      assert.match(
        firstRun.stderr,
        new RegExp(`^id ${row.id}: failed: webhook failing-api responded with status 500, current_retry 5$`, 'm'),
      );
      assert.match(firstRun.stdout, /^redelivered 0 of 1 dead letters, 1 failed$/m);
      assert.equal(secondRun.code, 1);
      assert.match(secondRun.stderr, /current_retry 6$/m);
      const requests = await receiver.waitForRequests(
        (all) => all.filter((request) => request.headers['webhook-id'] === row.eventId).length >= 2,
      );
      const bodies = requests
        .filter((request) => request.headers['webhook-id'] === row.eventId)
        .map((request) => request.body);
      assert.deepEqual(bodies, [envelopeText(row.eventId, 'orders', 4, 5), envelopeText(row.eventId, 'orders', 4, 6)]);
      const failed = await readRow(store, row.id);
      assert.equal(failed.redeliveredAt, null);
      assert.equal(failed.lastStatus, 500);
      assert.equal(failed.redeliveryAttempts, 2);
    });

    test('redeliver reports a network error', async (t) => {
      const { store, schema } = await newStore(t);
      const [row] = await writeAndList(store, [entry()]);
      assert.ok(row !== undefined);
      // A receiver that is closed at once leaves a loopback port with no listener.
      const closed = await startReceiver();
      const closedUrl = closed.url;
      await closed.close();
      const config = await writeConfig(schema);
      const text = YAML.stringify({
        ...(YAML.parse(await readFile(config, 'utf8')) as object),
        webhooks: [{ name: 'orders-api', url: closedUrl, headers: { Authorization: SECRET_TOKEN } }],
      });
      await writeFile(config, text);

      const result = await runCli(['dead-letters', 'redeliver', '--config', config, row.id]);

      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`^id ${row.id}: failed: webhook orders-api request failed: ECONNREFUSED`, 'm'));
      const failed = await readRow(store, row.id);
      assert.equal(failed.lastStatus, null);
      assert.match(failed.lastError ?? '', /ECONNREFUSED/);
      assert.equal(result.stderr.includes(SECRET_TOKEN), false);
    });

    test('redeliver rejects unknown names and ids', async (t) => {
      const { store, schema } = await newStore(t);
      const [retiredWebhook, retiredTrigger] = await writeAndList(store, [
        entry({ webhook: 'retired-api' }),
        entry({ trigger: 'retired_trigger' }),
      ]);
      assert.ok(retiredWebhook !== undefined);
      assert.ok(retiredTrigger !== undefined);
      const config = await writeConfig(schema);

      const result = await runCli([
        'dead-letters', 'redeliver', '--config', config, retiredWebhook.id, retiredTrigger.id, '999999',
      ]);

      assert.equal(result.code, 1);
      assert.match(result.stderr, /^id 999999: not found$/m);
      assert.match(
        result.stderr,
        new RegExp(
          `^id ${retiredWebhook.id}: cannot redeliver: webhook 'retired-api' is not in the configuration; add it back`,
          'm',
        ),
      );
      assert.match(
        result.stderr,
        new RegExp(
          `^id ${retiredTrigger.id}: cannot redeliver: trigger 'retired_trigger' is not in the configuration; add it back`,
          'm',
        ),
      );
      assert.match(result.stdout, /^redelivered 0 of 3 dead letters, 3 failed$/m);
      for (const row of [retiredWebhook, retiredTrigger]) {
        const unchanged = await readRow(store, row.id);
        assert.equal(unchanged.redeliveryAttempts, 0);
        assert.equal(unchanged.redeliveredAt, null);
      }
    });

    test('redeliver applies current webhook settings', async (t) => {
      const { store, schema } = await newStore(t);
      const [signed, shaped, templated, batched] = await writeAndList(store, [
        entry({ webhook: 'signed-api' }),
        entry({ trigger: 'shaped' }),
        entry({ webhook: 'templated-api' }),
        entry({ webhook: 'batch-api' }),
      ]);
      assert.ok(signed !== undefined);
      assert.ok(shaped !== undefined);
      assert.ok(templated !== undefined);
      assert.ok(batched !== undefined);
      const config = await writeConfig(schema);

      const result = await runCli(['dead-letters', 'redeliver', '--config', config, '--all']);

      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^redelivered 4 of 4 dead letters, 0 failed$/m);

      const signedRequest = await receiver.waitForRequest((request) => request.headers['webhook-id'] === signed.eventId);
      assert.equal(signedRequest.url, '/hooks?signed');
      assert.equal(signedRequest.body, envelopeText(signed.eventId, 'orders', 4, 5));
      const verified = new Webhook(SIGNING_SECRET).verify(signedRequest.body, {
        'webhook-id': String(signedRequest.headers['webhook-id']),
        'webhook-timestamp': String(signedRequest.headers['webhook-timestamp']),
        'webhook-signature': String(signedRequest.headers['webhook-signature']),
      });
      assert.deepEqual((verified as { id?: unknown }).id, signed.eventId);

      const shapedRequest = await receiver.waitForRequest((request) => request.headers['webhook-id'] === shaped.eventId);
      assert.equal(shapedRequest.body, `{"event_id":"${shaped.eventId}","retry":5}`);

      const templatedRequest = await receiver.waitForRequest(
        (request) => request.headers['webhook-id'] === templated.eventId,
      );
      assert.equal(templatedRequest.url, '/tables/orders');

      const batchId = uuidFromText(batched.eventId);
      const batchRequest = await receiver.waitForRequest((request) => request.headers['webhook-id'] === batchId);
      assert.equal(batchRequest.url, '/hooks?batch');
      assert.equal(batchRequest.body, `{"events":[${envelopeText(batched.eventId, 'orders', 4, 5)}]}`);
    });

    test('redeliver rejects bad usage', async (t) => {
      const { schema } = await newStore(t);
      const config = await writeConfig(schema);

      const cases: [string[], RegExp][] = [
        [[], /give the ids of the dead letters to redeliver, or --all/],
        [['--all', '1'], /give dead-letter ids or --all, not both/],
        [['--trigger', 'orders', '1'], /--trigger only applies with --all/],
        [['abc'], /invalid dead-letter id 'abc'/],
      ];
      for (const [args, message] of cases) {
        const result = await runCli(['dead-letters', 'redeliver', '--config', config, ...args]);
        assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr, message);
      }
    });

    test('purge deletes old rows', async (t) => {
      const { store, schema } = await newStore(t);
      await writeAndList(store, [entry({ trigger: 'orders' }), entry({ trigger: 'customers' }), entry()]);
      await rawQuery(`UPDATE "${schema}".dead_letters SET created_at = now() - interval '3 hours' WHERE id < (
        SELECT max(id) FROM "${schema}".dead_letters)`);
      const config = await writeConfig(schema);

      const byTrigger = await runCli(['dead-letters', 'purge', '--config', config, '--before', '2h', '--trigger', 'orders']);
      const rest = await runCli(['dead-letters', 'purge', '--config', config, '--before', '2h']);
      const invalid = await runCli(['dead-letters', 'purge', '--config', config, '--before', '2025-01-31T12:00']);

      assert.equal(byTrigger.code, 0, byTrigger.stderr);
      assert.equal(byTrigger.stdout, 'deleted 1 dead letters\n');
      assert.equal(rest.code, 0, rest.stderr);
      assert.equal(rest.stdout, 'deleted 1 dead letters\n');
      assert.equal((await store.list()).length, 1);
      assert.equal(invalid.code, 2);
      assert.match(invalid.stderr, /invalid --before '2025-01-31T12:00': add Z or an offset/);
    });
  });

  /** Runs SQL as superuser in the test database, or in `database`, outside any store. */
  async function rawQuery(sql: string, params: unknown[] = [], database = connection): Promise<void> {
    const client = new pg.Client({ connectionString: database });
    await client.connect();
    try {
      await client.query(sql, params);
    } finally {
      await client.end();
    }
  }
});

