/**
 * START_REPLICATION options for wal2json, and the catalog query whose rows seed the
 * wal2json decoder with the shapes of the streamed tables.
 */
import type { TableName } from '../config/types.js';
import type { RelationColumn, RelationInfo, ReplicaIdentity } from './messages.js';
import { quoteIdentifier, quoteLiteral } from './sql.js';

/**
 * Escapes one schema or table name for wal2json's `add-tables` option. wal2json 2.5
 * splits the option at unescaped commas and whitespace, splits each entry at its first
 * unescaped dot, reads `*` as "every schema" or "every table", and drops a backslash
 * while keeping the character after it. Escaping every ASCII character other than
 * letters, digits and `_` covers all of these. Other characters stay as they are,
 * because a backslash inside a multibyte UTF-8 sequence would make the command text
 * invalid UTF-8, and no byte of such a sequence is a separator.
 */
export function escapeAddTablesName(name: string): string {
  return name.replace(/[\u0000-\u007f]/g, (char) => (/[A-Za-z0-9_]/.test(char) ? char : `\\${char}`));
}

/** Returns the `add-tables` value that limits wal2json to `tables`. */
export function addTablesOption(tables: readonly TableName[]): string {
  return tables.map((t) => `${escapeAddTablesName(t.schema)}.${escapeAddTablesName(t.name)}`).join(',');
}

/**
 * Returns the option list of START_REPLICATION for wal2json 2.5, format version 2.
 * Unchanged TOAST values are always left out in that format: 2.5 rejects the
 * deprecated `include-unchanged-toast` option.
 */
export function wal2jsonStartOptions(tables: readonly TableName[]): string {
  const options: [string, string][] = [
    ['format-version', '2'],
    ['include-transaction', '1'],
    ['include-xids', '1'],
    ['include-timestamp', '1'],
    ['include-lsn', '1'],
    ['include-type-oids', '1'],
    // The decoder uses only the OIDs, so type names would only add catalog lookups and bytes.
    ['include-types', '0'],
    ['include-pk', '1'],
    ['actions', 'insert,update,delete,truncate'],
    ['add-tables', addTablesOption(tables)],
  ];
  return options.map(([name, value]) => `${quoteIdentifier(name)} ${quoteLiteral(value)}`).join(', ');
}

/** One row of tableShapesQuery(). */
export interface ShapeRow {
  oid: string;
  schema: string;
  name: string;
  identity: string;
  column: string;
  type_oid: string;
  type_mod: number;
  is_key: boolean;
}

const REPLICA_IDENTITIES: Record<string, ReplicaIdentity> = {
  d: 'default',
  n: 'nothing',
  f: 'full',
  i: 'index',
};

/**
 * Returns the SQL that reads the columns of `tables`. It runs on the replication
 * connection, which accepts only the simple query protocol, so the names are
 * literals. `is_key` marks the replica identity index columns, or the primary key
 * columns where the identity has no index (FULL, NOTHING).
 */
export function tableShapesQuery(tables: readonly TableName[]): string {
  const wanted = tables.map((t) => `(${quoteLiteral(t.schema)}, ${quoteLiteral(t.name)})`).join(', ');
  return `SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, c.relreplident::text AS identity,
       a.attname AS column, a.atttypid::text AS type_oid, a.atttypmod AS type_mod,
       coalesce(a.attnum = ANY (i.indkey::int2[]), false) AS is_key
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_index i ON i.indrelid = c.oid
       AND CASE WHEN c.relreplident = 'i' THEN i.indisreplident ELSE i.indisprimary END
 WHERE (n.nspname, c.relname) IN (VALUES ${wanted})
 ORDER BY c.oid, a.attnum`;
}

/** Groups the rows of tableShapesQuery() into one RelationInfo per table. */
export function tableShapesFromRows(rows: readonly ShapeRow[]): RelationInfo[] {
  const byOid = new Map<string, { info: Omit<RelationInfo, 'columns'>; columns: RelationColumn[] }>();
  for (const row of rows) {
    let entry = byOid.get(row.oid);
    if (entry === undefined) {
      const replicaIdentity = REPLICA_IDENTITIES[row.identity];
      if (replicaIdentity === undefined) throw new RangeError(`unknown relreplident '${row.identity}'`);
      entry = {
        info: { oid: Number(row.oid), schema: row.schema, name: row.name, replicaIdentity },
        columns: [],
      };
      byOid.set(row.oid, entry);
    }
    entry.columns.push({ name: row.column, typeOid: Number(row.type_oid), typeMod: row.type_mod, isKey: row.is_key });
  }
  return [...byOid.values()].map(({ info, columns }) => ({ ...info, columns }));
}
