/**
 * Read-only database checks behind `walhook validate --connect`. Each finding is an
 * error (start would fail) or a note (start works, but the operator should know).
 */
import type pg from 'pg';
import type { SourceConfig, TableName, TriggerConfig } from '../config/types.js';
import { checkTriggerFilters } from './filter-check.js';
import { openClient } from './setup.js';

export interface Finding {
  readonly level: 'error' | 'note';
  readonly message: string;
}

/** `triggers` adds the checks of their filter settings (filter-check.ts). */
export async function checkDatabase(
  config: SourceConfig,
  tables: readonly TableName[],
  triggers: readonly TriggerConfig[] = [],
): Promise<Finding[]> {
  const client = openClient(config.connection);
  try {
    await client.connect();
  } catch (err) {
    return [{ level: 'error', message: `cannot connect to source.connection: ${(err as Error).message}` }];
  }
  try {
    const findings: Finding[] = [];
    await checkWalLevel(client, findings);
    await checkPluginAllowed(client, config, findings);
    await checkRole(client, findings);
    await checkTables(client, tables, findings);
    await checkTriggerFilters(client, triggers, findings);
    await checkPublication(client, config, tables, findings);
    await checkSlot(client, config, findings);
    return findings;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkWalLevel(client: pg.Client, findings: Finding[]): Promise<void> {
  const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
  const level = rows[0]?.wal_level;
  if (level !== 'logical') {
    findings.push({
      level: 'error',
      message: `wal_level is '${level}': run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL`,
    });
  }
}

/**
 * Adds an error when the server lists the output plugins that replication may use
 * (`output_plugin_libraries`, PostgreSQL 15 since 15.19) and `source.plugin` is not
 * among them. Servers without the parameter accept any installed plugin.
 */
async function checkPluginAllowed(client: pg.Client, config: SourceConfig, findings: Finding[]): Promise<void> {
  const { rows } = await client.query<{ setting: string }>(
    "SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'",
  );
  const setting = rows[0]?.setting;
  if (setting === undefined) return;
  const allowed = setting.split(',').map((name) => name.trim());
  if (allowed.includes(config.plugin)) return;
  findings.push({
    level: 'error',
    message:
      `output_plugin_libraries ('${setting}') does not allow source.plugin '${config.plugin}': as a superuser run ` +
      `ALTER SYSTEM SET output_plugin_libraries = '${[...allowed.filter((name) => name !== ''), config.plugin].join(', ')}' ` +
      'and SELECT pg_reload_conf(), or set source.plugin: pgoutput',
  });
}

async function checkRole(client: pg.Client, findings: Finding[]): Promise<void> {
  const { rows } = await client.query<{ rolname: string; rolreplication: boolean; rolsuper: boolean }>(
    'SELECT rolname, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user',
  );
  const role = rows[0];
  if (role !== undefined && !role.rolreplication && !role.rolsuper) {
    findings.push({
      level: 'error',
      message: `role '${role.rolname}' lacks the REPLICATION attribute: run ALTER ROLE "${role.rolname}" REPLICATION;`,
    });
  }
}

interface TableRow {
  relkind: string;
  relreplident: string;
  has_primary_key: boolean;
  can_select: boolean;
}

/**
 * Adds an error for each table that is missing, is no table, cannot be read or has no
 * key for updates and deletes, and a note for each table whose old rows carry only the key.
 */
export async function checkTables(client: pg.Client, tables: readonly TableName[], findings: Finding[]): Promise<void> {
  for (const table of tables) {
    const label = `${table.schema}.${table.name}`;
    const { rows } = await client.query<TableRow>(
      `SELECT c.relkind, c.relreplident,
              EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_primary_key,
              has_table_privilege(c.oid, 'SELECT') AS can_select
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2`,
      [table.schema, table.name],
    );
    const row = rows[0];
    if (row === undefined) {
      findings.push({ level: 'error', message: `table ${label} not found; create it or fix the trigger's table` });
      continue;
    }
    if (row.relkind !== 'r' && row.relkind !== 'p') {
      findings.push({ level: 'error', message: `${label} is not a table (relkind '${row.relkind}')` });
      continue;
    }
    if (!row.can_select) {
      findings.push({ level: 'error', message: `current role cannot SELECT from ${label}: GRANT SELECT ON it` });
    }
    const identity = row.relreplident;
    if (identity === 'n' || (identity === 'd' && !row.has_primary_key)) {
      findings.push({
        level: 'error',
        message:
          `table ${label} has no primary key or replica identity, so PostgreSQL rejects its updates and ` +
          `deletes once published: add a primary key or run ALTER TABLE ${label} REPLICA IDENTITY FULL`,
      });
    } else if (identity !== 'f') {
      findings.push({
        level: 'note',
        message: `table ${label}: updates and deletes carry only the key as old row (REPLICA IDENTITY ${
          identity === 'i' ? 'USING INDEX' : 'DEFAULT'
        }); ALTER TABLE ${label} REPLICA IDENTITY FULL sends whole old rows`,
      });
    }
  }
}

async function checkPublication(
  client: pg.Client,
  config: SourceConfig,
  tables: readonly TableName[],
  findings: Finding[],
): Promise<void> {
  const { rows } = await client.query<{ puballtables: boolean }>(
    'SELECT puballtables FROM pg_publication WHERE pubname = $1',
    [config.publication],
  );
  const publication = rows[0];
  if (publication === undefined) {
    const { rows: privileges } = await client.query<{ can_create: boolean }>(
      "SELECT has_database_privilege(current_database(), 'CREATE') AS can_create",
    );
    findings.push({
      level: privileges[0]?.can_create === false ? 'error' : 'note',
      message:
        `publication '${config.publication}' does not exist; walhook creates it at start` +
        (privileges[0]?.can_create === false ? ', but the current role lacks CREATE on the database' : ''),
    });
    return;
  }
  if (publication.puballtables) return;
  const published = await client.query<{ schemaname: string; tablename: string }>(
    'SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1',
    [config.publication],
  );
  const have = new Set(published.rows.map((r) => `${r.schemaname}.${r.tablename}`));
  for (const table of tables) {
    const label = `${table.schema}.${table.name}`;
    if (!have.has(label)) {
      findings.push({
        level: 'note',
        message: `table ${label} is not in publication '${config.publication}'; walhook adds it at start, and its earlier changes are not delivered`,
      });
    }
  }
}

async function checkSlot(client: pg.Client, config: SourceConfig, findings: Finding[]): Promise<void> {
  const { rows } = await client.query<{ plugin: string | null; wal_status: string | null; active: boolean }>(
    'SELECT plugin, wal_status, active FROM pg_replication_slots WHERE slot_name = $1',
    [config.slot],
  );
  const slot = rows[0];
  if (slot === undefined) {
    findings.push({ level: 'note', message: `replication slot '${config.slot}' does not exist; walhook creates it at start` });
    return;
  }
  if (slot.plugin !== config.plugin) {
    findings.push({
      level: 'error',
      message: `replication slot '${config.slot}' uses plugin '${slot.plugin}' but source.plugin is '${config.plugin}'`,
    });
  }
  if (slot.wal_status === 'lost') {
    findings.push({
      level: 'error',
      message: `replication slot '${config.slot}' is lost; changes since its confirmed position cannot be recovered`,
    });
  }
  if (slot.active) {
    findings.push({ level: 'note', message: `replication slot '${config.slot}' is in use by another connection` });
  }
}
