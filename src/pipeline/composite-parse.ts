/**
 * Parser for PostgreSQL composite (row) literals, the text form that record_out prints
 * and record_in reads: `(1,"a b",,"say ""hi""")`.
 */

/** Raised for text that is not a composite literal. */
export class CompositeLiteralError extends Error {
  constructor(message: string, text: string) {
    super(`invalid composite literal ${JSON.stringify(text)}: ${message}`);
    this.name = 'CompositeLiteralError';
  }
}

/**
 * Parses a composite literal into the text of each field, or null for SQL NULL.
 *
 * A field that is empty and has no quotes is NULL, and `""` is the empty string. Inside
 * quotes, `""` stands for one quote, and a backslash escapes the next character, inside
 * quotes or not. Whitespace is part of the field, as in record_in.
 *
 * NOTE: `()` returns one NULL field because a composite with one attribute prints a NULL
 * that way. A composite type with no attributes prints the same text, so the caller
 * handles that case with the attribute count.
 */
export function parseCompositeLiteral(text: string): (string | null)[] {
  if (!text.startsWith('(')) {
    throw new CompositeLiteralError("expected '(' at offset 0", text);
  }
  const fields: (string | null)[] = [];
  let position = 1;

  for (;;) {
    let value = '';
    let quotedOrEscaped = false;
    let inQuotes = false;
    for (;;) {
      const char = text[position];
      if (char === undefined) {
        const problem = inQuotes ? 'unterminated quotes' : "missing closing ')'";
        throw new CompositeLiteralError(problem, text);
      }
      position++;
      if (inQuotes) {
        if (char === '"' && text[position] === '"') {
          value += '"';
          position++;
        } else if (char === '"') {
          inQuotes = false;
        } else if (char === '\\') {
          value += takeEscaped(text, position);
          position++;
        } else {
          value += char;
        }
        continue;
      }
      if (char === ',' || char === ')') {
        fields.push(value === '' && !quotedOrEscaped ? null : value);
        if (char === ')') {
          if (position !== text.length) {
            const problem = `unexpected text after ')' at offset ${position}`;
            throw new CompositeLiteralError(problem, text);
          }
          return fields;
        }
        break;
      }
      if (char === '"') {
        inQuotes = true;
        quotedOrEscaped = true;
      } else if (char === '\\') {
        value += takeEscaped(text, position);
        position++;
        quotedOrEscaped = true;
      } else {
        value += char;
      }
    }
  }
}

function takeEscaped(text: string, position: number): string {
  const char = text[position];
  if (char === undefined) {
    throw new CompositeLiteralError('backslash at the end of the text', text);
  }
  return char;
}
