import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook } from '../helpers/walhook-process.js';

// A short wal_sender_timeout: the walsender ends a connection that sends no status
// update for this long, which slow deliveries must not cause.
const servers = setUpSuiteServers({ postgres: { settings: { wal_sender_timeout: '2s' } } });

function configWith(extra: object): object {
  return {
    source: { connection: servers.postgres.connectionString },
    webhooks: [
      {
        name: 'slow',
        url: servers.receiver.url,
        timeout: '30s',
        retry: { initial_delay: '50ms', max_delay: '500ms' },
        ...extra,
      },
    ],
    triggers: [{ name: 'big', table: 'big', webhook: 'slow' }],
    log: { level: 'debug' },
    max_inflight_events: 500,
  };
}

test('large transaction streams through a bounded budget', async (t) => {
  const rows = 20_000;
  await servers.postgres.query(`
    CREATE TABLE big (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0, pad text);
    INSERT INTO big SELECT g, 0, repeat('x', 100) FROM generate_series(1, ${rows}) g;
  `);
  servers.receiver.respond(() => ({ delayMs: 1 }));
  const walhook = await startWalhook({ config: configWith({ concurrency: 16 }), t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const before = servers.receiver.requests.length;

  await servers.postgres.query('UPDATE big SET counter = counter + 1');
  const afterUpdate = await currentWalLsn(servers.postgres);

  await walhook.waitForLog('in-flight budget full, pausing replication reads', { timeoutMs: 30_000 });
  const during = await slotState(servers.postgres, 'walhook');
  assert.ok(during?.confirmedFlushLsn);
  assert.ok(compareLsn(during.confirmedFlushLsn, afterUpdate) < 0, 'slot waits for the whole transaction');

  await servers.receiver.waitForRequests(before + rows, { timeoutMs: 180_000 });
  const ids = new Set<number>();
  for (const request of servers.receiver.requests.slice(before)) {
    const row = (request.json as { event: { data: { new: { id: number; counter: number } } } }).event.data.new;
    assert.equal(row.counter, 1);
    ids.add(row.id);
  }
  assert.equal(ids.size, rows, 'every updated row arrived once');

  await waitFor(
    async () => {
      const slot = await slotState(servers.postgres, 'walhook');
      return slot?.confirmedFlushLsn != null && compareLsn(slot.confirmedFlushLsn, afterUpdate) >= 0;
    },
    { timeoutMs: 20_000, message: 'slot did not pass the update after its last event' },
  );
  const log = await servers.postgres.logTail(400);
  assert.doesNotMatch(log, /replication timeout/, 'the walsender never timed out');
  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});

test('deliveries slower than wal_sender_timeout keep the connection', async (t) => {
  await servers.postgres.query('CREATE TABLE slow_rows (id int PRIMARY KEY)');
  servers.receiver.respond(() => ({ delayMs: 2500 }));
  const config = {
    source: { connection: servers.postgres.connectionString, slot: 'slow_rows', publication: 'slow_rows' },
    webhooks: [{ name: 'slow', url: servers.receiver.url, timeout: '30s', ordering: 'strict' }],
    triggers: [{ name: 'slow_rows', table: 'slow_rows', webhook: 'slow' }],
  };
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const before = servers.receiver.requests.length;

  await servers.postgres.query('INSERT INTO slow_rows SELECT g FROM generate_series(1, 4) g');
  const replyTimes = new Set<string>();
  await waitFor(
    async () => {
      const rows = await servers.postgres.query<{ reply_time: string | null }>(
        "SELECT reply_time::text FROM pg_stat_replication WHERE application_name = 'walhook'",
      );
      for (const row of rows) if (row.reply_time !== null) replyTimes.add(row.reply_time);
      return servers.receiver.requests.length >= before + 4 && servers.receiver.inFlight === 0;
    },
    { timeoutMs: 30_000, intervalMs: 500, message: 'the four slow deliveries did not finish' },
  );

  const ids = servers.receiver.requests.slice(before).map((r) => (r.json as { event: { data: { new: { id: number } } } }).event.data.new.id);
  assert.deepEqual(ids, [1, 2, 3, 4], 'strict ordering delivers in commit order');
  assert.ok(replyTimes.size >= 3, `reply_time moved ${replyTimes.size} times during 10 s of deliveries`);
  const log = await servers.postgres.logTail(400);
  assert.doesNotMatch(log, /replication timeout/);
  assert.equal(walhook.logs.filter((entry) => entry.msg === 'replication connection failed').length, 0);
  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
