import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers({
  setup: async ({ postgres }) => {
    await postgres.query('CREATE TABLE policy_rows (id int PRIMARY KEY)');
  },
});

function idOf(body: unknown): number {
  return (body as { event: { data: { new: { id: number } } } }).event.data.new.id;
}

async function slotPassed(lsn: string): Promise<boolean> {
  const slot = await slotState(servers.postgres, 'policy');
  return slot?.confirmedFlushLsn != null && compareLsn(slot.confirmedFlushLsn, lsn) >= 0;
}

function configWith(onFailure: string): object {
  return {
    source: { connection: servers.postgres.connectionString, slot: 'policy', publication: 'policy' },
    webhooks: [
      {
        name: 'rows',
        url: servers.receiver.url,
        on_failure: onFailure,
        retry: { initial_delay: '50ms', max_delay: '200ms' },
      },
    ],
    triggers: [{ name: 'policy_rows', table: 'policy_rows', webhook: 'rows' }],
  };
}

test('slot passes a dead-lettered event and waits for a blocked one', async (t) => {
  servers.receiver.respond((request) => (idOf(request.json) === 1 ? { status: 422 } : {}));
  const walhook = await startWalhook({ config: configWith('dead_letter'), t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  await servers.postgres.query('INSERT INTO policy_rows VALUES (1)');
  await servers.postgres.query('INSERT INTO policy_rows VALUES (2)');
  const afterWrites = await currentWalLsn(servers.postgres);
  await waitFor(() => slotPassed(afterWrites), {
    timeoutMs: 20_000,
    message: 'slot did not pass the dead-lettered event',
  });
  const letters = await servers.postgres.query<{ reason: string; last_status: number }>(
    'SELECT reason, last_status FROM walhook.dead_letters',
  );
  assert.equal(letters.length, 1);
  assert.equal(letters[0]?.last_status, 422);
  assert.equal((await walhook.stop({ timeoutMs: 15_000 })).code, 0);

  // Under block, the same permanent failure holds the slot until the receiver accepts it.
  servers.receiver.respond((request) => (idOf(request.json) === 3 ? { status: 422 } : {}));
  const blocking = await startWalhook({ config: configWith('block'), t });
  await blocking.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  await servers.postgres.query('INSERT INTO policy_rows VALUES (3)');
  const afterBlocked = await currentWalLsn(servers.postgres);
  await servers.receiver.waitForRequest((request) => idOf(request.json) === 3 && request.index > 0, { timeoutMs: 10_000 });
  await blocking.waitForLog((entry) => entry.msg.startsWith('webhook blocked'), { timeoutMs: 10_000 });
  const held = await slotState(servers.postgres, 'policy');
  assert.ok(held?.confirmedFlushLsn != null);
  assert.ok(compareLsn(held.confirmedFlushLsn, afterBlocked) < 0, 'slot passed the blocked commit');

  servers.receiver.respond(() => ({}));
  await waitFor(() => slotPassed(afterBlocked), { timeoutMs: 20_000, message: 'slot did not pass after unblocking' });
  assert.equal((await blocking.stop({ timeoutMs: 15_000 })).code, 0);
});
