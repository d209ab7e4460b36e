/**
 * Conversion of zod issues into configuration problems with plain messages.
 *
 * Messages never repeat a string that failed a type check, because a misplaced
 * `${DATABASE_URL}` or token would otherwise end up in logs.
 */

import type * as z from 'zod';

import { describeType, type PathSegment, type Problem, withSuggestion } from './problems.js';
import { knownKeysAt } from './schema.js';

export function problemsFromIssues(issues: readonly z.core.$ZodIssue[]): Problem[] {
  return issues.flatMap((issue) => problemsFromIssue(issue));
}

function problemsFromIssue(issue: z.core.$ZodIssue): Problem[] {
  const path = toPath(issue.path);

  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeysAt(path);
      return issue.keys.map((key) => ({
        path: [...path, key],
        message: describeUnknownKey(key, known),
      }));
    }
    case 'invalid_type':
      return [{ path, message: describeInvalidType(issue.expected, issue.input) }];
    case 'invalid_value':
      return [{ path, message: describeInvalidValue(issue.values, issue.input) }];
    default:
      return [{ path, message: issue.message }];
  }
}

function toPath(path: readonly PropertyKey[]): PathSegment[] {
  return path.map((segment) => (typeof segment === 'number' ? segment : String(segment)));
}

function describeUnknownKey(key: string, known: readonly string[]): string {
  const message = withSuggestion('unknown key', key, known);
  if (message !== 'unknown key' || known.length === 0) {
    return message;
  }
  return `unknown key; valid keys are ${known.join(', ')}`;
}

function describeInvalidType(expected: string, input: unknown): string {
  if (input === undefined) {
    return 'required key is missing';
  }

  const message = `expected ${describeExpectedType(expected)}, got ${describeValueType(input)}`;
  if (expected === 'string' && (typeof input === 'number' || typeof input === 'boolean')) {
    return `${message}; put the value in quotes`;
  }
  if (expected === 'array' && input !== null) {
    return `${message}; write a list, such as [a, b] or one '- item' per line`;
  }
  return message;
}

function describeInvalidValue(values: readonly unknown[], input: unknown): string {
  const allowed = values.map((value) => `'${String(value)}'`).join(', ');
  if (typeof input !== 'string') {
    return `expected one of ${allowed}, got ${describeValueType(input)}`;
  }
  const candidates = values.map((value) => String(value));
  return withSuggestion(`expected one of ${allowed}, got '${input}'`, input, candidates);
}

function describeExpectedType(expected: string): string {
  switch (expected) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    default:
      return `a ${expected}`;
  }
}

/** Describes a value by its type, repeating numbers and booleans but never strings. */
function describeValueType(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean') {
    return `${typeof value} ${String(value)}`;
  }
  return describeType(value);
}
