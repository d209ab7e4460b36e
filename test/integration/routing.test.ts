// Routing and the envelope, end to end: a real PostgreSQL server, real HTTP receivers
// and the walhook CLI as a child process.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';

import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { startReceiver } from '../helpers/receiver.js';
import type { ReceivedRequest, Receiver } from '../helpers/receiver.js';
import { compareLsn, currentWalLsn } from '../helpers/replication.js';
import { startWalhook } from '../helpers/walhook-process.js';
import type { WalhookProcess } from '../helpers/walhook-process.js';

const ORDERS_TOKEN = 'routing-test-token';
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_MICROSECONDS_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const LSN_PATTERN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;

interface Envelope {
  id: string;
  created_at: string;
  trigger: { name: string };
  table: { schema: string; name: string };
  event: {
    op: string;
    data: { old: Record<string, unknown> | null; new: Record<string, unknown> | null };
    session_variables: unknown;
    [extra: string]: unknown;
  };
  delivery_info: { max_retries: number | null; current_retry: number };
  lsn: string;
  xid: number;
}

/** What the database reported around one committed transaction. */
interface Committed {
  xid: number;
  walBefore: string;
  walAfter: string;
  startedAt: number;
}

function envelopeOf(request: ReceivedRequest): Envelope {
  assert.ok(request.json !== undefined, `request body is not JSON: ${request.body}`);
  return request.json as Envelope;
}

function isFor(trigger: string, op: string) {
  return (request: ReceivedRequest): boolean => {
    const envelope = request.json as Envelope | undefined;
    return envelope?.trigger?.name === trigger && envelope.event?.op === op;
  };
}

