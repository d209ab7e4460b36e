/**
 * Parser for PostgreSQL array literals, the text form that array_out prints and
 * array_in reads: `{1,2,NULL}`, `{{"a b","c\"d"},{NULL,"NULL"}}`, `[0:1]={1,2}`.
 * Element text stays undecoded beyond quoting, so callers convert it by element type.
 */

/** One array element: its text, null for SQL NULL, or the elements of an inner dimension. */
export type ArrayElement = string | null | readonly ArrayElement[];

/** Raised for text that is not an array literal. */
export class ArrayLiteralError extends Error {
  constructor(message: string, text: string) {
    super(`invalid array literal ${JSON.stringify(text)}: ${message}`);
    this.name = 'ArrayLiteralError';
  }
}

/** Whitespace as array_in skips it around elements. */
const WHITESPACE = new Set([' ', '\t', '\n', '\r', '\v', '\f']);
const QUOTE_OR_BACKSLASH = /["\\]/g;

/** Bounds decoration before the braces when a lower bound is not 1, such as `[0:1][1:2]=`. */
const BOUNDS_PATTERN = /^(?:\[\s*-?\d+\s*(?::\s*-?\d+\s*)?\])+\s*=\s*/;

/**
 * Parses an array literal into nested lists of element text. Bounds decoration is
 * checked and dropped because `to_jsonb` ignores lower bounds. `delimiter` is the
 * element type's typdelim: ';' for box, ',' for every other built-in type.
 */
export function parseArrayLiteral(text: string, delimiter = ','): ArrayElement[] {
  const parser = new ArrayParser(text, delimiter);
  return parser.parse();
}

class ArrayParser {
  readonly #text: string;
  readonly #delimiter: string;
  /** Matches, from `lastIndex`, the characters of an unquoted element that need no care. */
  readonly #plainRun: RegExp;
  #position = 0;

  constructor(text: string, delimiter: string) {
    this.#text = text;
    this.#delimiter = delimiter;
    const escapedDelimiter = delimiter.replace(/[\\\]^-]/g, '\\$&');
    this.#plainRun = new RegExp(`[^{}"\\\\${escapedDelimiter}]*`, 'y');
  }

  parse(): ArrayElement[] {
    const bounds = BOUNDS_PATTERN.exec(this.#text);
    this.#position = bounds === null ? 0 : bounds[0].length;
    this.#skipWhitespace();
    const elements = this.#parseDimension();
    this.#skipWhitespace();
    if (this.#position !== this.#text.length) {
      this.#fail(`unexpected text after the closing '}' at offset ${this.#position}`);
    }
    return elements;
  }

  /** Parses `{...}` starting at the opening brace. */
  #parseDimension(): ArrayElement[] {
    if (this.#text[this.#position] !== '{') {
      this.#fail(`expected '{' at offset ${this.#position}`);
    }
    this.#position++;
    const elements: ArrayElement[] = [];
    this.#skipWhitespace();
    if (this.#text[this.#position] === '}') {
      this.#position++;
      return elements;
    }

    for (;;) {
      this.#skipWhitespace();
      elements.push(this.#parseElement());
      this.#skipWhitespace();
      const next = this.#text[this.#position];
      this.#position++;
      if (next === '}') {
        return elements;
      }
      if (next !== this.#delimiter) {
        this.#fail(`expected '${this.#delimiter}' or '}' at offset ${this.#position - 1}`);
      }
    }
  }

  #parseElement(): ArrayElement {
    const first = this.#text[this.#position];
    if (first === '{') {
      return this.#parseDimension();
    }
    if (first === '"') {
      return this.#parseQuoted();
    }
    return this.#parseUnquoted();
  }

  /** Parses `"..."`, in which a backslash escapes the next character. */
  #parseQuoted(): string {
    let value = '';
    this.#position++;
    for (;;) {
      QUOTE_OR_BACKSLASH.lastIndex = this.#position;
      const special = QUOTE_OR_BACKSLASH.exec(this.#text);
      if (special === null) {
        this.#fail('unterminated quoted element');
      }
      value += this.#text.slice(this.#position, special.index);
      this.#position = special.index + 1;
      if (special[0] === '"') {
        return value;
      }
      value += this.#takeEscaped();
    }
  }

  /**
   * Parses an element without quotes up to the delimiter or '}'. Surrounding whitespace
   * is dropped, and the bare word NULL, in any letter case, is SQL NULL.
   */
  #parseUnquoted(): string | null {
    let value = '';
    let escaped = false;
    // Length of `value` without its trailing whitespace. Escaped whitespace is kept.
    let keptLength = 0;
    for (;;) {
      this.#plainRun.lastIndex = this.#position;
      this.#plainRun.exec(this.#text);
      const run = this.#text.slice(this.#position, this.#plainRun.lastIndex);
      this.#position = this.#plainRun.lastIndex;
      value += run;
      const keptInRun = lengthWithoutTrailingWhitespace(run);
      if (keptInRun > 0) {
        keptLength = value.length - run.length + keptInRun;
      }

      const char = this.#text[this.#position];
      if (char === undefined) {
        this.#fail('missing closing }');
      }
      if (char === this.#delimiter || char === '}') {
        break;
      }
      if (char !== '\\') {
        this.#fail(`unexpected '${char}' inside an element at offset ${this.#position}`);
      }
      this.#position++;
      value += this.#takeEscaped();
      escaped = true;
      keptLength = value.length;
    }

    value = value.slice(0, keptLength);
    if (value === '') {
      this.#fail(`empty element at offset ${this.#position}`);
    }
    if (!escaped && value.toUpperCase() === 'NULL') {
      return null;
    }
    return value;
  }

  /** Returns the character after a backslash and moves past it. */
  #takeEscaped(): string {
    const escaped = this.#text[this.#position];
    if (escaped === undefined) {
      this.#fail('backslash at the end of the text');
    }
    this.#position++;
    return escaped;
  }

  #skipWhitespace(): void {
    while (WHITESPACE.has(this.#text[this.#position] ?? '')) {
      this.#position++;
    }
  }

  #fail(message: string): never {
    throw new ArrayLiteralError(message, this.#text);
  }
}

function lengthWithoutTrailingWhitespace(text: string): number {
  let end = text.length;
  while (end > 0 && WHITESPACE.has(text[end - 1] ?? '')) {
    end--;
  }
  return end;
}
