import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers();

interface Event {
  table: { schema: string; name: string };
  event: {
    op: string;
    data: { old: Record<string, unknown> | null; new: Record<string, unknown> | null };
    old_row?: string;
    unchanged_columns?: string[];
  };
}

function configFor(slot: string, triggers: object[], source: object = {}): object {
  return {
    source: { connection: servers.postgres.connectionString, slot, publication: slot, ...source },
    webhooks: [{ name: 'rows', url: servers.receiver.url, retry: { initial_delay: '50ms', max_delay: '200ms' } }],
    triggers,
  };
}

async function eventsFrom(start: number, count: number): Promise<Event[]> {
  await servers.receiver.waitForRequests(start + count, { timeoutMs: 20_000 });
  return servers.receiver.requests.slice(start, start + count).map((r) => r.json as Event);
}

test('partitioned table delivers all partitions under its name', async (t) => {
  await servers.postgres.query(`
    CREATE TABLE regional (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
    CREATE TABLE regional_eu PARTITION OF regional FOR VALUES IN ('eu');
    CREATE TABLE regional_us PARTITION OF regional FOR VALUES IN ('us');
  `);
  const walhook = await startWalhook({
    config: configFor('regional', [{ name: 'regional', table: 'regional', webhook: 'rows' }]),
    t,
  });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const start = servers.receiver.requests.length;

  await servers.postgres.query("INSERT INTO regional VALUES (1, 'eu'), (2, 'us')");
  await servers.postgres.query("CREATE TABLE regional_asia PARTITION OF regional FOR VALUES IN ('asia')");
  await servers.postgres.query("INSERT INTO regional VALUES (3, 'asia')");

  const events = await eventsFrom(start, 3);
  assert.deepEqual(
    events.map((e) => [e.table.name, e.event.data.new?.id]),
    [
      ['regional', 1],
      ['regional', 2],
      ['regional', 3],
    ],
  );
  assert.equal((await walhook.stop({ timeoutMs: 15_000 })).code, 0);
});

test('replica_identity_full sets FULL and sends whole old rows', async (t) => {
  await servers.postgres.query("CREATE TABLE accounts (id int PRIMARY KEY, plan text); INSERT INTO accounts VALUES (1, 'free')");
  const walhook = await startWalhook({
    config: configFor('accounts', [{ name: 'accounts', table: 'accounts', webhook: 'rows' }], {
      replica_identity_full: true,
    }),
    t,
  });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const changed = walhook.logs.find((entry) => entry.msg.startsWith('replica identity set to FULL'));
  assert.equal(changed?.table, 'public.accounts');
  assert.equal(changed?.previous, 'DEFAULT');
  const identity = await servers.postgres.query<{ relreplident: string }>(
    "SELECT relreplident FROM pg_class WHERE relname = 'accounts'",
  );
  assert.equal(identity[0]?.relreplident, 'f');
  const start = servers.receiver.requests.length;

  await servers.postgres.query("UPDATE accounts SET plan = 'pro' WHERE id = 1");
  const [update] = await eventsFrom(start, 1);
  assert.equal(update?.event.old_row, 'full');
  assert.deepEqual(update?.event.data.old, { id: 1, plan: 'free' });
  assert.equal((await walhook.stop({ timeoutMs: 15_000 })).code, 0);
});

test('unchanged_toast reselect fills the unchanged value', async (t) => {
  await servers.postgres.query(`
    CREATE TABLE documents (id int PRIMARY KEY, status text, doc text);
    ALTER TABLE documents ALTER doc SET STORAGE EXTERNAL;
    INSERT INTO documents VALUES (1, 'draft', repeat('0123456789abcdef', 1000));
    INSERT INTO documents VALUES (2, 'draft', repeat('fedcba9876543210', 1000));
  `);
  const walhook = await startWalhook({
    config: configFor('documents', [
      { name: 'reselected', table: 'documents', operations: ['update'], webhook: 'rows', unchanged_toast: 'reselect' },
    ]),
    t,
  });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const start = servers.receiver.requests.length;

  await servers.postgres.query("UPDATE documents SET status = 'paid' WHERE id = 1");
  const [update] = await eventsFrom(start, 1);
  assert.equal(update?.event.data.new?.doc, '0123456789abcdef'.repeat(1000));
  assert.equal(update?.event.data.new?.status, 'paid');
  assert.equal(update?.event.unchanged_columns, undefined);
  assert.equal((await walhook.stop({ timeoutMs: 15_000 })).code, 0);
});
