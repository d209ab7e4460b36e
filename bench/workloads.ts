/**
 * Tables and backlogs of the drain workloads W1 to W4. Each workload gets a database
 * of its own. Its setup runs before the slots are created, so the slots' backlog holds
 * only the changes that backlog() writes.
 */
import pg from 'pg';

import type { TestPostgres } from '../test/helpers/postgres.js';
import type { BenchScale } from './scale.js';
import { walhookConfig } from './walhook-runner.js';

export interface Workload {
  /** Short name in tables and file names, such as `W1`. */
  readonly id: string;
  readonly description: string;
  readonly database: string;
  readonly publication: string;
  /** Tables in the publication, as `schema.table`. */
  readonly tables: readonly string[];
  /** Statements that create and fill the tables, run before the slots exist. */
  readonly setupSql: readonly string[];
  /** Writes the backlog and returns the number of row changes, one event each. */
  backlog(client: pg.Client): Promise<number>;
}

/**
 * Columns shared by the row-shaped tables: about 150 bytes of JSON per row. No column
 * is named `created_at`, which the receiver reads as the envelope's commit time.
 */
const ORDER_COLUMNS = `
  id bigint PRIMARY KEY,
  account integer NOT NULL,
  amount numeric(12, 2) NOT NULL,
  status text NOT NULL,
  note text NOT NULL,
  inserted_at timestamptz NOT NULL`;

/** Values of ORDER_COLUMNS for row `i`, as a SQL expression list. */
const ORDER_VALUES = `i, i % 1000, (i % 100000) / 100.0, 'new', 'order ' || i, now()`;

export function drainWorkloads(scale: BenchScale): Workload[] {
  return [w1(scale.w1Transactions), w2(scale.w2Rows), w3('default', scale.w3Changes), w3('full', scale.w3Changes), w4(scale)];
}

function w1(transactions: number): Workload {
  return {
    id: 'W1',
    description: `${transactions.toLocaleString('en-US')} single-row INSERT transactions`,
    database: 'bench_w1',
    publication: 'bench_w1',
    tables: ['public.w1'],
    setupSql: [
      `CREATE TABLE w1 (${ORDER_COLUMNS})`,
      `CREATE PROCEDURE w1_backlog(total integer) LANGUAGE plpgsql AS $$
       BEGIN
         FOR i IN 1..total LOOP
           INSERT INTO w1 VALUES (${ORDER_VALUES});
           COMMIT;
         END LOOP;
       END $$`,
    ],
    async backlog(client) {
      await client.query('CALL w1_backlog($1)', [transactions]);
      return transactions;
    },
  };
}

function w2(rows: number): Workload {
  return {
    id: 'W2',
    description: `one transaction that inserts ${rows.toLocaleString('en-US')} rows`,
    database: 'bench_w2',
    publication: 'bench_w2',
    tables: ['public.w2'],
    setupSql: [`CREATE TABLE w2 (${ORDER_COLUMNS})`],
    async backlog(client) {
      await client.query(`INSERT INTO w2 SELECT ${ORDER_VALUES} FROM generate_series(1, $1::integer) AS i`, [rows]);
      return rows;
    },
  };
}

/**
 * Updates three rows in four and deletes the fourth, 10 changes per transaction, on a
 * table filled before the slots exist. Under REPLICA IDENTITY DEFAULT an update or
 * delete carries only the key of the old row; under FULL it carries the whole old row.
 */
function w3(identity: 'default' | 'full', changes: number): Workload {
  const table = `w3_${identity}`;
  return {
    id: `W3-${identity}`,
    description:
      `${changes.toLocaleString('en-US')} updates and deletes (3:1), 10 per transaction, ` +
      `REPLICA IDENTITY ${identity.toUpperCase()}`,
    database: `bench_w3_${identity}`,
    publication: `bench_w3_${identity}`,
    tables: [`public.${table}`],
    setupSql: [
      `CREATE TABLE ${table} (${ORDER_COLUMNS})`,
      `ALTER TABLE ${table} REPLICA IDENTITY ${identity.toUpperCase()}`,
      `INSERT INTO ${table} SELECT ${ORDER_VALUES} FROM generate_series(1, ${changes}) AS i`,
      `CREATE PROCEDURE ${table}_backlog(total integer) LANGUAGE plpgsql AS $$
       BEGIN
         FOR i IN 1..total LOOP
           IF i % 4 = 0 THEN
             DELETE FROM ${table} WHERE id = i;
           ELSE
             UPDATE ${table} SET status = 'paid', amount = amount + 1 WHERE id = i;
           END IF;
           IF i % 10 = 0 THEN
             COMMIT;
           END IF;
         END LOOP;
       END $$`,
      `VACUUM ANALYZE ${table}`,
    ],
    async backlog(client) {
      await client.query(`CALL ${table}_backlog($1)`, [changes]);
      return changes;
    },
  };
}

