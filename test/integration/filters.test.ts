import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers({
  setup: async ({ postgres }) => {
    await postgres.query(`
      CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL, total numeric NOT NULL, note text);
      ALTER TABLE orders REPLICA IDENTITY FULL;
    `);
  },
});

test('filters and shaping apply end to end', async (t) => {
  const base = servers.receiver.url.replace(/\/hooks$/, '');
  const config = {
    source: { connection: servers.postgres.connectionString },
    webhooks: [
      { name: 'paid', url: `${base}/paid/{{ event.data.new.id }}`, retry: { initial_delay: '50ms', max_delay: '200ms' } },
      { name: 'all', url: `${base}/all`, retry: { initial_delay: '50ms', max_delay: '200ms' } },
    ],
    triggers: [
      {
        name: 'large_paid_orders',
        table: 'orders',
        operations: ['update'],
        webhook: 'paid',
        columns: ['status'],
        where: { _and: [{ status: { _eq: 'paid' } }, { total: { _gt: 100 } }] },
        transform: { body: '{ "order": event.data.new.id, "status": event.data.new.status }' },
      },
      {
        name: 'slim_inserts',
        table: 'orders',
        operations: ['insert'],
        webhook: 'all',
        payload: { columns: ['id', 'status'] },
      },
    ],
  };
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  await servers.postgres.query("INSERT INTO orders VALUES (9007199254740993, 'new', 500, 'big order'), (2, 'new', 50, 'small')");
  await servers.postgres.query("UPDATE orders SET note = 'touched'");
  await servers.postgres.query("UPDATE orders SET status = 'paid'");
  await servers.postgres.query("UPDATE orders SET status = 'paid', note = 'again'");
  await servers.postgres.query("INSERT INTO orders VALUES (3, 'marker', 0, NULL)");
  const endOfWrites = await currentWalLsn(servers.postgres);

  // Once the slot passes the last write, every event before it was delivered or filtered.
  await waitFor(
    async () => {
      const slot = await slotState(servers.postgres, 'walhook');
      return slot?.confirmedFlushLsn != null && compareLsn(slot.confirmedFlushLsn, endOfWrites) >= 0;
    },
    { timeoutMs: 20_000, message: 'slot did not pass the last write' },
  );

  const inserts = servers.receiver.requests.filter((r) => r.url === '/all');
  assert.equal(inserts.length, 3);
  for (const request of inserts) {
    const row = (request.json as { event: { data: { new: Record<string, unknown> } } }).event.data.new;
    assert.deepEqual(Object.keys(row), ['id', 'status'], 'payload.columns keeps only id and status');
  }
  assert.match(inserts[0]!.body, /"id":9007199254740993/);

  const paid = servers.receiver.requests.filter((r) => r.url.startsWith('/paid/'));
  assert.equal(paid.length, 1, 'only the update that changed status to paid with total > 100');
  assert.equal(paid[0]!.url, '/paid/9007199254740993', 'URL placeholder keeps every digit');
  assert.deepEqual(paid[0]!.json, { order: 9007199254740992, status: 'paid' });

  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
