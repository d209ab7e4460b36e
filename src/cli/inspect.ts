/**
 * Read-only queries that `walhook status` and `walhook teardown` share: the database,
 * the replication slot, the publication, the replica that holds the leader lock, and
 * the dead-letter table.
 */
import pg from 'pg';

import { advisoryLockFields, leaderLockKey } from '../ops/leader-lock.js';
import { type SlotRow, type SlotSnapshot, slotQuery, snapshotFromRow } from '../ops/slot-status.js';
import { DEAD_LETTER_TABLE } from '../sinks/dead-letter/store.js';
import { sessionOptions } from '../source/session-settings.js';
import { qualifiedName } from '../source/sql.js';

/** application_name of the commands' sessions, as pg_stat_activity shows it. */
const APPLICATION_NAME = 'walhook-cli';
/** Deadline for connecting and for each statement, so a silent server cannot hang a command. */
const TIMEOUT_MS = 10_000;

/** Columns that only walhook's dead-letter table has together. Teardown drops no table without them. */
const DEAD_LETTER_MARKER_COLUMNS = ['event_id', 'envelope', 'reason', 'redelivered_at', 'redelivery_attempts'];

export interface DatabaseInfo {
  readonly name: string;
  /** server_version, such as `18.1`. */
  readonly serverVersion: string;
  readonly serverVersionNum: number;
  readonly walLevel: string;
}

export interface SlotInfo extends SlotSnapshot {
  readonly name: string;
  /** Output plugin, or null when the slot does not exist or is physical. */
  readonly plugin: string | null;
  /** `logical` or `physical`, or null when the slot does not exist. */
  readonly slotType: string | null;
  /** Database of a logical slot, or null when the slot does not exist. */
  readonly database: string | null;
}

export interface PublicationInfo {
  readonly name: string;
  readonly exists: boolean;
  /** True for a publication FOR ALL TABLES. */
  readonly allTables: boolean;
  /** Published tables as `schema.name`, sorted. */
  readonly tables: readonly string[];
}

/** The session that holds the leader lock of a slot, from pg_locks and pg_stat_activity. */
export interface LeaderInfo {
  readonly pid: number;
  /** Null when the current role may not see the session's details (needs pg_read_all_stats). */
  readonly applicationName: string | null;
  readonly clientAddr: string | null;
  readonly clientPort: number | null;
  readonly backendStart: Date | null;
}

export interface DeadLetterTableInfo {
  /** Schema-qualified, quoted name. */
  readonly table: string;
  readonly schema: string;
  readonly schemaExists: boolean;
  readonly exists: boolean;
  /** True when the table has the columns of walhook's dead-letter table. */
  readonly walhookLayout: boolean;
  readonly rows: number;
  readonly pending: number;
}

/** Opens a regular session for a command. The caller ends it. */
export async function openCommandSession(connection: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: connection,
    options: `${sessionOptions()} -c statement_timeout=${TIMEOUT_MS}`,
    application_name: APPLICATION_NAME,
    connectionTimeoutMillis: TIMEOUT_MS,
  });
  // An error after connect, such as the server closing the session, rejects the running query.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  return client;
}

export async function readDatabaseInfo(client: pg.Client): Promise<DatabaseInfo> {
  const { rows } = await client.query<{ name: string; version: string; version_num: string; wal_level: string }>(
    `SELECT current_database() AS name, current_setting('server_version') AS version,
            current_setting('server_version_num') AS version_num, current_setting('wal_level') AS wal_level`,
  );
  const row = rows[0];
  if (row === undefined) throw new Error('the database returned no row for its settings');
  return {
    name: row.name,
    serverVersion: row.version,
    serverVersionNum: Number(row.version_num),
    walLevel: row.wal_level,
  };
}

export async function readSlot(client: pg.Client, slot: string, serverVersionNum: number): Promise<SlotInfo> {
  const { rows } = await client.query<SlotRow>(slotQuery(serverVersionNum), [slot]);
  const snapshot = snapshotFromRow(rows[0]);
  const details = await client.query<{ plugin: string | null; slot_type: string; database: string | null }>(
    'SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  const detail = details.rows[0];
  return {
    ...snapshot,
    name: slot,
    plugin: detail?.plugin ?? null,
    slotType: detail?.slot_type ?? null,
    database: detail?.database ?? null,
  };
}

export async function readPublication(client: pg.Client, name: string): Promise<PublicationInfo> {
  const { rows } = await client.query<{ puballtables: boolean }>(
    'SELECT puballtables FROM pg_publication WHERE pubname = $1',
    [name],
  );
  const publication = rows[0];
  if (publication === undefined) return { name, exists: false, allTables: false, tables: [] };
  const tables = await client.query<{ schemaname: string; tablename: string }>(
    'SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY schemaname, tablename',
    [name],
  );
  return {
    name,
    exists: true,
    allTables: publication.puballtables,
    tables: tables.rows.map((row) => `${row.schemaname}.${row.tablename}`),
  };
}

/**
 * Returns the session that holds the advisory lock walhook replicas of `slot` compete
 * for in the current database, or null when no replica leads.
 */
export async function findLeader(client: pg.Client, database: string, slot: string): Promise<LeaderInfo | null> {
  const fields = advisoryLockFields(leaderLockKey(database, slot));
  const { rows } = await client.query<{
    pid: number;
    application_name: string | null;
    client_addr: string | null;
    client_port: number | null;
    backend_start: Date | null;
  }>(
    `SELECT l.pid, a.application_name, host(a.client_addr) AS client_addr, a.client_port, a.backend_start
       FROM pg_locks l
       LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = $3
      LIMIT 1`,
    [String(fields.classid), String(fields.objid), fields.objsubid],
  );
  const row = rows[0];
  if (row === undefined) return null;
  return {
    pid: row.pid,
    applicationName: row.application_name,
    clientAddr: row.client_addr,
    clientPort: row.client_port,
    backendStart: row.backend_start,
  };
}

export async function readDeadLetterTable(client: pg.Client, schema: string): Promise<DeadLetterTableInfo> {
  const table = qualifiedName(schema, DEAD_LETTER_TABLE);
  const { rows } = await client.query<{ attname: string }>(
    `SELECT a.attname
       FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [table],
  );
  const found = await client.query<{ schema_exists: boolean; table_exists: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema_exists,
            to_regclass($2) IS NOT NULL AS table_exists`,
    [schema, table],
  );
  const schemaExists = found.rows[0]?.schema_exists === true;
  const missing = { table, schema, schemaExists, exists: false, walhookLayout: false, rows: 0, pending: 0 };
  if (rows.length === 0) {
    return { ...missing, exists: found.rows[0]?.table_exists === true };
  }
  const columns = new Set(rows.map((row) => row.attname));
  const walhookLayout = DEAD_LETTER_MARKER_COLUMNS.every((column) => columns.has(column));
  if (!walhookLayout) return { ...missing, exists: true };
  const counts = await client.query<{ total: string; pending: string }>(
    `SELECT count(*)::text AS total, count(*) FILTER (WHERE redelivered_at IS NULL)::text AS pending FROM ${table}`,
  );
  return {
    table,
    schema,
    schemaExists,
    exists: true,
    walhookLayout,
    rows: Number(counts.rows[0]?.total ?? 0),
    pending: Number(counts.rows[0]?.pending ?? 0),
  };
}
