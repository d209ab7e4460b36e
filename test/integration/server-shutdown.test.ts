import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers({
  setup: async ({ postgres }) => {
    await postgres.query('CREATE TABLE pending_rows (id int PRIMARY KEY)');
  },
});

test('fast shutdown completes while a delivery is pending', async (t) => {
  let hang = true;
  servers.receiver.respond(() => (hang ? { delayMs: 120_000 } : {}));
  const config = {
    source: { connection: servers.postgres.connectionString },
    webhooks: [{ name: 'hanging', url: servers.receiver.url, timeout: '4s', retry: { initial_delay: '100ms', max_delay: '500ms' } }],
    triggers: [{ name: 'pending_rows', table: 'pending_rows', webhook: 'hanging' }],
    server: { host: '127.0.0.1', port: 0 },
  };
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  await servers.postgres.query('INSERT INTO pending_rows VALUES (1)');
  await servers.receiver.waitForRequests(1, { timeoutMs: 10_000 });

  const started = Date.now();
  await servers.postgres.stopServer('fast');
  const stopMs = Date.now() - started;
  assert.ok(stopMs < 20_000, `pg_ctl stop -m fast took ${stopMs} ms`);

  // The shutdown ends the leader lock session too, so walhook fences itself (or drops
  // the connection when only the replication session is affected).
  await walhook.waitForLog(
    (entry) => entry.msg === 'dropping the replication connection' || entry.msg.startsWith('leadership lost'),
    { timeoutMs: 1000 },
  );
  hang = false;
  await servers.postgres.startServer();
  // The attempt times out, the retry succeeds, and walhook streams again without a restart.
  await servers.receiver.waitForRequests(2, { timeoutMs: 30_000 });
  await walhook.waitForLog(
    (entry) => entry.msg === 'streaming from the replication slot' && walhook.logs.filter((e) => e.msg === entry.msg).length >= 2,
    { timeoutMs: 30_000 },
  );
  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
