/**
 * Checks the database and creates what streaming needs: the publication first, then
 * the slot. The order matters: a slot created before its publication cannot decode
 * WAL written before the publication existed, and pgoutput then fails on every start.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import type { SourceConfig, TableName, TriggerConfig } from '../config/types.js';
import { SourceStateError } from '../core/errors.js';
import { type Lsn, parseLsn } from '../core/lsn.js';
import { requireFullIdentity } from './filter-check.js';
import { sessionOptions } from './session-settings.js';
import { qualifiedName, quoteIdentifier } from './sql.js';

export interface SlotState {
  readonly confirmedFlushLsn: Lsn;
  readonly created: boolean;
}

export interface SetupResult {
  readonly slot: SlotState;
  /** wal_sender_timeout in milliseconds; 0 means disabled. */
  readonly walSenderTimeoutMs: number;
}

interface SlotRow {
  plugin: string | null;
  slot_type: string;
  database: string | null;
  wal_status: string | null;
  confirmed_flush_lsn: string | null;
}

export function openClient(connection: string): pg.Client {
  return new pg.Client({ connectionString: connection, options: sessionOptions(), application_name: 'walhook' });
}

/**
 * Runs the start checks, creates missing objects and returns the slot position.
 * `triggers` adds the REPLICA IDENTITY FULL check for triggers with `columns`.
 */
