import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { waitFor } from '../helpers/wait.js';
import { type WalhookProcess, startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers({
  setup: async ({ postgres }) => {
    await postgres.query('CREATE TABLE ha_rows (id int PRIMARY KEY)');
  },
});

const config = (): object => ({
  source: { connection: servers.postgres.connectionString },
  webhooks: [{ name: 'rows', url: servers.receiver.url, retry: { initial_delay: '50ms', max_delay: '200ms' } }],
  triggers: [{ name: 'ha_rows', table: 'ha_rows', webhook: 'rows' }],
  leader: { poll_interval: '1s' },
});

async function portOf(walhook: WalhookProcess): Promise<number> {
  const entry = await walhook.waitForLog('http server listening', { timeoutMs: 20_000 });
  return Number(entry.port);
}

async function readiness(port: number): Promise<{ status: number; body: { status: string; role: string } }> {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: response.status, body: (await response.json()) as { status: string; role: string } };
}

function rowIds(): Set<number> {
  return new Set(
    servers.receiver.requests.map((r) => (r.json as { event: { data: { new: { id: number } } } }).event.data.new.id),
  );
}

test('one replica streams and a standby takes over after kill -9', async (t) => {
  const settings = config();
  const first = await startWalhook({ config: settings, t });
  await first.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const second = await startWalhook({ config: settings, t });
  const firstPort = await portOf(first);
  const secondPort = await portOf(second);

  await waitFor(async () => (await readiness(secondPort)).body.status === 'standby', {
    timeoutMs: 15_000,
    message: 'the second replica did not become a ready standby',
  });
  const leader = await readiness(firstPort);
  assert.equal(leader.status, 200);
  assert.equal(leader.body.status, 'streaming');
  assert.equal(leader.body.role, 'leader');
  const standby = await readiness(secondPort);
  assert.equal(standby.status, 200);
  assert.equal(standby.body.role, 'standby');

  await servers.postgres.query('INSERT INTO ha_rows VALUES (1)');
  await waitFor(() => rowIds().has(1), { timeoutMs: 15_000, message: 'row 1 was not delivered' });
  const metrics = await (await fetch(`http://127.0.0.1:${firstPort}/metrics`)).text();
  assert.match(metrics, /walhook_events_delivered_total\{[^}]*trigger="ha_rows"[^}]*\} 1/);
  assert.match(metrics, /walhook_leader 1/);

  first.kill('SIGKILL');
  await first.waitForExit({ timeoutMs: 10_000 });
  const killedAt = Date.now();
  await servers.postgres.query('INSERT INTO ha_rows VALUES (2)');
  await second.waitForLog('streaming from the replication slot', { timeoutMs: 15_000 });
  const takeoverMs = Date.now() - killedAt;
  assert.ok(takeoverMs < 10_000, `standby took ${takeoverMs} ms to stream`);
  await waitFor(() => rowIds().has(2), { timeoutMs: 15_000, message: 'row 2 was not delivered after takeover' });

  const created = [...first.logs, ...second.logs].filter((entry) => entry.msg === 'replication slot created');
  assert.equal(created.length, 1, 'the slot was created once and never recreated');
  const slots = await servers.postgres.query<{ count: string }>("SELECT count(*)::text AS count FROM pg_replication_slots");
  assert.equal(slots[0]?.count, '1');

  const exit = await second.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
