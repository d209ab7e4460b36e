/**
 * Evaluation of a trigger's `where:` condition against one row.
 *
 * Rules:
 * - A comparison with a NULL column value is false, and only `_is_null` matches NULL.
 *   `_not` inverts that false, so `_not: { status: { _eq: x } }` matches NULL rows
 *   (SQL's NOT would leave them out).
 * - A column whose value the row does not contain is unknown: a non-key column of a
 *   key-only old row, an unchanged TOASTed value, or a column the table lacks. Unknown
 *   follows three-valued logic (false AND unknown is false, true OR unknown is true).
 *   When the whole condition is unknown, the row does not match and the result carries
 *   the reason, so the caller can log it.
 * - An operand that does not fit the column type, such as `_gt: abc` on an integer
 *   column, is unknown in the same way.
 */
import { type ColumnValue, UNCHANGED_TOAST } from '../source/messages.js';
import { type BaseTypeLookup, comparatorFor, type ValueComparator } from './column-values.js';
import { compileLikePattern, InvalidLikePatternError, matchesLike } from './like.js';
import type { ComparisonOperator, WhereCondition } from './where-condition.js';

export interface ConditionColumn {
  /** Column name exactly as PostgreSQL stores it. */
  readonly name: string;
  readonly typeOid: number;
  /** Part of the replica identity key. Only read for key-only rows. */
  readonly isKey?: boolean;
}

/** One row as `where` reads it. `RelationInfo.columns` and a decoded tuple fit directly. */
export interface ConditionRow {
  readonly columns: readonly ConditionColumn[];
  /** Text output per column, null for SQL NULL, or UNCHANGED_TOAST. */
  readonly values: readonly ColumnValue[];
  /**
   * True for an old row that carries only the replica identity key (REPLICA IDENTITY
   * DEFAULT or USING INDEX). Its other columns count as missing, not as NULL.
   */
  readonly keyOnly?: boolean;
}

export type WhereResult =
  | { readonly outcome: 'match' }
  | { readonly outcome: 'no-match' }
  | { readonly outcome: 'unknown'; readonly reason: string };

export interface WhereOptions {
  /** Resolves domains to their base type. Without it, domain columns compare as text. */
  readonly baseTypeOf?: BaseTypeLookup;
}

const enum Truth {
  False = 0,
  True = 1,
  Unknown = 2,
}

/** Keeps the first reason for an unknown result while a row is evaluated. */
interface Evaluation {
  reason: string | undefined;
}

type BoundCondition = (row: ConditionRow, evaluation: Evaluation) => Truth;

const MATCH: WhereResult = { outcome: 'match' };
const NO_MATCH: WhereResult = { outcome: 'no-match' };

/** A `where` condition ready to evaluate. Binding to a column list happens once per list. */
export class CompiledWhere {
  readonly condition: WhereCondition;
  readonly #options: WhereOptions;
  readonly #bound = new WeakMap<readonly ConditionColumn[], BoundCondition>();

  constructor(condition: WhereCondition, options: WhereOptions = {}) {
    this.condition = condition;
    this.#options = options;
  }