export async function prepareSource(
  config: SourceConfig,
  tables: readonly TableName[],
  logger: Logger,
  triggers: readonly TriggerConfig[] = [],
): Promise<SetupResult> {
  const client = openClient(config.connection);
  await client.connect();
  try {
    await checkWalLevel(client);
    await checkTablesExist(client, tables);
    await requireFullIdentity(client, triggers);
    const slotBefore = await readSlot(client, config.slot);
    if (config.replicaIdentityFull) await setReplicaIdentityFull(client, tables, logger);
    await ensurePublication(client, config, tables, logger, slotBefore !== null);
    const slot = await ensureSlot(client, config, slotBefore, logger);
    const walSenderTimeoutMs = await readWalSenderTimeout(client);
    return { slot, walSenderTimeoutMs };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkWalLevel(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
  const level = rows[0]?.wal_level;
  if (level !== 'logical') {
    throw new SourceStateError(
      'WALHOOK_WAL_LEVEL',
      `wal_level is '${level}', but logical decoding needs 'logical': run ` +
        `ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL`,
    );
  }
}

async function checkTablesExist(client: pg.Client, tables: readonly TableName[]): Promise<void> {
  const missing: string[] = [];
  for (const table of tables) {
    const { rows } = await client.query(
      `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [table.schema, table.name],
    );
    if (rows.length === 0) missing.push(qualifiedName(table.schema, table.name));
  }
  if (missing.length > 0) {
    throw new SourceStateError(
      'WALHOOK_TABLE_NOT_FOUND',
      `table not found: ${missing.join(', ')}; create it or fix the trigger's 'table' (unquoted names fold to lower case)`,
    );
  }
}

async function readSlot(client: pg.Client, slot: string): Promise<SlotRow | null> {
  const { rows } = await client.query<SlotRow>(
    `SELECT plugin, slot_type, database, wal_status, confirmed_flush_lsn::text AS confirmed_flush_lsn
     FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  return rows[0] ?? null;
}

/** Creates the publication or adds missing tables to it. */
async function ensurePublication(
  client: pg.Client,
  config: SourceConfig,
  tables: readonly TableName[],
  logger: Logger,
  slotExists: boolean,
): Promise<void> {
  const publication = quoteIdentifier(config.publication);
  const { rows } = await client.query<{ puballtables: boolean; pubviaroot: boolean | null }>(
    `SELECT puballtables, ${(await serverVersion(client)) >= 130000 ? 'pubviaroot' : 'NULL::boolean AS pubviaroot'}
     FROM pg_publication WHERE pubname = $1`,
    [config.publication],
  );
  const existing = rows[0];
  // A trigger on a partitioned table receives the changes of all its partitions, also
  // ones attached later, under the table's own name (PostgreSQL 13 or later).
  const partitioned = await partitionedTables(client, tables);
  const viaRoot = partitioned.length > 0 ? ' WITH (publish_via_partition_root = true)' : '';
  if (existing === undefined) {
    // wal2json reads no publication, so only pgoutput needs it to predate the slot.
    // walhook creates it for wal2json too: then PostgreSQL rejects updates and deletes
    // on tables without a replica identity, which wal2json would skip with a warning.
    if (slotExists && config.plugin === 'pgoutput') {
      throw new SourceStateError(
        'WALHOOK_SLOT_BEFORE_PUBLICATION',
        `replication slot '${config.slot}' exists but publication '${config.publication}' does not, and a ` +
          'publication created now would be newer than the slot, which pgoutput cannot decode. Drop the slot ' +
          `(SELECT pg_drop_replication_slot('${config.slot}')) and start walhook again: it creates the ` +
          'publication first, then the slot',
      );
    }
    const list = tables.map((t) => qualifiedName(t.schema, t.name)).join(', ');
    // Without tables (only message triggers) the publication starts empty.
    await client.query(`CREATE PUBLICATION ${publication}${list === '' ? '' : ` FOR TABLE ${list}`}${viaRoot}`);
    logger.info({ publication: config.publication, tables: tables.length }, 'publication created');
    return;
  }
  if (partitioned.length > 0 && existing.pubviaroot === false) {
    await client.query(`ALTER PUBLICATION ${publication} SET (publish_via_partition_root = true)`);
    logger.warn(
      { publication: config.publication, tables: partitioned },
      'publication set to publish_via_partition_root, so partition changes arrive under the partitioned table',
    );
  }
  if (existing.puballtables) return;

  // Members listed directly (pg_publication_rel) and through schemas or leaf partitions
  // (pg_publication_tables), so a partitioned table is not added twice.
  const published = await client.query<{ schemaname: string; tablename: string }>(
    `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1
     UNION
     SELECT n.nspname, c.relname FROM pg_publication_rel r
       JOIN pg_publication p ON p.oid = r.prpubid
       JOIN pg_class c ON c.oid = r.prrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE p.pubname = $1`,
    [config.publication],
  );
  const have = new Set(published.rows.map((r) => `${r.schemaname}\u0000${r.tablename}`));
  for (const table of tables) {
    if (have.has(`${table.schema}\u0000${table.name}`)) continue;
    await client.query(`ALTER PUBLICATION ${publication} ADD TABLE ${qualifiedName(table.schema, table.name)}`);
    logger.warn(
      { publication: config.publication, table: `${table.schema}.${table.name}` },
      'table added to the publication; its changes committed before now are not delivered',
    );
  }
}

async function ensureSlot(
  client: pg.Client,
  config: SourceConfig,
  existing: SlotRow | null,
  logger: Logger,
): Promise<SlotState> {
  if (existing === null) {
    const { rows } = await client
      .query<{ lsn: string }>('SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, $2)', [
        config.slot,
        config.plugin,
      ])
      .catch((err: unknown) => {
        throw pluginNotLoadable(err, config.plugin) ?? err;
      });
    const lsn = rows[0]?.lsn ?? '0/0';
    logger.info({ slot: config.slot, plugin: config.plugin, lsn }, 'replication slot created');
    return { confirmedFlushLsn: parseLsn(lsn), created: true };
  }

  if (existing.slot_type !== 'logical') {
    throw new SourceStateError(
      'WALHOOK_SLOT_NOT_LOGICAL',
      `replication slot '${config.slot}' is a ${existing.slot_type} slot; choose another source.slot name`,
    );
  }
  const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
  if (existing.database !== rows[0]?.db) {
    throw new SourceStateError(
      'WALHOOK_SLOT_OTHER_DATABASE',
      `replication slot '${config.slot}' belongs to database '${existing.database}', not '${rows[0]?.db}'; ` +
        'connect to that database or choose another source.slot name',
    );
  }
  if (existing.plugin !== config.plugin) {
    throw new SourceStateError(
      'WALHOOK_SLOT_PLUGIN_MISMATCH',
      `replication slot '${config.slot}' uses plugin '${existing.plugin}' but source.plugin is '${config.plugin}'; ` +
        `set source.plugin: ${existing.plugin}, or drop the slot (SELECT pg_drop_replication_slot('${config.slot}')) ` +
        'to recreate it, which loses its undelivered changes',
    );
  }
  if (existing.wal_status === 'lost' || existing.confirmed_flush_lsn === null) {
    throw slotLost(config.slot);
  }
  return { confirmedFlushLsn: parseLsn(existing.confirmed_flush_lsn), created: false };
}

async function readWalSenderTimeout(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ setting: string; unit: string | null }>(
    "SELECT setting, unit FROM pg_settings WHERE name = 'wal_sender_timeout'",
  );
  const row = rows[0];
  if (row === undefined) return 60_000;
  const value = Number(row.setting);
  return row.unit === 's' ? value * 1000 : value;
}

export function slotLost(slot: string): SourceStateError {
  return new SourceStateError(
    'WALHOOK_SLOT_LOST',
    `replication slot '${slot}' is lost: PostgreSQL removed WAL it still needed (max_slot_wal_keep_size), so ` +
      'changes since its last confirmed position cannot be recovered. Resynchronize the receivers from the ' +
      `tables, then drop the slot (SELECT pg_drop_replication_slot('${slot}')) and start walhook to create a new one`,
  );
}

/**
 * Maps the errors of a server that cannot load the output plugin (SQLSTATE 58P01, no
 * such file), does not allow it (42501), or whose wal2json rejects walhook's options
 * (raised in its startup callback), to a fatal error. Returns null for other errors.
 */
export function pluginNotLoadable(err: unknown, plugin: string): SourceStateError | null {
  const fields = (err ?? {}) as { code?: string; where?: string; message?: string };
  const message = fields.message ?? String(err);
  if (fields.code === '42501' && message.includes(`"${plugin}" may not be used as an output plugin`)) {
    // PostgreSQL 15 since 15.19 (Debian's postgresql-15 changelog) allows only the plugins
    // in output_plugin_libraries, by default pgoutput and test_decoding. NOTE: the minor
    // releases that added it on other branches were not checked.
    return new SourceStateError(
      'WALHOOK_PLUGIN_UNSUPPORTED',
      `the server does not allow the output plugin '${plugin}' (${message}); as a superuser run ` +
        `ALTER SYSTEM SET output_plugin_libraries = 'pgoutput, test_decoding, ${plugin}' and ` +
        'SELECT pg_reload_conf(), or set source.plugin: pgoutput',
      { cause: err },
    );
  }
  if (fields.code === '58P01' && message.includes(`"${plugin}"`)) {
    return new SourceStateError(
      'WALHOOK_PLUGIN_UNSUPPORTED',
      `the server cannot load the output plugin '${plugin}' (${message}); install it on the PostgreSQL server ` +
        `(Debian: postgresql-NN-${plugin}) or set source.plugin: pgoutput`,
      { cause: err },
    );
  }
  if (plugin === 'wal2json' && (fields.where ?? '').includes('startup callback')) {
    return new SourceStateError(
      'WALHOOK_PLUGIN_UNSUPPORTED',
      `the output plugin 'wal2json' rejected walhook's options (${message}); walhook needs wal2json 2.5 or a ` +
        'later version that accepts the same options, or set source.plugin: pgoutput',
      { cause: err },
    );
  }
  return null;
}

export function slotPredatesPublication(config: SourceConfig): SourceStateError {
  return new SourceStateError(
    'WALHOOK_SLOT_BEFORE_PUBLICATION',
    `replication slot '${config.slot}' was created before publication '${config.publication}', so pgoutput ` +
      'cannot decode the changes in between. Drop the slot (SELECT pg_drop_replication_slot(' +
      `'${config.slot}')) and start walhook again: it creates the publication first, then the slot`,
  );
}

async function serverVersion(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ server_version_num: string }>('SHOW server_version_num');
  return Number(rows[0]?.server_version_num ?? 0);
}

