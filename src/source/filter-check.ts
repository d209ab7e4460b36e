/**
 * Database checks for the trigger filters: `columns` needs REPLICA IDENTITY FULL, and
 * the column names in `columns`, `where` and `payload.columns` should exist in the
 * table. `walhook validate --connect` reports all of them, and start rejects a missing
 * REPLICA IDENTITY FULL.
 */
import type pg from 'pg';

import { formatTableName } from '../config/identifier.js';
import type { TableName, TriggerConfig } from '../config/types.js';
import { SourceStateError } from '../core/errors.js';
import { replicaIdentityFullStatement, requiresFullIdentity } from '../filters/changed-columns.js';
import { compileWhere, type ConditionColumn } from '../filters/where.js';
import type { Finding } from './check.js';

/** The values of pg_class.relreplident, as ALTER TABLE names them. */
const REPLICA_IDENTITY_NAMES: Readonly<Record<string, string>> = {
  d: 'DEFAULT',
  n: 'NOTHING',
  f: 'FULL',
  i: 'USING INDEX',
};

/** Nesting of domains that the column query follows to the base type. */
const MAX_DOMAIN_DEPTH = 32;

interface TableIdentity {
  readonly table: TableName;
  /** The REPLICA IDENTITY setting, or undefined when the table does not exist. */
  readonly identity: string | undefined;
}

/**
 * Throws SourceStateError when a trigger with `columns` is on a table without REPLICA
 * IDENTITY FULL. The message lists the ALTER TABLE statement for each such table.
 * Tables that do not exist are skipped, because the table check reports them.
 */
export async function requireFullIdentity(client: pg.Client, triggers: readonly TriggerConfig[]): Promise<void> {
  const lacking = (await readIdentities(client, triggers)).filter(
    (entry) => entry.identity !== undefined && entry.identity !== 'f',
  );
  if (lacking.length === 0) {
    return;
  }
  const details = lacking.map(
    (entry) =>
      `table ${formatTableName(entry.table)} has REPLICA IDENTITY ${describeIdentity(entry.identity)}; run ` +
      replicaIdentityFullStatement(entry.table),
  );
  throw new SourceStateError(
    'WALHOOK_REPLICA_IDENTITY_NOT_FULL',
    `triggers with 'columns' need whole old rows, which PostgreSQL sends only for tables with REPLICA IDENTITY FULL: ${details.join('; ')}`,
  );
}

/** Adds findings for the filter settings of every trigger: errors that start would raise, and notes. */
export async function checkTriggerFilters(
  client: pg.Client,
  triggers: readonly TriggerConfig[],
  findings: Finding[],
): Promise<void> {
  for (const entry of await readIdentities(client, triggers)) {
    if (entry.identity === undefined || entry.identity === 'f') {
      continue;
    }
    const names = triggers
      .filter((trigger) => requiresFullIdentity(trigger) && sameTable(trigger.table, entry.table))
      .map((trigger) => `'${trigger.name}'`)
      .join(', ');
    findings.push({
      level: 'error',
      message:
        `trigger ${names} filters updates by 'columns', which needs whole old rows, but table ` +
        `${formatTableName(entry.table)} has REPLICA IDENTITY ${describeIdentity(entry.identity)}: run ` +
        replicaIdentityFullStatement(entry.table),
    });
  }

  for (const trigger of triggers) {
    if (trigger.columns === undefined && trigger.where === undefined && trigger.payload === undefined) {
      continue;
    }
    const columns = await readColumns(client, trigger.table);
    if (columns.length === 0) {
      continue;
    }
    for (const problem of describeColumnProblems(trigger, columns)) {
      findings.push({
        level: 'note',
        message: `trigger '${trigger.name}' on table ${formatTableName(trigger.table)}: ${problem}`,
      });
    }
  }
}

/** Lists the filter settings that do not fit the table's columns. */
export function describeColumnProblems(trigger: TriggerConfig, columns: readonly ConditionColumn[]): string[] {
  const present = new Set(columns.map((column) => column.name));
  const problems: string[] = [];
  const absent = (names: readonly string[]): string[] => names.filter((name) => !present.has(name));

  const absentWatched = absent(trigger.columns ?? []);
  if (absentWatched.length > 0) {
    problems.push(`columns: ${listNames(absentWatched)} not in the table, so changes to them are never seen`);
  }
  if (trigger.where !== undefined) {
    for (const problem of compileWhere(trigger.where).checkColumns(columns)) {
      problems.push(`where: ${problem}; the condition is unknown for every row, so those rows are skipped`);
    }
  }
  const absentPayload = absent(trigger.payload?.columns ?? []);
  if (absentPayload.length > 0) {
    problems.push(`payload.columns: ${listNames(absentPayload)} not in the table, so events leave them out`);
  }
  return problems;
}

async function readIdentities(client: pg.Client, triggers: readonly TriggerConfig[]): Promise<TableIdentity[]> {
  const tables: TableName[] = [];
  for (const trigger of triggers) {
    if (requiresFullIdentity(trigger) && !tables.some((table) => sameTable(table, trigger.table))) {
      tables.push(trigger.table);
    }
  }

  const identities: TableIdentity[] = [];
  for (const table of tables) {
    const { rows } = await client.query<{ relreplident: string }>(
      `SELECT c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2`,
      [table.schema, table.name],
    );
    identities.push({ table, identity: rows[0]?.relreplident });
  }
  return identities;
}

/** Reads the table's columns with domains resolved to their base type, in column order. */
async function readColumns(client: pg.Client, table: TableName): Promise<ConditionColumn[]> {
  const { rows } = await client.query<{ name: string; base_type_oid: number }>(
    `WITH RECURSIVE columns AS (
       SELECT a.attnum, a.attname, a.atttypid
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
     ), resolved(attnum, type_oid, depth) AS (
       SELECT attnum, atttypid, 0 FROM columns
       UNION ALL
       SELECT r.attnum, t.typbasetype, r.depth + 1
       FROM resolved r JOIN pg_type t ON t.oid = r.type_oid
       WHERE t.typtype = 'd' AND r.depth < $3
     )
     SELECT c.attname AS name,
            (SELECT r.type_oid FROM resolved r WHERE r.attnum = c.attnum ORDER BY r.depth DESC LIMIT 1)::int8 AS base_type_oid
     FROM columns c ORDER BY c.attnum`,
    [table.schema, table.name, MAX_DOMAIN_DEPTH],
  );
  return rows.map((row) => ({ name: row.name, typeOid: Number(row.base_type_oid) }));
}

function describeIdentity(identity: string | undefined): string {
  return REPLICA_IDENTITY_NAMES[identity ?? ''] ?? `'${identity}'`;
}

function sameTable(a: TableName, b: TableName): boolean {
  return a.schema === b.schema && a.name === b.name;
}

function listNames(names: readonly string[]): string {
  const list = names.map((name) => `"${name}"`).join(', ');
  return `${list} ${names.length === 1 ? 'is' : 'are'}`;
}
