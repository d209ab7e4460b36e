/**
 * The `payload.columns` option: which columns of a row go into the envelope's `old`
 * and `new` objects.
 */
import type { RelationInfo } from '../source/messages.js';

export interface ColumnProjection {
  /** Flag per relation column, true when column i goes into the envelope. */
  readonly keep: readonly boolean[];
  /** Listed columns that the relation does not have. They are left out, and the caller can log them. */
  readonly missing: readonly string[];
}

/** Builds the projection of a relation onto the listed column names, matched exactly. */
export function projectColumns(relation: RelationInfo, columns: readonly string[]): ColumnProjection {
  const listed = new Set(columns);
  const keep = relation.columns.map((column) => listed.has(column.name));
  const present = new Set(relation.columns.map((column) => column.name));
  const missing = columns.filter((name) => !present.has(name));
  return { keep, missing };
}
