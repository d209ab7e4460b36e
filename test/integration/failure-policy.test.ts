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
  postgres = await startPostgres();
  receiver = await startReceiver();
  await postgres.query('CREATE TABLE policy_rows (id int PRIMARY KEY)');
});

after(async () => {
  await receiver?.close();
  await postgres?.close();
});

function idOf(body: unknown): number {
  return (body as { event: { data: { new: { id: number } } } }).event.data.new.id;
}

async function slotPassed(lsn: string): Promise<boolean> {
  const slot = await slotState(postgres, 'policy');
  return slot?.confirmedFlushLsn != null && compareLsn(slot.confirmedFlushLsn, lsn) >= 0;
}

function configWith(onFailure: string): object {
  return {
    source: { connection: postgres.connectionString, slot: 'policy', publication: 'policy' },
    webhooks: [
      {
        name: 'rows',
        url: receiver.url,
        on_failure: onFailure,
        retry: { initial_delay: '50ms', max_delay: '200ms' },
      },
    ],
    triggers: [{ name: 'policy_rows', table: 'policy_rows', webhook: 'rows' }],
  };
}

test('slot passes a dead-lettered event and waits for a blocked one', async (t) => {
  receiver.respond((request) => (idOf(request.json) === 1 ? { status: 422 } : {}));
  const walhook = await startWalhook({ config: configWith('dead_letter'), t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  await postgres.query('INSERT INTO policy_rows VALUES (1)');
  await postgres.query('INSERT INTO policy_rows VALUES (2)');
  const afterWrites = await currentWalLsn(postgres);
  await waitFor(() => slotPassed(afterWrites), {
    timeoutMs: 20_000,
    message: 'slot did not pass the dead-lettered event',
  });
  const letters = await postgres.query<{ reason: string; last_status: number }>(
    'SELECT reason, last_status FROM walhook.dead_letters',
  );
  assert.equal(letters.length, 1);
  assert.equal(letters[0]?.last_status, 422);
  assert.equal((await walhook.stop({ timeoutMs: 15_000 })).code, 0);

  // Under block, the same permanent failure holds the slot until the receiver accepts it.
  receiver.respond((request) => (idOf(request.json) === 3 ? { status: 422 } : {}));
  const blocking = await startWalhook({ config: configWith('block'), t });
  await blocking.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  await postgres.query('INSERT INTO policy_rows VALUES (3)');
  const afterBlocked = await currentWalLsn(postgres);
  await receiver.waitForRequest((request) => idOf(request.json) === 3 && request.index > 0, { timeoutMs: 10_000 });
  await blocking.waitForLog((entry) => entry.msg.startsWith('webhook blocked'), { timeoutMs: 10_000 });
  const held = await slotState(postgres, 'policy');
  assert.ok(held?.confirmedFlushLsn != null);
  assert.ok(compareLsn(held.confirmedFlushLsn, afterBlocked) < 0, 'slot passed the blocked commit');

  receiver.respond(() => ({}));
  await waitFor(() => slotPassed(afterBlocked), { timeoutMs: 20_000, message: 'slot did not pass after unblocking' });
  assert.equal((await blocking.stop({ timeoutMs: 15_000 })).code, 0);
});