/** Returns the configured tables that are partitioned, as `schema.name`. */
async function partitionedTables(client: pg.Client, tables: readonly TableName[]): Promise<string[]> {
  const partitioned: string[] = [];
  for (const table of tables) {
    const { rows } = await client.query(
      `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'p'`,
      [table.schema, table.name],
    );
    if (rows.length > 0) partitioned.push(`${table.schema}.${table.name}`);
  }
  return partitioned;
}

/**
 * Sets REPLICA IDENTITY FULL on each configured table that lacks it (and on the
 * partitions of a partitioned table, which do not inherit it), logging each change.
 */
async function setReplicaIdentityFull(client: pg.Client, tables: readonly TableName[], logger: Logger): Promise<void> {
  for (const table of tables) {
    const { rows } = await client.query<{ schema: string; name: string; identity: string }>(
      `WITH target AS (
         SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2)
       SELECT n.nspname AS schema, c.relname AS name, c.relreplident AS identity
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.oid IN (SELECT oid FROM target UNION SELECT relid FROM pg_partition_tree((SELECT oid FROM target)))
         AND c.relkind IN ('r', 'p')`,
      [table.schema, table.name],
    );
    for (const row of rows) {
      if (row.identity === 'f') continue;
      await client.query(`ALTER TABLE ${qualifiedName(row.schema, row.name)} REPLICA IDENTITY FULL`);
      logger.info(
        { table: `${row.schema}.${row.name}`, previous: REPLICA_IDENTITY_NAMES[row.identity] ?? row.identity },
        'replica identity set to FULL (source.replica_identity_full)',
      );
    }
  }
}

const REPLICA_IDENTITY_NAMES: Record<string, string> = { d: 'DEFAULT', n: 'NOTHING', i: 'USING INDEX', f: 'FULL' };
