/**
 * Helpers shared by the validation steps: problem paths, their text form and
 * did-you-mean suggestions.
 */

import type { ConfigProblem } from '../core/errors.js';

/** One step into the parsed file: a mapping key or a list index. */
export type PathSegment = string | number;

/** A ConfigProblem before its path is formatted, so that it can still be located in the file. */
export interface Problem {
  readonly path: readonly PathSegment[];
  readonly message: string;
}

/** Shortest prefix that counts as a match, so that 'in' does not suggest 'insert'. */
const MIN_PREFIX_LENGTH = 3;

const SIMPLE_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Formats a path as `webhooks[0].headers.Authorization`, quoting keys that need it. */
export function formatPath(path: readonly PathSegment[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') {
      text += `[${segment}]`;
    } else if (SIMPLE_KEY.test(segment)) {
      text += text === '' ? segment : `.${segment}`;
    } else {
      text += `[${JSON.stringify(segment)}]`;
    }
  }
  return text;
}

export function toConfigProblem(problem: Problem): ConfigProblem {
  return { path: formatPath(problem.path), message: problem.message };
}

/**
 * Returns the candidate closest to `input` when it is close enough to be a likely typo,
 * else undefined. Case, `_` and `-` are ignored first, so `initialDelay` finds
 * `initial_delay`.
 */
export function suggestClosest(input: string, candidates: readonly string[]): string | undefined {
  const normalizedInput = normalizeForComparison(input);
  const exact = candidates.find((candidate) => normalizeForComparison(candidate) === normalizedInput);
  if (exact !== undefined) {
    return exact;
  }

  // A candidate that starts the input, or the reverse, as in 'warning' for 'warn'.
  const prefixed = candidates.find((candidate) => isPrefixMatch(normalizedInput, normalizeForComparison(candidate)));
  if (prefixed !== undefined) {
    return prefixed;
  }

  // Allow about one edit per three characters, and at least one.
  const maxDistance = Math.max(1, Math.floor(input.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = editDistance(input.toLowerCase(), candidate.toLowerCase());
    if (distance <= maxDistance && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Names the YAML type of a value ('a list', 'a mapping', 'an empty value') without
 * repeating the value.
 */
export function describeType(value: unknown): string {
  if (value === null || value === undefined) {
    return 'an empty value';
  }
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (typeof value === 'object') {
    return 'a mapping';
  }
  return `a ${typeof value}`;
}

/** Appends "; did you mean 'x'?" to a message when a close candidate exists. */
export function withSuggestion(message: string, input: string, candidates: readonly string[]): string {
  const suggestion = suggestClosest(input, candidates);
  return suggestion === undefined ? message : `${message}; did you mean '${suggestion}'?`;
}

function isPrefixMatch(a: string, b: string): boolean {
  const [shorter, longer] = a.length <= b.length ? [a, b] : [b, a];
  return shorter.length >= MIN_PREFIX_LENGTH && longer.startsWith(shorter);
}

function normalizeForComparison(text: string): string {
  return text.toLowerCase().replace(/[_-]/g, '');
}

/**
 * Optimal string alignment distance: insertions, deletions, substitutions and swaps of
 * two adjacent characters each cost 1.
 */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const columns = b.length + 1;
  // table[i][j] is the distance between the first i characters of a and the first j of b.
  const table: number[][] = [];
  for (let i = 0; i < rows; i += 1) {
    const row = new Array<number>(columns).fill(0);
    row[0] = i;
    table.push(row);
  }
  const firstRow = table[0] ?? [];
  for (let j = 0; j < columns; j += 1) {
    firstRow[j] = j;
  }
  const at = (i: number, j: number): number => table[i]?.[j] ?? 0;

  for (let i = 1; i < rows; i += 1) {
    for (let j = 1; j < columns; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        distance = Math.min(distance, at(i - 2, j - 2) + 1);
      }
      const row = table[i];
      if (row !== undefined) {
        row[j] = distance;
      }
    }
  }
  return at(a.length, b.length);
}
