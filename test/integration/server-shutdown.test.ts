import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { startWalhook } from '../helpers/walhook-process.js';

let postgres: TestPostgres;
let receiver: Receiver;

before(async () => {
  postgres = await startPostgres();
  receiver = await startReceiver();
  await postgres.query('CREATE TABLE pending_rows (id int PRIMARY KEY)');
});

after(async () => {
  await receiver?.close();
  await postgres?.close();
});

test('fast shutdown completes while a delivery is pending', async (t) => {
  let hang = true;
  receiver.respond(() => (hang ? { delayMs: 120_000 } : {}));
  const config = {
    source: { connection: postgres.connectionString },
    webhooks: [{ name: 'hanging', url: receiver.url, timeout: '4s', retry: { initial_delay: '100ms', max_delay: '500ms' } }],
    triggers: [{ name: 'pending_rows', table: 'pending_rows', webhook: 'hanging' }],
    server: { host: '127.0.0.1', port: 0 },
  };
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  await postgres.query('INSERT INTO pending_rows VALUES (1)');
  await receiver.waitForRequests(1, { timeoutMs: 10_000 });

  const started = Date.now();
  await postgres.stopServer('fast');
  const stopMs = Date.now() - started;
  assert.ok(stopMs < 20_000, `pg_ctl stop -m fast took ${stopMs} ms`);

  // The shutdown ends the leader lock session too, so walhook fences itself (or drops
  // the connection when only the replication session is affected).
  await walhook.waitForLog(
    (entry) => entry.msg === 'dropping the replication connection' || entry.msg.startsWith('leadership lost'),
    { timeoutMs: 1000 },
  );
  hang = false;
  await postgres.startServer();
  // The attempt times out, the retry succeeds, and walhook streams again without a restart.
  await receiver.waitForRequests(2, { timeoutMs: 30_000 });
  await walhook.waitForLog(
    (entry) => entry.msg === 'streaming from the replication slot' && walhook.logs.filter((e) => e.msg === entry.msg).length >= 2,
    { timeoutMs: 30_000 },
  );
  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
