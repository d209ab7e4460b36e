/**
 * Poller of the trigger baseline, run as its own process:
 *
 *   node --import tsx bench/trigger-poller.ts CONNECTION URL BATCH_SIZE INTERVAL_MS CONCURRENCY
 *
 * It works like Hasura's event trigger processor with its defaults, which
 * server/src-lib/Hasura/Eventing/EventTrigger.hs in hasura/graphql-engine sets: fetch
 * batches of 100, sleep 1 s only after a fetch that found nothing, and 100 HTTP
 * workers. Each fetch locks a batch of undelivered events with FOR UPDATE SKIP LOCKED
 * and marks it locked in the same statement. Every event is POSTed on its own, and the
 * batch is marked delivered with one UPDATE when all its requests got a 2xx response.
 */
import { Agent, request } from 'node:http';

import pg from 'pg';

import { EVENT_LOG_TABLE } from './trigger-sql.js';

interface PolledEvent {
  id: string;
  committed_at: string;
  trigger_name: string;
  table_schema: string;
  table_name: string;
  payload: string;
}

const [connection, url, batchText, intervalText, concurrencyText] = process.argv.slice(2);
if (connection === undefined || url === undefined || batchText === undefined || intervalText === undefined || concurrencyText === undefined) {
  process.stderr.write('usage: trigger-poller.ts CONNECTION URL BATCH_SIZE INTERVAL_MS CONCURRENCY\n');
  process.exit(2);
}
const batchSize = Number(batchText);
const intervalMs = Number(intervalText);
const target = new URL(url);
const agent = new Agent({ keepAlive: true, maxSockets: Number(concurrencyText) });

/**
 * Locks up to `batchSize` undelivered events. The commit time comes from the row
 * version that the trigger wrote, whose xmin is the source transaction, so it is read
 * in the locking subquery before the UPDATE makes a new version.
 */
const FETCH_SQL = `
  WITH picked AS (
    SELECT id, pg_xact_commit_timestamp(xmin) AS committed_at
      FROM ${EVENT_LOG_TABLE}
     WHERE NOT delivered AND locked IS NULL
     ORDER BY id
     LIMIT $1
       FOR UPDATE SKIP LOCKED
  )
  UPDATE ${EVENT_LOG_TABLE} AS e
     SET locked = now()
    FROM picked
   WHERE e.id = picked.id
  RETURNING e.id::text, e.trigger_name, e.table_schema, e.table_name, e.payload::text,
            to_char(picked.committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS committed_at`;

const MARK_DELIVERED_SQL = `UPDATE ${EVENT_LOG_TABLE} SET delivered = true, locked = NULL WHERE id = ANY($1::bigint[])`;

let running = true;
process.on('SIGTERM', () => {
  running = false;
});

const client = new pg.Client({ connectionString: connection, application_name: 'bench-trigger-poller' });
await client.connect();
process.stdout.write('poller started\n');

while (running) {
  const { rows } = await client.query<PolledEvent>(FETCH_SQL, [batchSize]);
  if (rows.length === 0) {
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    continue;
  }
  // UPDATE ... RETURNING returns rows in no defined order, so start the requests in id order.
  rows.sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
  await Promise.all(rows.map((row) => deliver(row)));
  await client.query(MARK_DELIVERED_SQL, [rows.map((row) => row.id)]);
}
await client.end();
agent.destroy();

/** POSTs one event and retries it every 100 ms until the receiver responds with 2xx. */
async function deliver(row: PolledEvent): Promise<void> {
  const body =
    `{"id":"${row.id}","created_at":"${row.committed_at}",` +
    `"trigger":{"name":${JSON.stringify(row.trigger_name)}},` +
    `"table":{"schema":${JSON.stringify(row.table_schema)},"name":${JSON.stringify(row.table_name)}},` +
    `"event":${row.payload}}`;
  for (;;) {
    const status = await post(body).catch(() => 0);
    if (status >= 200 && status < 300) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function post(body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}
