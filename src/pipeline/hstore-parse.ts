/**
 * Parser for the text form of the hstore extension's type: `"a"=>"1", "b"=>NULL`. The
 * output function quotes every key and value, and the parser also reads the unquoted
 * form that hstore_in accepts (`a=>1, b=>NULL`).
 */

/** Raised for text that is not an hstore literal. */
export class HstoreLiteralError extends Error {
  constructor(message: string, text: string) {
    super(`invalid hstore literal ${JSON.stringify(text)}: ${message}`);
    this.name = 'HstoreLiteralError';
  }
}

/** One key and its value, null for a NULL value. */
export type HstorePair = readonly [key: string, value: string | null];

interface Token {
  readonly text: string;
  readonly quoted: boolean;
}

/** Parses an hstore literal into its pairs in text order. */
export function parseHstoreLiteral(text: string): HstorePair[] {
  const pairs: HstorePair[] = [];
  let position = skipWhitespace(text, 0);

  while (position < text.length) {
    const key = readToken(text, position);
    position = skipWhitespace(text, key.end);
    if (!text.startsWith('=>', position)) {
      throw new HstoreLiteralError(`expected '=>' at offset ${position}`, text);
    }
    position = skipWhitespace(text, position + 2);
    const value = readToken(text, position);
    const isNull = !value.token.quoted && value.token.text.toUpperCase() === 'NULL';
    pairs.push([key.token.text, isNull ? null : value.token.text]);

    position = skipWhitespace(text, value.end);
    if (position < text.length) {
      if (text[position] !== ',') {
        throw new HstoreLiteralError(`expected ',' at offset ${position}`, text);
      }
      position = skipWhitespace(text, position + 1);
    }
  }
  return pairs;
}

function readToken(text: string, start: number): { token: Token; end: number } {
  let position = start;
  let value = '';
  const quoted = text[position] === '"';
  if (quoted) {
    position++;
  }
  for (;;) {
    const char = text[position];
    if (char === undefined) {
      if (quoted) {
        throw new HstoreLiteralError('unterminated quotes', text);
      }
      break;
    }
    if (quoted && char === '"') {
      position++;
      break;
    }
    if (!quoted && (isWhitespace(char) || char === ',' || text.startsWith('=>', position))) {
      break;
    }
    if (char === '\\') {
      const escaped = text[position + 1];
      if (escaped === undefined) {
        throw new HstoreLiteralError('backslash at the end of the text', text);
      }
      value += escaped;
      position += 2;
      continue;
    }
    value += char;
    position++;
  }
  if (!quoted && value === '') {
    throw new HstoreLiteralError(`expected a key or value at offset ${start}`, text);
  }
  return { token: { text: value, quoted }, end: position };
}

function skipWhitespace(text: string, start: number): number {
  let position = start;
  while (position < text.length && isWhitespace(text[position] ?? '')) {
    position++;
  }
  return position;
}

function isWhitespace(char: string): boolean {
  return char === ' ' || char === '\t' || char === '\n' || char === '\r';
}
