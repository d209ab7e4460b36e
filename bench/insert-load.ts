/**
 * Pieces shared by the latency and overhead phases, which both run pgbench with
 * single-row inserts into a table of their own database and capture them with walhook,
 * pg_recvlogical or the trigger baseline.
 */
import type { TestPostgres } from '../test/helpers/postgres.js';
import { writePgbenchScript, type PostgresTools } from './postgres-tools.js';
import type { BenchReceiver } from './receiver.js';
import type { BenchScale } from './scale.js';
import { BenchWalhook, walhookConfig } from './walhook-runner.js';

/** Server, tools and receiver that the benchmark run passes to each phase. */
export interface PhaseContext {
  readonly server: TestPostgres;
  readonly tools: PostgresTools;
  readonly receiver: BenchReceiver;
  readonly scale: BenchScale;
  readonly workDir: string;
  readonly log: (message: string) => void;
}

/** Drops `database` if a previous run left it, and creates it empty. */
export async function recreateDatabase(server: TestPostgres, database: string): Promise<void> {
  await server.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await server.createDatabase(database);
}

/** Returns the CREATE TABLE statement of an insert target, shaped like the drain workloads' rows. */
export function insertTableSql(table: string): string {
  return `CREATE TABLE ${table} (
    id bigserial PRIMARY KEY,
    account integer NOT NULL,
    amount numeric(12, 2) NOT NULL,
    status text NOT NULL,
    note text NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now())`;
}

/** Writes a pgbench script that inserts one row into `table` per transaction, and returns its path. */
export function writeInsertScript(path: string, table: string, note: string): Promise<string> {
  return writePgbenchScript(
    path,
    `\\set account random(1, 100000)\n` +
      `INSERT INTO ${table} (account, amount, status, note) VALUES (:account, :account / 100.0, 'new', '${note}');\n`,
  );
}

/**
 * Starts walhook with one webhook that receives each insert into `table` as its own
 * request, and waits until it streams. `cpuList` pins it with taskset.
 */
export async function startPerEventWalhook(
  context: PhaseContext,
  options: { database: string; slot: string; table: string; cpuList?: string },
): Promise<BenchWalhook> {
  const walhook = await BenchWalhook.start({
    config: walhookConfig({
      connection: context.server.connectionStringFor(options.database),
      slot: options.slot,
      publication: options.database,
      tables: [`public.${options.table}`],
      receiverUrl: context.receiver.url,
      batched: false,
    }),
    ...(options.cpuList === undefined ? {} : { cpuList: options.cpuList }),
  });
  await walhook.waitForStreaming();
  return walhook;
}
