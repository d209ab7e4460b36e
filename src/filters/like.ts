/**
 * SQL LIKE and ILIKE matching with PostgreSQL's rules: `%` matches any sequence of
 * characters, `_` matches one character, and a backslash makes the next character
 * literal. The pattern must match the whole value. A character is a Unicode code
 * point, as in a UTF-8 database.
 *
 * ILIKE lower-cases pattern and value with JavaScript's locale-independent
 * toLowerCase. PostgreSQL uses the database's lower(), which can differ for a few
 * characters outside ASCII.
 */

type PatternToken =
  | { readonly kind: 'literal'; readonly codePoint: number }
  | { readonly kind: 'one' }
  | { readonly kind: 'any' };

export class InvalidLikePatternError extends Error {
  /** The problem without the pattern, for messages that must not repeat configuration values. */
  readonly reason: string;

  constructor(pattern: string, reason: string) {
    super(`invalid LIKE pattern '${pattern}': ${reason}`);
    this.name = 'InvalidLikePatternError';
    this.reason = reason;
  }
}

export interface LikePattern {
  readonly caseInsensitive: boolean;
  readonly tokens: readonly PatternToken[];
}

/**
 * Compiles a LIKE pattern. Throws InvalidLikePatternError when it ends with a lone
 * backslash, which PostgreSQL also rejects.
 */
export function compileLikePattern(pattern: string, caseInsensitive: boolean): LikePattern {
  const characters = Array.from(pattern);
  const tokens: PatternToken[] = [];
  for (let i = 0; i < characters.length; i += 1) {
    const character = characters[i] ?? '';
    if (character === '\\') {
      i += 1;
      const escaped = characters[i];
      if (escaped === undefined) {
        throw new InvalidLikePatternError(pattern, "it ends with the escape character '\\'; write '\\\\' to match a backslash");
      }
      pushLiterals(tokens, escaped, caseInsensitive);
      continue;
    }
    if (character === '%') {
      // Consecutive % match the same as one.
      if (tokens.at(-1)?.kind !== 'any') {
        tokens.push({ kind: 'any' });
      }
      continue;
    }
    if (character === '_') {
      tokens.push({ kind: 'one' });
      continue;
    }
    pushLiterals(tokens, character, caseInsensitive);
  }
  return { caseInsensitive, tokens };
}

function pushLiterals(tokens: PatternToken[], character: string, caseInsensitive: boolean): void {
  // Lower-casing can turn one character into several, such as U+0130 into i and U+0307.
  const text = caseInsensitive ? character.toLowerCase() : character;
  for (const part of text) {
    tokens.push({ kind: 'literal', codePoint: part.codePointAt(0) ?? 0 });
  }
}

/**
 * Tests whether the whole value matches. The scan keeps one backtracking point, the
 * last `%`, which is enough for LIKE because `%` matches any sequence. The cost is at
 * most the product of value and pattern length, never exponential.
 */
export function matchesLike(pattern: LikePattern, value: string): boolean {
  const text = pattern.caseInsensitive ? value.toLowerCase() : value;
  const codePoints = Array.from(text, (character) => character.codePointAt(0) ?? 0);
  const tokens = pattern.tokens;

  let textIndex = 0;
  let tokenIndex = 0;
  let lastAnyToken = -1;
  let textIndexAfterAny = 0;
  while (textIndex < codePoints.length) {
    const token = tokens[tokenIndex];
    if (token !== undefined && token.kind === 'any') {
      lastAnyToken = tokenIndex;
      textIndexAfterAny = textIndex;
      tokenIndex += 1;
      continue;
    }
    if (token !== undefined && (token.kind === 'one' || token.codePoint === codePoints[textIndex])) {
      tokenIndex += 1;
      textIndex += 1;
      continue;
    }
    if (lastAnyToken < 0) {
      return false;
    }
    // Let the last % absorb one more character and retry the tokens after it.
    textIndexAfterAny += 1;
    textIndex = textIndexAfterAny;
    tokenIndex = lastAnyToken + 1;
  }
  while (tokens[tokenIndex]?.kind === 'any') {
    tokenIndex += 1;
  }
  return tokenIndex === tokens.length;
}
