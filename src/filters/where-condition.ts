/**
 * The parsed form of a trigger's `where:` condition. The config loader builds it from
 * the YAML (src/config/where.ts) and where.ts evaluates it against rows. It is plain,
 * frozen data, so it can be compared in tests and written to logs.
 */

export const COMPARISON_OPERATORS = ['_eq', '_neq', '_gt', '_gte', '_lt', '_lte'] as const;

export type ComparisonOperator = (typeof COMPARISON_OPERATORS)[number];

/** Every operator a column can take, in the order the docs list them. */
export const COLUMN_OPERATORS = [
  ...COMPARISON_OPERATORS,
  '_in',
  '_nin',
  '_is_null',
  '_like',
  '_ilike',
] as const;

export type ColumnOperator = (typeof COLUMN_OPERATORS)[number];

export const LOGICAL_OPERATORS = ['_and', '_or', '_not'] as const;

/**
 * A value from the condition. `text` is the value as written in the file: numbers keep
 * their digits (`9007199254740993`, `1.10`), booleans are `true` or `false`. Each
 * column type converts it on first use.
 */
export interface WhereOperand {
  readonly kind: 'string' | 'number' | 'boolean';
  readonly text: string;
}

export type WhereCondition =
  | { readonly type: 'and'; readonly conditions: readonly WhereCondition[] }
  | { readonly type: 'or'; readonly conditions: readonly WhereCondition[] }
  | { readonly type: 'not'; readonly condition: WhereCondition }
  | {
      readonly type: 'compare';
      readonly column: string;
      readonly operator: ComparisonOperator;
      readonly operand: WhereOperand;
    }
  /** `_in` (negated false) or `_nin` (negated true). */
  | {
      readonly type: 'in';
      readonly column: string;
      readonly negated: boolean;
      readonly operands: readonly WhereOperand[];
    }
  | { readonly type: 'isNull'; readonly column: string; readonly isNull: boolean }
  /** `_like` or `_ilike`; the pattern is already checked to be valid. */
  | {
      readonly type: 'like';
      readonly column: string;
      readonly pattern: string;
      readonly caseInsensitive: boolean;
    };

/** Returns the column names the condition refers to, each once, in first-use order. */
export function conditionColumns(condition: WhereCondition): string[] {
  const names = new Set<string>();
  const visit = (node: WhereCondition): void => {
    switch (node.type) {
      case 'and':
      case 'or':
        node.conditions.forEach(visit);
        return;
      case 'not':
        visit(node.condition);
        return;
      default:
        names.add(node.column);
    }
  };
  visit(condition);
  return [...names];
}
