/**
 * Table names written as in SQL: `table` or `schema.table`.
 *
 * The rules follow PostgreSQL's lexer. An unquoted part folds ASCII letters to lower case
 * and may contain letters, digits, `_` and `$`, but must not start with a digit or `$`.
 * Characters outside ASCII count as letters and are not folded, as in a UTF-8 database.
 * A part in double quotes keeps its case and may contain any character except NUL,
 * with `""` standing for one double quote.
 */

import type { TableName } from './types.js';

/** Maximum identifier length PostgreSQL keeps, in bytes (NAMEDATALEN - 1 in default builds). */
export const MAX_IDENTIFIER_BYTES = 63;

const DEFAULT_SCHEMA = 'public';

const UNQUOTED_PART = /^[A-Za-z_\u0080-\u{10FFFF}][A-Za-z0-9_$\u0080-\u{10FFFF}]*$/u;

/** Parts that read back unchanged without quotes: UNQUOTED_PART with no upper-case ASCII. */
const PLAIN_PART = /^[a-z_\u0080-\u{10FFFF}][a-z0-9_$\u0080-\u{10FFFF}]*$/u;

/** A table name that `parseTableName` cannot read; the message names the value. */
export class InvalidTableNameError extends Error {
  constructor(text: string, reason: string) {
    super(`invalid table name '${text}': ${reason}`);
    this.name = 'InvalidTableNameError';
  }
}

/**
 * Parses `table` or `schema.table` under SQL identifier rules. A name without a schema
 * gets `public`. Throws InvalidTableNameError for an empty part, unbalanced quotes,
 * more than two parts or a part longer than MAX_IDENTIFIER_BYTES.
 */
export function parseTableName(text: string): TableName {
  const parts = splitQualifiedName(text);

  for (const part of parts) {
    if (Buffer.byteLength(part, 'utf8') > MAX_IDENTIFIER_BYTES) {
      throw new InvalidTableNameError(
        text,
        `'${part}' is longer than ${MAX_IDENTIFIER_BYTES} bytes, and PostgreSQL truncates longer names`,
      );
    }
  }

  const [first, second] = parts;
  if (parts.length === 1 && first !== undefined) {
    return { schema: DEFAULT_SCHEMA, name: first };
  }
  if (parts.length === 2 && first !== undefined && second !== undefined) {
    return { schema: first, name: second };
  }
  throw new InvalidTableNameError(
    text,
    `expected table or schema.table, got ${parts.length} dot-separated parts; put a part in double quotes if its name contains a dot`,
  );
}

/**
 * Formats a table name as `schema.table`, quoting only the parts that need quotes, so
 * that `parseTableName(formatTableName(t))` equals `t`.
 */
export function formatTableName(table: TableName): string {
  return `${formatIdentifier(table.schema)}.${formatIdentifier(table.name)}`;
}

/**
 * Quotes an identifier for use in SQL text, doubling any double quote inside it.
 * Throws RangeError for an empty name or one that contains NUL, which PostgreSQL
 * cannot store.
 */
export function quoteIdentifier(name: string): string {
  if (name === '') {
    throw new RangeError('cannot quote an empty identifier');
  }
  if (name.includes('\0')) {
    throw new RangeError('cannot quote an identifier that contains the NUL character');
  }
  return `"${name.replaceAll('"', '""')}"`;
}

function formatIdentifier(name: string): string {
  return PLAIN_PART.test(name) ? name : quoteIdentifier(name);
}

/** Splits on dots outside quotes and returns each part unquoted or case-folded. */
function splitQualifiedName(text: string): string[] {
  if (text === '') {
    throw new InvalidTableNameError(text, 'the name is empty; write table or schema.table');
  }

  const parts: string[] = [];
  let position = 0;

  for (;;) {
    const part = text[position] === '"'
      ? readQuotedPart(text, position)
      : readUnquotedPart(text, position);
    parts.push(part.value);
    position = part.end;

    if (position === text.length) {
      return parts;
    }
    if (text[position] !== '.') {
      throw new InvalidTableNameError(
        text,
        `unexpected '${text[position]}' at position ${position + 1}; a double quote may only open or close a whole part`,
      );
    }
    position += 1;
  }
}

interface PartEnd {
  readonly value: string;
  /** Index just after the part. */
  readonly end: number;
}

function readQuotedPart(text: string, start: number): PartEnd {
  let value = '';
  let position = start + 1;

  for (;;) {
    const quote = text.indexOf('"', position);
    if (quote === -1) {
      throw new InvalidTableNameError(text, 'unbalanced double quote; close the quoted part with "');
    }
    value += text.slice(position, quote);
    if (text[quote + 1] === '"') {
      value += '"';
      position = quote + 2;
      continue;
    }
    position = quote + 1;
    break;
  }

  if (value === '') {
    throw new InvalidTableNameError(text, 'a quoted part cannot be empty');
  }
  if (value.includes('\0')) {
    throw new InvalidTableNameError(text, 'a name cannot contain the NUL character');
  }
  return { value, end: position };
}

function readUnquotedPart(text: string, start: number): PartEnd {
  let end = start;
  while (end < text.length && text[end] !== '.' && text[end] !== '"') {
    end += 1;
  }

  const raw = text.slice(start, end);
  if (raw === '') {
    throw new InvalidTableNameError(text, 'a dot-separated part is empty; write table or schema.table');
  }
  if (!UNQUOTED_PART.test(raw)) {
    throw new InvalidTableNameError(
      text,
      `unquoted part '${raw}' may contain only letters, digits, _ and $, and must not start with a digit or $; put it in double quotes to use other characters`,
    );
  }
  return { value: foldAsciiToLowerCase(raw), end };
}

/** Lower-cases A-Z only, as PostgreSQL does for unquoted identifiers in UTF-8. */
function foldAsciiToLowerCase(text: string): string {
  return text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}
