/**
 * The `columns:` filter of update triggers: an update fires the trigger only when one
 * of the listed columns changed. Telling that needs the whole old row, which
 * PostgreSQL sends only for tables with REPLICA IDENTITY FULL.
 */
import { formatTableName } from '../config/identifier.js';
import type { TableName, TriggerConfig } from '../config/types.js';
import { type ColumnValue, type RelationInfo, UNCHANGED_TOAST } from '../source/messages.js';

/**
 * Returns the names of the columns whose value differs between the old and the new
 * row, in table order. Values compare as PostgreSQL text output, so numeric `1.0`
 * changed to `1.00` counts as a change, and so does whitespace inside a json value.
 * An UNCHANGED_TOAST marker in the new row means unchanged. One in the old row cannot
 * be compared and counts as a change. Only call it with a full old row.
 */
export function changedColumns(
  relation: RelationInfo,
  oldTuple: readonly ColumnValue[],
  newTuple: readonly ColumnValue[],
): string[] {
  const changed: string[] = [];
  relation.columns.forEach((column, index) => {
    if (isChanged(oldTuple[index], newTuple[index])) {
      changed.push(column.name);
    }
  });
  return changed;
}

function isChanged(oldValue: ColumnValue | undefined, newValue: ColumnValue | undefined): boolean {
  if (newValue === UNCHANGED_TOAST) {
    return false;
  }
  // undefined, a column beyond a tuple, also cannot be compared.
  if (oldValue === UNCHANGED_TOAST || oldValue === undefined || newValue === undefined) {
    return true;
  }
  return oldValue !== newValue;
}

/** Returns whether the trigger needs whole old rows, which its table has only with REPLICA IDENTITY FULL. */
export function requiresFullIdentity(trigger: Pick<TriggerConfig, 'columns'>): boolean {
  return trigger.columns !== undefined && trigger.columns.length > 0;
}

/** Returns the tables of triggers that need REPLICA IDENTITY FULL, each once, in configuration order. */
export function tablesRequiringFullIdentity(triggers: readonly TriggerConfig[]): TableName[] {
  const tables = new Map<string, TableName>();
  for (const trigger of triggers) {
    if (requiresFullIdentity(trigger)) {
      tables.set(`${trigger.table.schema}\u0000${trigger.table.name}`, trigger.table);
    }
  }
  return [...tables.values()];
}

/** Returns the statement that makes PostgreSQL send whole old rows for the table. */
export function replicaIdentityFullStatement(table: TableName): string {
  return `ALTER TABLE ${formatTableName(table)} REPLICA IDENTITY FULL;`;
}