  /**
   * Evaluates the condition. The bound form is cached by the identity of
   * `row.columns`, so pass the same array for rows of the same relation.
   */
  evaluate(row: ConditionRow): WhereResult {
    let bound = this.#bound.get(row.columns);
    if (bound === undefined) {
      bound = bindCondition(this.condition, row.columns, this.#options, []);
      this.#bound.set(row.columns, bound);
    }
    const evaluation: Evaluation = { reason: undefined };
    switch (bound(row, evaluation)) {
      case Truth.True:
        return MATCH;
      case Truth.False:
        return NO_MATCH;
      case Truth.Unknown:
        return { outcome: 'unknown', reason: evaluation.reason ?? 'the condition cannot be evaluated' };
    }
  }

  /**
   * Lists what makes the condition unknown for every row of a table with these
   * columns: columns the table lacks and operands that do not fit a column's type.
   * `validate --connect` reports them.
   */
  checkColumns(columns: readonly ConditionColumn[]): string[] {
    const problems: string[] = [];
    bindCondition(this.condition, columns, this.#options, problems);
    return problems;
  }
}

export function compileWhere(condition: WhereCondition, options: WhereOptions = {}): CompiledWhere {
  return new CompiledWhere(condition, options);
}

function bindCondition(
  condition: WhereCondition,
  columns: readonly ConditionColumn[],
  options: WhereOptions,
  problems: string[],
): BoundCondition {
  switch (condition.type) {
    case 'and':
      return bindAnd(condition.conditions.map((child) => bindCondition(child, columns, options, problems)));
    case 'or':
      return bindOr(condition.conditions.map((child) => bindCondition(child, columns, options, problems)));
    case 'not': {
      const child = bindCondition(condition.condition, columns, options, problems);
      return (row, evaluation) => {
        const truth = child(row, evaluation);
        if (truth === Truth.Unknown) {
          return Truth.Unknown;
        }
        return truth === Truth.True ? Truth.False : Truth.True;
      };
    }
    default:
      return bindColumnCondition(condition, columns, options, problems);
  }
}

/**
 * A decided AND or OR drops the reasons its unknown children recorded, so that the
 * reason of an unknown result names a part that made it unknown.
 */
function bindAnd(children: readonly BoundCondition[]): BoundCondition {
  return (row, evaluation) => {
    const reasonBefore = evaluation.reason;
    let result = Truth.True;
    for (const child of children) {
      const truth = child(row, evaluation);
      if (truth === Truth.False) {
        evaluation.reason = reasonBefore;
        return Truth.False;
      }
      if (truth === Truth.Unknown) {
        result = Truth.Unknown;
      }
    }
    return result;
  };
}

function bindOr(children: readonly BoundCondition[]): BoundCondition {
  return (row, evaluation) => {
    const reasonBefore = evaluation.reason;
    let result = Truth.False;
    for (const child of children) {
      const truth = child(row, evaluation);
      if (truth === Truth.True) {
        evaluation.reason = reasonBefore;
        return Truth.True;
      }
      if (truth === Truth.Unknown) {
        result = Truth.Unknown;
      }
    }
    return result;
  };
}

type ColumnCondition = Extract<WhereCondition, { readonly column: string }>;

function bindColumnCondition(
  condition: ColumnCondition,
  columns: readonly ConditionColumn[],
  options: WhereOptions,
  problems: string[],
): BoundCondition {
  const index = columns.findIndex((column) => column.name === condition.column);
  const column = columns[index];
  if (column === undefined) {
    return alwaysUnknown(`column "${condition.column}" is not in the table`, problems);
  }
  const comparator = comparatorFor(column.typeOid, options.baseTypeOf);

  switch (condition.type) {
    case 'compare':
      return bindComparison(condition, index, comparator, problems);
    case 'in':
      return bindIn(condition, index, comparator, problems);
    case 'isNull':
      return (row, evaluation) => {
        if (row.values[index] === UNCHANGED_TOAST) {
          // PostgreSQL only omits stored values, and a stored TOASTed value is never NULL.
          return condition.isNull ? Truth.False : Truth.True;
        }
        const value = presentValue(row, index);
        if (value === undefined) {
          return unknown(evaluation, describeMissing(row, index, condition.column));
        }
        return (value === null) === condition.isNull ? Truth.True : Truth.False;
      };
    case 'like':
      return bindLike(condition, index, comparator, problems);
  }
}

function bindComparison(
  condition: Extract<WhereCondition, { type: 'compare' }>,
  index: number,
  comparator: ValueComparator<unknown>,
  problems: string[],
): BoundCondition {
  const operand = comparator.readOperand(condition.operand);
  if (!operand.ok) {
    return alwaysUnknown(describeOperandProblem(condition.operator, condition.column, operand.message), problems);
  }
  const test = ORDER_TESTS[condition.operator];
  return (row, evaluation) => {
    const value = readComparable(row, index, condition.column, comparator, evaluation);
    if (value === NULL_VALUE || value === MISSING_VALUE) {
      return value === NULL_VALUE ? Truth.False : Truth.Unknown;
    }
    return test(comparator.compare(value, operand.value)) ? Truth.True : Truth.False;
  };
}

function bindIn(
  condition: Extract<WhereCondition, { type: 'in' }>,
  index: number,
  comparator: ValueComparator<unknown>,
  problems: string[],
): BoundCondition {
  const operator = condition.negated ? '_nin' : '_in';
  const operands: unknown[] = [];
  for (const operand of condition.operands) {
    const result = comparator.readOperand(operand);
    if (!result.ok) {
      return alwaysUnknown(describeOperandProblem(operator, condition.column, result.message), problems);
    }
    operands.push(result.value);
  }
  return (row, evaluation) => {
    const value = readComparable(row, index, condition.column, comparator, evaluation);
    if (value === NULL_VALUE || value === MISSING_VALUE) {
      return value === NULL_VALUE ? Truth.False : Truth.Unknown;
    }
    const found = operands.some((operand) => comparator.compare(value, operand) === 0);
    return found !== condition.negated ? Truth.True : Truth.False;
  };
}

function bindLike(
  condition: Extract<WhereCondition, { type: 'like' }>,
  index: number,
  comparator: ValueComparator<unknown>,
  problems: string[],
): BoundCondition {
  const operator = condition.caseInsensitive ? '_ilike' : '_like';
  let pattern;
  try {
    pattern = compileLikePattern(condition.pattern, condition.caseInsensitive);
  } catch (error) {
    if (!(error instanceof InvalidLikePatternError)) {
      throw error;
    }
    return alwaysUnknown(describeOperandProblem(operator, condition.column, error.message), problems);
  }
  return (row, evaluation) => {
    const value = presentValue(row, index);
    if (value === undefined) {
      return unknown(evaluation, describeMissing(row, index, condition.column));
    }
    if (value === null) {
      return Truth.False;
    }
    return matchesLike(pattern, comparator.likeText(value)) ? Truth.True : Truth.False;
  };
}

const ORDER_TESTS: Readonly<Record<ComparisonOperator, (order: number) => boolean>> = {
  _eq: (order) => order === 0,
  _neq: (order) => order !== 0,
  _gt: (order) => order > 0,
  _gte: (order) => order >= 0,
  _lt: (order) => order < 0,
  _lte: (order) => order <= 0,
};

const NULL_VALUE: unique symbol = Symbol('NULL');
const MISSING_VALUE: unique symbol = Symbol('missing');

/** Returns the parsed value, NULL_VALUE, or MISSING_VALUE after recording why it is unknown. */
function readComparable(
  row: ConditionRow,
  index: number,
  columnName: string,
  comparator: ValueComparator<unknown>,
  evaluation: Evaluation,
): unknown {
  const value = presentValue(row, index);
  if (value === undefined) {
    unknown(evaluation, describeMissing(row, index, columnName));
    return MISSING_VALUE;
  }
  if (value === null) {
    return NULL_VALUE;
  }
  const parsed = comparator.readValue(value);
  if (parsed === undefined) {
    // The message leaves out the value, because row data must not reach the log.
    unknown(evaluation, `the value of column "${columnName}" is not a valid ${comparator.typeName}`);
    return MISSING_VALUE;
  }
  return parsed;
}

/** Returns the column's text or null, or undefined when the row does not contain the value. */
function presentValue(row: ConditionRow, index: number): string | null | undefined {
  const value = row.values[index];
  if (value === undefined || value === UNCHANGED_TOAST) {
    return undefined;
  }
  if (row.keyOnly === true && row.columns[index]?.isKey !== true) {
    return undefined;
  }
  return value;
}

function describeMissing(row: ConditionRow, index: number, columnName: string): string {
  const value = row.values[index];
  if (value === UNCHANGED_TOAST) {
    return (
      `column "${columnName}" is an unchanged TOASTed value, which PostgreSQL does not send; ` +
      'with REPLICA IDENTITY FULL walhook takes it from the old row'
    );
  }
  if (row.keyOnly === true) {
    return (
      `column "${columnName}" is not in the old row, which contains only the replica identity key; ` +
      'set REPLICA IDENTITY FULL on the table to receive whole old rows'
    );
  }
  return `column "${columnName}" is missing from the row`;
}

function describeOperandProblem(operator: string, columnName: string, message: string): string {
  return `${operator} on column "${columnName}": ${message}`;
}

function unknown(evaluation: Evaluation, reason: string): Truth {
  evaluation.reason ??= reason;
  return Truth.Unknown;
}

function alwaysUnknown(reason: string, problems: string[]): BoundCondition {
  problems.push(reason);
  return (_row, evaluation) => unknown(evaluation, reason);
}

