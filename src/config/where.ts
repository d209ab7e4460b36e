/**
 * Parsing of a trigger's `where:` condition from the configuration file into a
 * WhereCondition, in the style of Hasura's boolean expressions:
 *
 *   where: { _and: [ { status: { _eq: paid } }, { total: { _gt: 100 } } ] }
 *
 * `_and`, `_or` and `_not` combine conditions. Every other key is a column name,
 * matched exactly and case-sensitively, whose value maps operators to operands.
 * Several keys in one mapping, or several operators on one column, must all hold.
 */
import * as z from 'zod';

import { compileLikePattern, InvalidLikePatternError } from '../filters/like.js';
import {
  COLUMN_OPERATORS,
  type ColumnOperator,
  LOGICAL_OPERATORS,
  type WhereCondition,
  type WhereOperand,
} from '../filters/where-condition.js';
import { NumberLiteral } from './exact-numbers.js';
import { MAX_IDENTIFIER_BYTES } from './identifier.js';
import { describeType, type PathSegment, type Problem, suggestClosest } from './problems.js';

/** Maximum nesting of `_and`, `_or` and `_not`, which keeps evaluation off deep recursion. */
export const MAX_WHERE_DEPTH = 32;

export const whereSchema = z.unknown().transform((value, context): WhereCondition => {
  const problems: Problem[] = [];
  const condition = parseWhere(value, problems);
  for (const problem of problems) {
    context.addIssue({ code: 'custom', message: problem.message, path: [...problem.path] });
  }
  return problems.length > 0 ? z.NEVER : condition;
});

/**
 * Parses a `where:` value. Problems go to `problems` with paths relative to the value;
 * the returned condition is only meaningful when none were added.
 */
export function parseWhere(value: unknown, problems: Problem[]): WhereCondition {
  return parseCondition(value, [], 0, problems);
}

const TRUE_CONDITION: WhereCondition = { type: 'and', conditions: [] };

function parseCondition(value: unknown, path: readonly PathSegment[], depth: number, problems: Problem[]): WhereCondition {
  if (depth > MAX_WHERE_DEPTH) {
    problems.push({ path, message: `conditions nest more than ${MAX_WHERE_DEPTH} levels deep; simplify the condition` });
    return TRUE_CONDITION;
  }
  if (!isMapping(value)) {
    problems.push({
      path,
      message: `expected a mapping such as { status: { _eq: paid } }, got ${describeOperandType(value)}`,
    });
    return TRUE_CONDITION;
  }

  const conditions: WhereCondition[] = [];
  for (const [key, item] of Object.entries(value)) {
    const itemPath = [...path, key];
    if (key === '_and' || key === '_or') {
      conditions.push(parseConditionList(key, item, itemPath, depth, problems));
    } else if (key === '_not') {
      conditions.push({ type: 'not', condition: parseCondition(item, itemPath, depth + 1, problems) });
    } else {
      conditions.push(parseColumn(key, item, itemPath, problems));
    }
  }
  const [only] = conditions;
  return conditions.length === 1 && only !== undefined ? only : { type: 'and', conditions };
}

function parseConditionList(
  key: '_and' | '_or',
  value: unknown,
  path: readonly PathSegment[],
  depth: number,
  problems: Problem[],
): WhereCondition {
  const type = key === '_and' ? 'and' : 'or';
  if (!Array.isArray(value)) {
    problems.push({
      path,
      message: `expected a list of conditions, got ${describeOperandType(value)}; write ${key}: [ { a: { _eq: 1 } }, { b: { _eq: 2 } } ]`,
    });
    return { type, conditions: [] };
  }
  const conditions = value.map((item: unknown, index) => parseCondition(item, [...path, index], depth + 1, problems));
  return { type, conditions };
}

function parseColumn(column: string, value: unknown, path: readonly PathSegment[], problems: Problem[]): WhereCondition {
  const nameProblem = checkColumnName(column);
  if (nameProblem !== undefined) {
    problems.push({ path, message: nameProblem });
    return TRUE_CONDITION;
  }
  if ((COLUMN_OPERATORS as readonly string[]).includes(column)) {
    problems.push({
      path,
      message: `operator '${column}' must be inside a column, as in { status: { ${column}: ... } }`,
    });
    return TRUE_CONDITION;
  }
  const logicalSuggestion = column.startsWith('_') ? suggestClosest(column, LOGICAL_OPERATORS) : undefined;
  if (!isMapping(value) || Object.keys(value).length === 0) {
    problems.push({ path, message: describeMissingOperators(column, value, logicalSuggestion) });
    return TRUE_CONDITION;
  }
  const operatorNames = Object.keys(value);
  if (logicalSuggestion !== undefined && !operatorNames.every(isColumnOperator)) {
    problems.push({ path, message: `unknown operator '${column}'; did you mean '${logicalSuggestion}'?` });
    return TRUE_CONDITION;
  }

  const conditions: WhereCondition[] = [];
  for (const [operator, operand] of Object.entries(value)) {
    const condition = parseOperator(column, operator, operand, [...path, operator], problems);
    if (condition !== undefined) {
      conditions.push(condition);
    }
  }
  const [only] = conditions;
  return conditions.length === 1 && only !== undefined ? only : { type: 'and', conditions };
}

