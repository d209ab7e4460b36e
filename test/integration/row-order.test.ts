import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers();

test('row order holds under REPLICA IDENTITY FULL', async (t) => {
  await servers.postgres.query('CREATE TABLE full_rows (id int PRIMARY KEY, v int); ALTER TABLE full_rows REPLICA IDENTITY FULL');
  const accepted: string[] = [];
  // The first request fails, so later versions of the row would overtake it if they
  // were ordered under different keys.
  servers.receiver.respond((request, index) => {
    if (index === 0) return { status: 500 };
    const body = request.json as { event: { op: string; data: { new: { v: number } | null } } };
    accepted.push(`${body.event.op}:${body.event.data.new?.v ?? '-'}`);
    return {};
  });
  const walhook = await startWalhook({
    config: {
      source: { connection: servers.postgres.connectionString },
      webhooks: [{ name: 'rows', url: servers.receiver.url, retry: { initial_delay: '200ms', max_delay: '400ms' } }],
      triggers: [{ name: 'full_rows', table: 'full_rows', webhook: 'rows' }],
    },
    t,
  });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  await servers.postgres.query('INSERT INTO full_rows VALUES (1, 0)');
  await servers.postgres.query('UPDATE full_rows SET v = 1 WHERE id = 1');
  await servers.postgres.query('UPDATE full_rows SET v = 2 WHERE id = 1');
  await servers.postgres.query('DELETE FROM full_rows WHERE id = 1');
  await waitFor(() => accepted.length === 4, { timeoutMs: 15_000, message: 'not all four events were accepted' });
  assert.deepEqual(accepted, ['INSERT:0', 'UPDATE:1', 'UPDATE:2', 'DELETE:-']);
  assert.equal((await walhook.stop({ timeoutMs: 15_000 })).code, 0);
});
