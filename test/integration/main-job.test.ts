import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Receiver, type ReceivedRequest, startReceiver } from '../helpers/receiver.js';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook } from '../helpers/walhook-process.js';

interface Delivered {
  id: string;
  table: { schema: string; name: string };
  event: { op: string; data: { old: Record<string, unknown> | null; new: Record<string, unknown> | null } };
}

const servers = setUpSuiteServers({
  setup: async ({ postgres }) => {
    await postgres.query(`
      CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL);
      CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
      CREATE TABLE audit (id bigint PRIMARY KEY, entry text);
    `);
  },
});

function configFor(target: Receiver): object {
  return {
    source: { connection: servers.postgres.connectionString },
    webhooks: [
      { name: 'main', url: target.url, timeout: '5s', retry: { initial_delay: '50ms', max_delay: '500ms' } },
    ],
    triggers: [
      { name: 'orders_all', table: 'public.orders', webhook: 'main' },
      { name: 'customers_new', table: 'customers', operations: ['insert'], webhook: 'main' },
    ],
  };
}

function rowId(event: Delivered): unknown {
  return (event.event.data.new ?? event.event.data.old)?.id;
}

function delivered(requests: readonly ReceivedRequest[]): Delivered[] {
  return requests.filter((r) => r.json !== undefined).map((r) => r.json as Delivered);
}

test('configured changes arrive exactly once and the slot catches up', async (t) => {
  const walhook = await startWalhook({ config: configFor(servers.receiver), t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  for (let id = 1; id <= 300; id++) {
    await servers.postgres.query('INSERT INTO orders VALUES ($1, $2)', [id, `order ${id}`]);
  }
  await servers.postgres.query("INSERT INTO orders SELECT g, 'bulk ' || g FROM generate_series(301, 400) g");
  for (let id = 1; id <= 100; id++) {
    await servers.postgres.query("UPDATE orders SET note = note || ' (paid)' WHERE id = $1", [id]);
  }
  await servers.postgres.query('DELETE FROM orders WHERE id BETWEEN 351 AND 400');
  await servers.postgres.query("INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 20) g");
  await servers.postgres.query("UPDATE customers SET name = name || ' renamed'");
  await servers.postgres.query("INSERT INTO audit SELECT g, 'entry' FROM generate_series(1, 30) g");
  const endOfWrites = await currentWalLsn(servers.postgres);

  const expectedTotal = 400 + 100 + 50 + 20;
  await servers.receiver.waitForRequests(expectedTotal, { timeoutMs: 60_000 });
  await waitFor(
    async () => {
      const slot = await slotState(servers.postgres, 'walhook');
      return slot !== undefined && slot.confirmedFlushLsn !== null && compareLsn(slot.confirmedFlushLsn, endOfWrites) >= 0;
    },
    { timeoutMs: 20_000, message: 'slot confirmed position did not reach the end of the writes' },
  );

  const events = delivered(servers.receiver.requests);
  assert.equal(events.length, expectedTotal, 'one request per configured change');
  assert.equal(new Set(events.map((e) => e.id)).size, expectedTotal, 'no duplicate event ids');

  const count = (table: string, op: string): number =>
    events.filter((e) => e.table.name === table && e.event.op === op).length;
  assert.equal(count('orders', 'INSERT'), 400);
  assert.equal(count('orders', 'UPDATE'), 100);
  assert.equal(count('orders', 'DELETE'), 50);
  assert.equal(count('customers', 'INSERT'), 20);
  assert.equal(count('customers', 'UPDATE'), 0, 'customers is configured for inserts only');
  assert.equal(events.filter((e) => e.table.name === 'audit').length, 0, 'audit is not configured');

  // Events of one webhook arrive in commit order: per row, insert before update before delete.
  const seen = new Map<unknown, string[]>();
  for (const event of events.filter((e) => e.table.name === 'orders')) {
    const ops = seen.get(rowId(event)) ?? [];
    ops.push(event.event.op);
    seen.set(rowId(event), ops);
  }
  assert.deepEqual(seen.get(1), ['INSERT', 'UPDATE']);
  assert.deepEqual(seen.get(375), ['INSERT', 'DELETE']);
  assert.equal(seen.size, 400);

  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});

test('kill -9 during a receiver outage loses nothing', async (t) => {
  const outage = await startReceiver();
  t.after(() => outage.close());
  outage.respond(() => ({ status: 503 }));
  const first = await startWalhook({ config: configFor(outage), t });
  await first.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const before = await slotState(servers.postgres, 'walhook');
  assert.ok(before !== undefined);

  for (let batch = 0; batch < 5; batch++) {
    const start = 1000 + batch * 10;
    await servers.postgres.query(`INSERT INTO orders SELECT g, 'outage' FROM generate_series(${start}, ${start + 9}) g`);
  }
  const afterWrites = await currentWalLsn(servers.postgres);
  await outage.waitForRequests(4, { timeoutMs: 20_000 });
  await first.waitForLog((entry) => entry.msg === 'delivery attempt failed, will retry', { timeoutMs: 10_000 });

  const during = await slotState(servers.postgres, 'walhook');
  assert.ok(during?.confirmedFlushLsn, 'slot has a confirmed position during the outage');
  assert.ok(before.confirmedFlushLsn, 'slot had a confirmed position before the outage');
  assert.equal(
    compareLsn(during.confirmedFlushLsn, before.confirmedFlushLsn),
    0,
    'slot must not move while the first event is undelivered',
  );
  first.kill('SIGKILL');
  await first.waitForExit({ timeoutMs: 10_000 });

  // The receiver returned 503 to every request of the first process, so count only later ones.
  const firstAfterRestart = outage.requests.length;
  outage.respond(() => ({ status: 200 }));
  const second = await startWalhook({ config: configFor(outage), t });
  const outageRowIds = (): Set<unknown> =>
    new Set(
      delivered(outage.requests.filter((r) => r.index >= firstAfterRestart))
        .filter((e) => e.event.data.new?.note === 'outage')
        .map(rowId),
    );
  await waitFor(() => outageRowIds().size === 50, {
    timeoutMs: 30_000,
    message: 'not all 50 rows written during the outage were delivered',
  });
  await waitFor(
    async () => {
      const slot = await slotState(servers.postgres, 'walhook');
      return slot !== undefined && slot.confirmedFlushLsn !== null && compareLsn(slot.confirmedFlushLsn, afterWrites) >= 0;
    },
    { timeoutMs: 20_000, message: 'slot did not pass the outage writes after delivery' },
  );
  const exit = await second.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