/**
 * Single-row inserts whose `body` column is stored out of line, uncompressed (STORAGE
 * EXTERNAL), so each change carries a TOAST value of `w4ValueBytes`.
 */
function w4(scale: BenchScale): Workload {
  // md5() returns 32 hexadecimal characters.
  const repeats = Math.max(1, Math.round(scale.w4ValueBytes / 32));
  const valueKiB = Math.round((repeats * 32) / 1024);
  return {
    id: 'W4',
    description: `${scale.w4Rows.toLocaleString('en-US')} single-row INSERT transactions with a ${valueKiB} KiB TOAST value each`,
    database: 'bench_w4',
    publication: 'bench_w4',
    tables: ['public.w4'],
    setupSql: [
      'CREATE TABLE w4 (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL)',
      'ALTER TABLE w4 ALTER COLUMN body SET STORAGE EXTERNAL',
      `CREATE PROCEDURE w4_backlog(total integer) LANGUAGE plpgsql AS $$
       BEGIN
         FOR i IN 1..total LOOP
           INSERT INTO w4 VALUES (i, 'document ' || i, repeat(md5(i::text), ${repeats}));
           COMMIT;
         END LOOP;
       END $$`,
    ],
    async backlog(client) {
      await client.query('CALL w4_backlog($1)', [scale.w4Rows]);
      return scale.w4Rows;
    },
  };
}

/**
 * Backlog for the memory run: `changes` inserts in transactions of 1,000 rows, written
 * after the slot exists.
 */
export function memoryWorkload(changes: number): Workload {
  return {
    id: 'memory',
    description: `${changes.toLocaleString('en-US')} inserts, 1,000 per transaction`,
    database: 'bench_memory',
    publication: 'bench_memory',
    tables: ['public.memory_rows'],
    setupSql: [
      `CREATE TABLE memory_rows (${ORDER_COLUMNS})`,
      `CREATE PROCEDURE memory_backlog(total integer) LANGUAGE plpgsql AS $$
       BEGIN
         FOR batch_start IN 1..total BY 1000 LOOP
           INSERT INTO memory_rows
             SELECT ${ORDER_VALUES} FROM generate_series(batch_start, least(batch_start + 999, total)) AS i;
           COMMIT;
         END LOOP;
       END $$`,
    ],
    async backlog(client) {
      await client.query('CALL memory_backlog($1)', [changes]);
      return changes;
    },
  };
}

/** Creates `workload.database`, runs its setup and creates its publication. */
export async function prepareWorkload(server: TestPostgres, workload: Workload): Promise<void> {
  await server.query(`DROP DATABASE IF EXISTS ${workload.database} WITH (FORCE)`);
  await server.createDatabase(workload.database);
  await withClient(server, workload.database, async (client) => {
    for (const sql of workload.setupSql) await client.query(sql);
    await client.query(`CREATE PUBLICATION ${workload.publication} FOR TABLE ${workload.tables.join(', ')}`);
  });
}

/** Drops the workload's slots and database. */
export async function dropWorkload(server: TestPostgres, workload: Workload): Promise<void> {
  const rows = await server.query<{ slot_name: string }>(
    'SELECT slot_name FROM pg_replication_slots WHERE database = $1',
    [workload.database],
  );
  for (const row of rows) await dropSlot(server, row.slot_name);
  await server.query(`DROP DATABASE IF EXISTS ${workload.database} WITH (FORCE)`);
}

/**
 * Drops `slot` once no walsender uses it. A walsender ends shortly after its client
 * exits, and dropping an active slot fails, so this waits up to 10 s for that.
 */
export async function dropSlot(server: TestPostgres, slot: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const rows = await server.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (rows[0] === undefined) return;
    if (!rows[0].active || performance.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await server.query('SELECT pg_drop_replication_slot($1)', [slot]);
}

/** Connects to `database` as superuser, runs `work` and disconnects. */
export async function withClient<T>(
  server: TestPostgres,
  database: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: server.connectionStringFor(database) });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates a pgoutput slot in `database` and returns its consistent point. A logical
 * slot must be created from a connection to its database.
 */
export async function createSlot(server: TestPostgres, database: string, slot: string): Promise<string> {
  return withClient(server, database, async (client) => {
    const result = await client.query<{ lsn: string }>(
      `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
      [slot],
    );
    return result.rows[0]!.lsn;
  });
}

/** Returns the WAL insert position, which after the backlog's last commit is its end. */
export async function walInsertLsn(client: pg.Client): Promise<string> {
  const result = await client.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  return result.rows[0]!.lsn;
}

/** Returns the walhook configuration that streams `workload` from `slot` to the receiver. */
export function workloadWalhookConfig(
  server: TestPostgres,
  workload: Workload,
  options: { slot: string; receiverUrl: string; batched: boolean },
): Record<string, unknown> {
  return walhookConfig({
    connection: server.connectionStringFor(workload.database),
    slot: options.slot,
    publication: workload.publication,
    tables: workload.tables,
    receiverUrl: options.receiverUrl,
    batched: options.batched,
  });
}
