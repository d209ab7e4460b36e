// Where streaming starts after a clean stop, and how a failing receiver is retried,
// against a real PostgreSQL server, a real HTTP receiver and the walhook CLI.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';

import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { startReceiver } from '../helpers/receiver.js';
import type { ReceivedRequest } from '../helpers/receiver.js';
import { compareLsn, slotState } from '../helpers/replication.js';
import { waitFor } from '../helpers/wait.js';
import { LOG_LEVEL, startWalhook } from '../helpers/walhook-process.js';

interface Envelope {
  id: string;
  event: { op: string; data: { new: { id: number } | null } };
  delivery_info: { max_retries: number | null; current_retry: number };
}

function envelopeOf(request: ReceivedRequest): Envelope {
  assert.ok(request.json !== undefined, `request body is not JSON: ${request.body}`);
  return request.json as Envelope;
}

function insertedId(request: ReceivedRequest): number | undefined {
  return (request.json as Envelope | undefined)?.event?.data?.new?.id;
}

describe('start position and retries', () => {
  let server: TestPostgres;

  before(async () => {
    server = await startPostgres();
  });

  after(async () => {
    await server?.close();
  });

  /** Creates a database with table `items` and returns its connection string. */
  async function createItemsDatabase(name: string): Promise<string> {
    const connectionString = await server.createDatabase(name);
    const client = new pg.Client({ connectionString });
    await client.connect();
    try {
      await client.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
    } finally {
      await client.end();
    }
    return connectionString;
  }

  async function insertItems(connectionString: string, ids: number[]): Promise<void> {
    const client = new pg.Client({ connectionString });
    await client.connect();
    try {
      for (const id of ids) {
        await client.query('INSERT INTO items VALUES ($1, $2)', [id, `item ${id}`]);
      }
    } finally {
      await client.end();
    }
  }

  function itemsConfig(connection: string, slot: string, url: string): object {
    return {
      source: { connection, slot },
      webhooks: [{ name: 'items-api', url, retry: { initial_delay: '100ms', max_delay: '300ms' } }],
      triggers: [{ name: 'item_events', table: 'items', webhook: 'items-api' }],
    };
  }

  test('restart delivers changes made while stopped', async (t) => {
    const slot = 'start_position';
    const connection = await createItemsDatabase('start_position');
    const receiver = await startReceiver();
    t.after(() => receiver.close());
    const config = itemsConfig(connection, slot, receiver.url);

    const first = await startWalhook({ config, t });
    await first.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
    assert.deepEqual(await first.stop({ timeoutMs: 10_000 }), { code: 0, signal: null });
    const stopped = await slotState(server, slot);
    const stoppedLsn = stopped?.confirmedFlushLsn;
    assert.ok(stoppedLsn, 'the first run left no slot');
    assert.equal(stopped?.active, false);

    await insertItems(connection, [1, 2, 3]);
    const second = await startWalhook({ config, t });
    const requests = await receiver.waitForRequests(3, { timeoutMs: 20_000 });

    assert.deepEqual(requests.map(insertedId), [1, 2, 3]);
    const positionRead = await second.waitForLog('slot position read');
    assert.equal(positionRead.lsn, stoppedLsn);
    const streaming = await second.waitForLog('streaming from the replication slot');
    assert.equal(streaming.lsn, stoppedLsn);
    assert.equal(second.logs.filter((entry) => entry.msg === 'replication slot created').length, 0);
    assert.equal(first.logs.filter((entry) => entry.msg === 'replication slot created').length, 1);
    await waitFor(
      async () => {
        const state = await slotState(server, slot);
        return state?.confirmedFlushLsn && compareLsn(state.confirmedFlushLsn, stoppedLsn) > 0;
      },
      { timeoutMs: 10_000, message: 'the slot to confirm the delivered inserts' },
    );
    assert.deepEqual(await second.stop({ timeoutMs: 10_000 }), { code: 0, signal: null });
  });

  test('failed deliveries retry with same id', async (t) => {
    const slot = 'retry_same_id';
    const connection = await createItemsDatabase('retry_same_id');
    const receiver = await startReceiver();
    t.after(() => receiver.close());
    const failedAttempts = 2;
    receiver.respond((_request, index) => {
      return index < failedAttempts ? { status: 500, body: 'try again' } : { status: 200 };
    });
    const walhook = await startWalhook({ config: itemsConfig(connection, slot, receiver.url), t });
    await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

    await insertItems(connection, [1]);
    const requests = await receiver.waitForRequests(failedAttempts + 1, { timeoutMs: 10_000 });

    const envelopes = requests.map(envelopeOf);
    assert.deepEqual(
      envelopes.map((envelope) => envelope.delivery_info),
      [
        { max_retries: null, current_retry: 0 },
        { max_retries: null, current_retry: 1 },
        { max_retries: null, current_retry: 2 },
      ],
    );
    const firstId = envelopes[0]?.id;
    assert.ok(firstId !== undefined);
    for (const [index, request] of requests.entries()) {
      assert.equal(envelopes[index]?.id, firstId, `attempt ${index + 1} has another event id`);
      assert.equal(request.headers['webhook-id'], firstId, `attempt ${index + 1} has another webhook-id`);
      assert.match(String(request.headers['webhook-timestamp']), /^\d+$/);
      assert.equal(insertedId(request), 1);
    }
    const failures = await waitFor(
      () => {
        const logged = walhook.logs.filter((entry) => entry.msg === 'delivery attempt failed, will retry');
        return logged.length >= failedAttempts ? logged : undefined;
      },
      { timeoutMs: 5_000, message: 'a warning for each failed attempt' },
    );
    assert.deepEqual(
      failures.map((entry) => [entry.level, entry.status, entry.attempt, entry.eventId, entry.trigger]),
      [
        [LOG_LEVEL.warn, 500, 1, firstId, 'item_events'],
        [LOG_LEVEL.warn, 500, 2, firstId, 'item_events'],
      ],
    );
    for (const entry of failures) {
      assert.equal(typeof entry.nextDelayMs, 'number');
      assert.ok((entry.nextDelayMs as number) <= 300, `nextDelayMs ${entry.nextDelayMs} exceeds max_delay`);
    }
  });
});
