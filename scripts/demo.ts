/**
 * `npm run demo`: an embedded PostgreSQL, a sample schema, a receiver that prints
 * what it gets, and walhook running config/demo.yaml. It makes a few changes, shows
 * the deliveries, then keeps running so you can make your own changes with psql.
 * Ctrl-C stops everything and removes the database. `--once`, or running without a
 * terminal, exits after the scripted changes arrive.
 */
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWalhook } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/core/logger.js';
import { startPostgres } from '../test/helpers/postgres.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Without a terminal (CI, a pipe) Ctrl-C cannot be pressed, so the demo stops by itself.
const once = process.argv.includes('--once') || !process.stdin.isTTY;

const SCHEMA = `
  CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
  CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers,
    total numeric(20, 2) NOT NULL,
    status text NOT NULL DEFAULT 'new',
    placed_at timestamptz NOT NULL DEFAULT now()
  );
`;

const CHANGES = [
  "INSERT INTO customers VALUES (1, 'Ada Lovelace')",
  'INSERT INTO orders (customer_id, total) VALUES (1, 42.50), (1, 9007199254740993.25)',
  "UPDATE orders SET status = 'paid' WHERE id = 1",
  "UPDATE customers SET name = 'Ada King' WHERE id = 1",
  'DELETE FROM orders WHERE id = 2',
];

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  print('demo: starting an embedded PostgreSQL (wal_level=logical)...');
  const postgres = await startPostgres();
  const received: unknown[] = [];
  let expected = 0;
  let onReceived: (() => void) | null = null;

  const receiver = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const event = JSON.parse(body) as { event: { op: string }; table: { name: string } };
      received.push(event);
      // Print the row data from the raw body: JSON.parse would round the big numbers.
      const data = /"data":(.*),"session_variables"/.exec(body)?.[1] ?? '';
      print(`receiver: ${event.event.op} on ${event.table.name} ${data}`);
      response.end('ok');
      onReceived?.();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const address = receiver.address() as { port: number };
  const receiverUrl = `http://127.0.0.1:${address.port}/hooks`;

  await postgres.query(SCHEMA);
  const config = loadConfig(path.join(root, 'config/demo.yaml'), {
    DATABASE_URL: postgres.connectionString,
    DEMO_RECEIVER_URL: receiverUrl,
  });
  const app = await startWalhook(config, createLogger(process.env.WALHOOK_DEMO_LOG ?? 'warn'));
  print(`demo: walhook is streaming; receiver listens on ${receiverUrl}`);

  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    print('demo: stopping walhook, the receiver and PostgreSQL...');
    await app.close();
    receiver.closeAllConnections();
    receiver.close();
    await postgres.close();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  app.done.catch((err: unknown) => {
    print(`demo: walhook failed: ${(err as Error).message}`);
    void stop(1);
  });

  // orders: all operations; customers: inserts only. So the customer update is not sent.
  expected = 5;
  const allArrived = new Promise<void>((resolve) => {
    onReceived = () => {
      if (received.length >= expected) resolve();
    };
  });
  for (const sql of CHANGES) {
    print(`sql: ${sql}`);
    await postgres.query(sql);
  }
  const timeout = setTimeout(() => {
    print(`demo: only ${received.length} of ${expected} deliveries arrived within 30 s`);
    void stop(1);
  }, 30_000);
  await allArrived;
  clearTimeout(timeout);
  print(`demo: ${received.length} deliveries received; the customer update was not configured, so it was not sent`);

  if (once) {
    await stop(0);
    return;
  }
  print(`demo: try it yourself: psql '${postgres.connectionString}'`);
  print('demo: press Ctrl-C to stop and remove everything');
}

await main();
