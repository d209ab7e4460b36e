/**
 * Applies one trigger's `columns`, `where`, `payload` and `transform` settings to row
 * changes. The pipeline builds one TriggerFilter per trigger at start.
 *
 * Rules that need data the change may lack:
 * - `where` on a row without a column it reads (a key-only old row, an unchanged
 *   TOASTed value): the change is skipped, because delivering rows the condition may
 *   exclude could leak them to a receiver that must not see them.
 * - `columns` on an update without a whole old row: the change is delivered, because
 *   a missed change is worse than an extra one for receivers that must handle
 *   duplicates anyway.
 * Each rule logs a warning once per trigger and reason. Truncates pass both filters.
 */
import type { Logger } from 'pino';

import { formatTableName } from '../config/identifier.js';
import type { TriggerConfig } from '../config/types.js';
import type { RowChange } from '../pipeline/change.js';
import { type ColumnValue, type RelationInfo, UNCHANGED_TOAST } from '../source/messages.js';
import { changedColumns, replicaIdentityFullStatement } from './changed-columns.js';
import type { BaseTypeLookup } from './column-values.js';
import { type ColumnProjection, projectColumns } from './projection.js';
import { BodyTransform } from './transform.js';
import { type CompiledWhere, compileWhere, type ConditionRow } from './where.js';

export interface TriggerFilterOptions {
  readonly logger: Logger;
  /** Resolves domain types to their base type, so that `where` compares them by it. */
  readonly baseTypeOf?: BaseTypeLookup;
}

export class TriggerFilter {
  readonly trigger: TriggerConfig;
  /** The compiled `transform.body`, or null to send the envelope unchanged. */
  readonly bodyTransform: BodyTransform | null;
  readonly #logger: Logger;
  readonly #where: CompiledWhere | null;
  readonly #watchedColumns: ReadonlySet<string> | null;
  readonly #projections = new WeakMap<RelationInfo, ColumnProjection>();
  readonly #checkedRelations = new WeakSet<RelationInfo>();
  readonly #loggedReasons = new Set<string>();

  /** Compiles the trigger's settings. They were checked when the configuration loaded, so this does not fail. */
  constructor(trigger: TriggerConfig, options: TriggerFilterOptions) {
    this.trigger = trigger;
    this.#logger = options.logger;
    this.#where = trigger.where === undefined ? null : compileWhere(trigger.where, { baseTypeOf: options.baseTypeOf });
    this.#watchedColumns = trigger.columns === undefined ? null : new Set(trigger.columns);
    this.bodyTransform = trigger.transform === undefined ? null : new BodyTransform(trigger.transform.body);
  }

  /**
   * Checks whether the change passes `columns` and `where`. When the data cannot
   * decide, it applies the rules in the file header and logs a warning once per
   * reason. Call it after the router matched table and operation, and before
   * building the envelope.
   */
  accepts(change: RowChange): boolean {
    if (change.op === 'TRUNCATE') {
      return true;
    }
    if (change.op === 'UPDATE' && !this.#watchedColumnChanged(change)) {
      return false;
    }
    if (this.#where === null) {
      return true;
    }
    const result = this.#where.evaluate(conditionRowOf(change));
    if (result.outcome === 'unknown') {
      this.#warnOnce(
        change.relation,
        `where: ${result.reason}`,
        'event skipped because its where condition cannot be evaluated; this reason is logged once per trigger',
      );
      return false;
    }
    return result.outcome === 'match';
  }

  /**
   * Returns which columns go into the envelope's `old` and `new`, or null when the
   * trigger has no `payload.columns` and every column goes. Cached per relation.
   */
  projection(relation: RelationInfo): ColumnProjection | null {
    if (this.trigger.payload === undefined) {
      return null;
    }
    let projection = this.#projections.get(relation);
    if (projection === undefined) {
      projection = projectColumns(relation, this.trigger.payload.columns);
      this.#projections.set(relation, projection);
      if (projection.missing.length > 0) {
        this.#warnOnce(
          relation,
          `payload.columns: ${describeAbsentColumns(projection.missing)}`,
          'payload.columns names columns the table does not have; events leave them out',
        );
      }
    }
    return projection;
  }

  #watchedColumnChanged(change: Extract<RowChange, { op: 'UPDATE' }>): boolean {
    const watched = this.#watchedColumns;
    if (watched === null) {
      return true;
    }
    this.#checkWatchedColumnsExist(change.relation, watched);
    if (change.oldKind !== 'full' || change.oldTuple === null) {
      this.#warnOnce(
        change.relation,
        `columns: the update carries no whole old row; run ${replicaIdentityFullStatement(change.relation)}`,
        'update delivered without the columns check, because the old row is not whole; this reason is logged once per trigger',
      );
      return true;
    }
    return changedColumns(change.relation, change.oldTuple, change.newTuple).some((name) => watched.has(name));
  }

  #checkWatchedColumnsExist(relation: RelationInfo, watched: ReadonlySet<string>): void {
    if (this.#checkedRelations.has(relation)) {
      return;
    }
    this.#checkedRelations.add(relation);
    const present = new Set(relation.columns.map((column) => column.name));
    const missing = [...watched].filter((name) => !present.has(name));
    if (missing.length > 0) {
      this.#warnOnce(
        relation,
        `columns: ${describeAbsentColumns(missing)}`,
        'columns names columns the table does not have; they never count as changed',
      );
    }
  }

  #warnOnce(relation: RelationInfo, reason: string, message: string): void {
    if (this.#loggedReasons.has(reason)) {
      return;
    }
    this.#loggedReasons.add(reason);
    const table = formatTableName({ schema: relation.schema, name: relation.name });
    this.#logger.warn({ trigger: this.trigger.name, table, reason }, message);
  }
}

/**
 * Returns the row that `where` reads: `new` for inserts and updates, `old` for
 * deletes. An update's unchanged TOASTed value is taken from a whole old row when
 * there is one, because it is the same value. Throws for a truncate, which has no row.
 */
export function conditionRowOf(change: RowChange): ConditionRow {
  const columns = change.relation.columns;
  switch (change.op) {
    case 'INSERT':
      return { columns, values: change.newTuple };
    case 'UPDATE':
      return { columns, values: fillUnchangedToast(change.newTuple, change.oldKind === 'full' ? change.oldTuple : null) };
    case 'DELETE':
      return { columns, values: change.oldTuple, keyOnly: change.oldKind === 'key' };
    case 'TRUNCATE':
      throw new Error('a truncate has no row to evaluate');
  }
}

function fillUnchangedToast(
  newTuple: readonly ColumnValue[],
  fullOldTuple: readonly ColumnValue[] | null,
): readonly ColumnValue[] {
  if (fullOldTuple === null || !newTuple.includes(UNCHANGED_TOAST)) {
    return newTuple;
  }
  return newTuple.map((value, index) => {
    const oldValue = fullOldTuple[index];
    return value === UNCHANGED_TOAST && oldValue !== undefined ? oldValue : value;
  });
}

function describeAbsentColumns(names: readonly string[]): string {
  const list = names.map((name) => `"${name}"`).join(', ');
  return `${list} ${names.length === 1 ? 'is' : 'are'} not in the table`;
}