function describeMissingOperators(column: string, value: unknown, logicalSuggestion: string | undefined): string {
  if (logicalSuggestion !== undefined) {
    return `unknown operator '${column}'; did you mean '${logicalSuggestion}'?`;
  }
  if (isMapping(value)) {
    return `list at least one operator for column "${column}", such as { _eq: value }`;
  }
  return `expected a mapping of operators for column "${column}", such as { _eq: value }, got ${describeOperandType(value)}`;
}

function checkColumnName(column: string): string | undefined {
  if (column === '') {
    return 'a column name cannot be empty';
  }
  if (column.includes('\0')) {
    return 'a column name cannot contain the NUL character';
  }
  if (Buffer.byteLength(column, 'utf8') > MAX_IDENTIFIER_BYTES) {
    return `column name is longer than ${MAX_IDENTIFIER_BYTES} bytes, so no PostgreSQL column can have it`;
  }
  return undefined;
}

function parseOperator(
  column: string,
  operator: string,
  operand: unknown,
  path: readonly PathSegment[],
  problems: Problem[],
): WhereCondition | undefined {
  if (!isColumnOperator(operator)) {
    const suggestion = suggestClosest(operator, COLUMN_OPERATORS);
    const hint = suggestion === undefined ? `valid operators are ${COLUMN_OPERATORS.join(' ')}` : `did you mean '${suggestion}'?`;
    problems.push({ path, message: `unknown operator '${operator}'; ${hint}` });
    return undefined;
  }
  switch (operator) {
    case '_in':
    case '_nin':
      return parseIn(column, operator, operand, path, problems);
    case '_is_null':
      if (typeof operand !== 'boolean') {
        problems.push({ path, message: `expected true or false, got ${describeOperandType(operand)}` });
        return undefined;
      }
      return { type: 'isNull', column, isNull: operand };
    case '_like':
    case '_ilike':
      return parseLike(column, operator, operand, path, problems);
    default: {
      const parsed = parseOperand(operand, path, problems);
      return parsed === undefined ? undefined : { type: 'compare', column, operator, operand: parsed };
    }
  }
}

function parseIn(
  column: string,
  operator: '_in' | '_nin',
  operand: unknown,
  path: readonly PathSegment[],
  problems: Problem[],
): WhereCondition | undefined {
  if (!Array.isArray(operand)) {
    problems.push({
      path,
      message: `expected a list of values, got ${describeOperandType(operand)}; write ${operator}: [a, b]`,
    });
    return undefined;
  }
  const operands: WhereOperand[] = [];
  operand.forEach((item: unknown, index) => {
    const parsed = parseOperand(item, [...path, index], problems);
    if (parsed !== undefined) {
      operands.push(parsed);
    }
  });
  return { type: 'in', column, negated: operator === '_nin', operands };
}

function parseLike(
  column: string,
  operator: '_like' | '_ilike',
  operand: unknown,
  path: readonly PathSegment[],
  problems: Problem[],
): WhereCondition | undefined {
  if (typeof operand !== 'string') {
    problems.push({ path, message: `expected a pattern string such as 'order-%', got ${describeOperandType(operand)}` });
    return undefined;
  }
  const caseInsensitive = operator === '_ilike';
  try {
    compileLikePattern(operand, caseInsensitive);
  } catch (error) {
    if (!(error instanceof InvalidLikePatternError)) {
      throw error;
    }
    problems.push({ path, message: `invalid LIKE pattern: ${error.reason}` });
    return undefined;
  }
  return { type: 'like', column, pattern: operand, caseInsensitive };
}

/** 2^53, above which a double cannot represent every integer. */
const EXACT_INTEGER_LIMIT = 2 ** 53;

function parseOperand(value: unknown, path: readonly PathSegment[], problems: Problem[]): WhereOperand | undefined {
  if (typeof value === 'string') {
    return { kind: 'string', text: value };
  }
  if (typeof value === 'boolean') {
    return { kind: 'boolean', text: String(value) };
  }
  if (value instanceof NumberLiteral || typeof value === 'number') {
    const literal = value instanceof NumberLiteral ? value : new NumberLiteral(value, String(value), false);
    if (!literal.exact && Number.isFinite(literal.value) && Math.abs(literal.value) >= EXACT_INTEGER_LIMIT) {
      problems.push({
        path,
        message: `the number ${literal.text} may have lost digits when YAML read it; write it in quotes to keep every digit`,
      });
      return undefined;
    }
    return { kind: 'number', text: literal.text };
  }
  if (value === null || value === undefined) {
    problems.push({ path, message: 'a comparison with null never matches; use _is_null: true instead' });
    return undefined;
  }
  problems.push({ path, message: `expected a string, number or boolean, got ${describeOperandType(value)}` });
  return undefined;
}

function isColumnOperator(name: string): name is ColumnOperator {
  return (COLUMN_OPERATORS as readonly string[]).includes(name);
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof NumberLiteral);
}

function describeOperandType(value: unknown): string {
  return describeType(value instanceof NumberLiteral ? value.value : value);
}