describe('routing and envelope', () => {
  let server: TestPostgres;
  let ordersReceiver: Receiver;
  let auditReceiver: Receiver;
  let walhook: WalhookProcess;

  /** Runs `statements` in one transaction and reports its xid and the WAL around it. */
  async function commit(...statements: string[]): Promise<Committed> {
    const client = new pg.Client({ connectionString: server.connectionString });
    await client.connect();
    try {
      const walBefore = await currentWalLsn(server);
      const startedAt = Date.now();
      await client.query('BEGIN');
      for (const statement of statements) {
        await client.query(statement);
      }
      const { rows } = await client.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
      await client.query('COMMIT');
      const walAfter = await currentWalLsn(server);
      return { xid: Number(rows[0]?.xid), walBefore, walAfter, startedAt };
    } finally {
      await client.end();
    }
  }

  /** Checks the fields that every envelope carries, against the transaction it came from. */
  function assertCommonFields(request: ReceivedRequest, committed: Committed, trigger: string): Envelope {
    const envelope = envelopeOf(request);

    assert.match(envelope.id, UUID_PATTERN);
    assert.match(envelope.created_at, ISO_MICROSECONDS_PATTERN);
    const createdAt = Date.parse(envelope.created_at);
    assert.ok(createdAt >= committed.startedAt - 1_000, `created_at ${envelope.created_at} is before the transaction`);
    assert.ok(createdAt <= request.receivedAt, `created_at ${envelope.created_at} is after the delivery`);
    assert.deepEqual(envelope.trigger, { name: trigger });
    assert.deepEqual(envelope.table, { schema: 'public', name: 'orders' });
    assert.equal(envelope.event.session_variables, null);
    assert.deepEqual(envelope.delivery_info, { max_retries: null, current_retry: 0 });
    assert.match(envelope.lsn, LSN_PATTERN);
    assert.ok(compareLsn(envelope.lsn, committed.walBefore) >= 0, `lsn ${envelope.lsn} is before the transaction`);
    assert.ok(compareLsn(envelope.lsn, committed.walAfter) < 0, `lsn ${envelope.lsn} is after the transaction`);
    assert.equal(typeof envelope.xid, 'number');
    assert.equal(envelope.xid, committed.xid);

    assert.equal(request.method, 'POST');
    assert.equal(request.headers['content-type'], 'application/json');
    assert.equal(request.headers['webhook-id'], envelope.id);
    const timestamp = String(request.headers['webhook-timestamp']);
    assert.match(timestamp, /^\d+$/);
    const timestampMs = Number(timestamp) * 1000;
    assert.ok(timestampMs >= committed.startedAt - 1_000, `webhook-timestamp ${timestamp} is before the transaction`);
    assert.ok(timestampMs <= request.receivedAt, `webhook-timestamp ${timestamp} is after the delivery`);
    return envelope;
  }

  before(async () => {
    server = await startPostgres();
    await server.query('CREATE TABLE orders (id int PRIMARY KEY, note text, amount numeric(10, 2))');
    // FULL makes updates and deletes carry the whole old row.
    await server.query('ALTER TABLE orders REPLICA IDENTITY FULL');
    await server.query('CREATE TABLE customers (id int PRIMARY KEY, name text)');
    await server.query('CREATE TABLE unwatched (id int PRIMARY KEY, note text)');

    ordersReceiver = await startReceiver({ path: '/hooks/orders' });
    auditReceiver = await startReceiver({ path: '/hooks/audit' });
    walhook = await startWalhook({
      config: {
        source: { connection: '${DATABASE_URL}' },
        webhooks: [
          {
            name: 'orders-api',
            url: ordersReceiver.url,
            headers: { Authorization: 'Bearer ${ORDERS_TOKEN}', 'X-Source': 'walhook' },
          },
          { name: 'audit-log', url: auditReceiver.url },
        ],
        triggers: [
          { name: 'order_events', table: 'public.orders', webhook: 'orders-api' },
          { name: 'order_audit', table: 'orders', operations: ['insert'], webhook: 'audit-log' },
          { name: 'new_customers', table: 'public.customers', operations: ['insert'], webhook: 'orders-api' },
        ],
      },
      env: { DATABASE_URL: server.connectionString, ORDERS_TOKEN },
    });
    await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  });

  after(async () => {
    await walhook?.close();
    await ordersReceiver?.close();
    await auditReceiver?.close();
    await server?.close();
  });

  test('insert arrives with the full envelope', async () => {
    const committed = await commit("INSERT INTO orders VALUES (1, 'first', 12.50)");

    const request = await ordersReceiver.waitForRequest(isFor('order_events', 'INSERT'), { timeoutMs: 10_000 });

    const envelope = assertCommonFields(request, committed, 'order_events');
    assert.equal(envelope.event.op, 'INSERT');
    assert.deepEqual(envelope.event.data, { old: null, new: { id: 1, note: 'first', amount: 12.5 } });
    assert.match(request.body, /"amount":12\.50[,}]/, 'numeric lost its digits');
    assert.equal(request.url, '/hooks/orders');
    assert.equal(request.headers.authorization, `Bearer ${ORDERS_TOKEN}`);
    assert.equal(request.headers['x-source'], 'walhook');
  });

  test('update carries old and new rows', async () => {
    await commit("INSERT INTO orders VALUES (2, 'before', 1.00)");
    const committed = await commit("UPDATE orders SET note = 'after', amount = 2.00 WHERE id = 2");

    const request = await ordersReceiver.waitForRequest(isFor('order_events', 'UPDATE'), { timeoutMs: 10_000 });

    const envelope = assertCommonFields(request, committed, 'order_events');
    assert.deepEqual(envelope.event.data, {
      old: { id: 2, note: 'before', amount: 1 },
      new: { id: 2, note: 'after', amount: 2 },
    });
    assert.equal(envelope.event.old_row, 'full');
    assert.equal(request.headers.authorization, `Bearer ${ORDERS_TOKEN}`);
  });

  test('delete carries only the old row', async () => {
    const committed = await commit('DELETE FROM orders WHERE id = 2');

    const request = await ordersReceiver.waitForRequest(isFor('order_events', 'DELETE'), { timeoutMs: 10_000 });

    const envelope = assertCommonFields(request, committed, 'order_events');
    assert.deepEqual(envelope.event.data, { old: { id: 2, note: 'after', amount: 2 }, new: null });
    assert.equal(envelope.event.old_row, 'full');
  });

  test('truncate arrives with both rows null', async () => {
    const committed = await commit('TRUNCATE orders');

    const request = await ordersReceiver.waitForRequest(isFor('order_events', 'TRUNCATE'), { timeoutMs: 10_000 });

    const envelope = assertCommonFields(request, committed, 'order_events');
    assert.deepEqual(envelope.event.data, { old: null, new: null });
    assert.deepEqual(envelope.event.truncate, { cascade: false, restart_identity: false });
  });

  test('one insert reaches two webhooks', async () => {
    const committed = await commit("INSERT INTO orders VALUES (10, 'shared', 3.00)");
    const isShared = (request: ReceivedRequest): boolean =>
      (request.json as Envelope | undefined)?.event?.data?.new?.id === 10;

    const toOrders = await ordersReceiver.waitForRequest(isShared, { timeoutMs: 10_000 });
    const toAudit = await auditReceiver.waitForRequest(isShared, { timeoutMs: 10_000 });

    const ordersEnvelope = assertCommonFields(toOrders, committed, 'order_events');
    const auditEnvelope = assertCommonFields(toAudit, committed, 'order_audit');
    assert.notEqual(ordersEnvelope.id, auditEnvelope.id);
    assert.equal(ordersEnvelope.lsn, auditEnvelope.lsn);
    assert.deepEqual(auditEnvelope.event.data, ordersEnvelope.event.data);
    assert.equal(toOrders.headers.authorization, `Bearer ${ORDERS_TOKEN}`);
    assert.equal(toAudit.headers.authorization, undefined, 'audit-log has no configured Authorization');
    assert.equal(toAudit.url, '/hooks/audit');
  });

  test('unconfigured tables and operations skipped', async () => {
    const ordersFrom = ordersReceiver.requests.length;
    const auditFrom = auditReceiver.requests.length;

    await commit("INSERT INTO customers VALUES (1, 'Ada')");
    await commit("UPDATE customers SET name = 'Ada L.' WHERE id = 1");
    await commit('DELETE FROM customers WHERE id = 1');
    await commit('TRUNCATE customers');
    await commit("INSERT INTO unwatched VALUES (1, 'x')", "UPDATE unwatched SET note = 'y'", 'DELETE FROM unwatched');
    await commit('TRUNCATE unwatched');
    // The audit trigger takes inserts only.
    await commit("INSERT INTO orders VALUES (20, 'audited', 1.00)");
    await commit("UPDATE orders SET note = 'not audited' WHERE id = 20");
    // Each webhook delivers in commit order, so once this last insert has arrived at
    // both receivers, every earlier event for them has arrived too.
    await commit("INSERT INTO orders VALUES (99, 'sentinel', 0.00)");
    const isSentinel = (request: ReceivedRequest): boolean =>
      (request.json as Envelope | undefined)?.event?.data?.new?.id === 99;
    await ordersReceiver.waitForRequest(isSentinel, { timeoutMs: 10_000 });
    await auditReceiver.waitForRequest(isSentinel, { timeoutMs: 10_000 });

    const toOrders = ordersReceiver.requests.slice(ordersFrom).map(envelopeOf);
    const toAudit = auditReceiver.requests.slice(auditFrom).map(envelopeOf);
    const summarize = (envelope: Envelope): string =>
      `${envelope.trigger.name} ${envelope.table.name} ${envelope.event.op}`;
    assert.deepEqual(toOrders.map(summarize), [
      'new_customers customers INSERT',
      'order_events orders INSERT',
      'order_events orders UPDATE',
      'order_events orders INSERT',
    ]);
    assert.deepEqual(toAudit.map(summarize), ['order_audit orders INSERT', 'order_audit orders INSERT']);
    assert.deepEqual(toOrders[0]?.table, { schema: 'public', name: 'customers' });
    assert.deepEqual(toOrders[0]?.event.data, { old: null, new: { id: 1, name: 'Ada' } });
  });
});
