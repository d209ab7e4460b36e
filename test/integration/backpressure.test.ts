import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook } from '../helpers/walhook-process.js';

let postgres: TestPostgres;
let receiver: Receiver;

before(async () => {
  // A short wal_sender_timeout: the walsender ends a connection that sends no status
  // update for this long, which slow deliveries must not cause.
  postgres = await startPostgres({ settings: { wal_sender_timeout: '2s' } });
  receiver = await startReceiver();
});

after(async () => {
  await receiver?.close();
  await postgres?.close();
});

function configWith(extra: object): object {
  return {
    source: { connection: postgres.connectionString },
    webhooks: [
      {
        name: 'slow',
        url: receiver.url,
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
  await postgres.query(`
    CREATE TABLE big (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0, pad text);
    INSERT INTO big SELECT g, 0, repeat('x', 100) FROM generate_series(1, ${rows}) g;
  `);
  receiver.respond(() => ({ delayMs: 1 }));
  const walhook = await startWalhook({ config: configWith({ concurrency: 16 }), t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const before = receiver.requests.length;

  await postgres.query('UPDATE big SET counter = counter + 1');
  const afterUpdate = await currentWalLsn(postgres);

  await walhook.waitForLog('in-flight budget full, pausing replication reads', { timeoutMs: 30_000 });
  const during = await slotState(postgres, 'walhook');
  assert.ok(during?.confirmedFlushLsn);
  assert.ok(compareLsn(during.confirmedFlushLsn, afterUpdate) < 0, 'slot waits for the whole transaction');

  await receiver.waitForRequests(before + rows, { timeoutMs: 180_000 });
  const ids = new Set<number>();
  for (const request of receiver.requests.slice(before)) {
    const row = (request.json as { event: { data: { new: { id: number; counter: number } } } }).event.data.new;
    assert.equal(row.counter, 1);
    ids.add(row.id);
  }
  assert.equal(ids.size, rows, 'every updated row arrived once');

  await waitFor(
    async () => {
      const slot = await slotState(postgres, 'walhook');
      return slot?.confirmedFlushLsn != null && compareLsn(slot.confirmedFlushLsn, afterUpdate) >= 0;
    },
    { timeoutMs: 20_000, message: 'slot did not pass the update after its last event' },
  );
  const log = await postgres.logTail(400);
  assert.doesNotMatch(log, /replication timeout/, 'the walsender never timed out');
  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});

test('deliveries slower than wal_sender_timeout keep the connection', async (t) => {
  await postgres.query('CREATE TABLE slow_rows (id int PRIMARY KEY)');
  receiver.respond(() => ({ delayMs: 2500 }));
  const config = {
    source: { connection: postgres.connectionString, slot: 'slow_rows', publication: 'slow_rows' },
    webhooks: [{ name: 'slow', url: receiver.url, timeout: '30s', ordering: 'strict' }],
    triggers: [{ name: 'slow_rows', table: 'slow_rows', webhook: 'slow' }],
  };
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  const before = receiver.requests.length;

  await postgres.query('INSERT INTO slow_rows SELECT g FROM generate_series(1, 4) g');
  const replyTimes = new Set<string>();
  await waitFor(
    async () => {
      const rows = await postgres.query<{ reply_time: string | null }>(
        "SELECT reply_time::text FROM pg_stat_replication WHERE application_name = 'walhook'",
      );
      for (const row of rows) if (row.reply_time !== null) replyTimes.add(row.reply_time);
      return receiver.requests.length >= before + 4 && receiver.inFlight === 0;
    },
    { timeoutMs: 30_000, intervalMs: 500, message: 'the four slow deliveries did not finish' },
  );

  const ids = receiver.requests.slice(before).map((r) => (r.json as { event: { data: { new: { id: number } } } }).event.data.new.id);
  assert.deepEqual(ids, [1, 2, 3, 4], 'strict ordering delivers in commit order');
  assert.ok(replyTimes.size >= 3, `reply_time moved ${replyTimes.size} times during 10 s of deliveries`);
  const log = await postgres.logTail(400);
  assert.doesNotMatch(log, /replication timeout/);
  assert.equal(walhook.logs.filter((entry) => entry.msg === 'replication connection failed').length, 0);
  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
