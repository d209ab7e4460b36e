import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareLsn, currentWalLsn, slotState } from '../helpers/replication.js';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { waitFor } from '../helpers/wait.js';
import { startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers({
  setup: async ({ postgres }) => {
    await postgres.query('CREATE TABLE outbox_anchor (id int PRIMARY KEY)');
  },
});

interface MessageBody {
  id: string;
  table: null;
  xid: number | null;
  event: {
    op: string;
    data: {
      old: null;
      new: null;
      message: { prefix: string; content: string; content_encoding: string; transactional: boolean };
    };
  };
}

test('logical decoding messages reach message_prefix triggers', async (t) => {
  const config = {
    source: { connection: servers.postgres.connectionString },
    webhooks: [{ name: 'outbox', url: servers.receiver.url, retry: { initial_delay: '50ms', max_delay: '200ms' } }],
    triggers: [
      { name: 'order_outbox', message_prefix: 'orders', webhook: 'outbox' },
      { name: 'anchor', table: 'outbox_anchor', operations: ['insert'], webhook: 'outbox' },
    ],
  };
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  await servers.postgres.query(`BEGIN;
    SELECT pg_logical_emit_message(true, 'orders', '{"order": 9007199254740993}');
    SELECT pg_logical_emit_message(true, 'other', 'not configured');
    COMMIT;`);
  await servers.postgres.query(`BEGIN;
    SELECT pg_logical_emit_message(true, 'orders', 'rolled back');
    ROLLBACK;`);
  await servers.postgres.query("SELECT pg_logical_emit_message(false, 'orders', '\\x00ff'::bytea)");
  await servers.postgres.query('INSERT INTO outbox_anchor VALUES (1)');
  const endOfWrites = await currentWalLsn(servers.postgres);

  await waitFor(
    async () => {
      const slot = await slotState(servers.postgres, 'walhook');
      return slot?.confirmedFlushLsn != null && compareLsn(slot.confirmedFlushLsn, endOfWrites) >= 0;
    },
    { timeoutMs: 20_000, message: 'slot did not pass the messages' },
  );

  const messages = servers.receiver.requests
    .map((request) => ({ body: request.body, json: request.json as MessageBody }))
    .filter((request) => request.json.event.op === 'MESSAGE');
  assert.equal(messages.length, 2, 'the transactional and the non-transactional message, not the rolled back one');

  const transactional = messages.find((m) => m.json.event.data.message.transactional)!;
  assert.equal(transactional.json.event.data.message.prefix, 'orders');
  assert.equal(transactional.json.event.data.message.content_encoding, 'utf8');
  assert.match(transactional.body, /9007199254740993/);
  assert.equal(transactional.json.table, null);
  assert.equal(typeof transactional.json.xid, 'number');

  const plain = messages.find((m) => !m.json.event.data.message.transactional)!;
  assert.equal(plain.json.event.data.message.content_encoding, 'base64');
  assert.equal(Buffer.from(plain.json.event.data.message.content, 'base64').toString('hex'), '00ff');
  assert.equal(plain.json.xid, null);

  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);
});
