/**
 * Reads one value out of JSON text by path, keeping numbers as their digits. URL
 * templates use it so that an int8 id beyond 2^53 reaches the URL unchanged, which
 * JSON.parse would not guarantee.
 */

export type JsonPathValue =
  | { readonly type: 'string'; readonly value: string }
  /** The number exactly as written in the JSON text. */
  | { readonly type: 'number'; readonly text: string }
  | { readonly type: 'boolean'; readonly value: boolean }
  | { readonly type: 'null' }
  | { readonly type: 'object' }
  | { readonly type: 'array' };

const NUMBER_PATTERN = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WHITESPACE_PATTERN = /[ \t\n\r]*/y;

/**
 * Returns the value at `path` in the JSON text, or undefined when the path does not
 * exist. A segment of digits selects an array element. When an object repeats a key,
 * the last one counts, as with JSON.parse. Throws SyntaxError for text that is not JSON.
 */
export function readJsonPath(text: string, path: readonly string[]): JsonPathValue | undefined {
  const scanner = new JsonScanner(text);
  let start = scanner.skipWhitespace(0);
  for (const segment of path) {
    const next = scanner.findChild(start, segment);
    if (next === undefined) {
      return undefined;
    }
    start = next;
  }
  return scanner.readValue(start);
}

class JsonScanner {
  readonly #text: string;

  constructor(text: string) {
    this.#text = text;
  }

  skipWhitespace(position: number): number {
    WHITESPACE_PATTERN.lastIndex = position;
    WHITESPACE_PATTERN.exec(this.#text);
    return WHITESPACE_PATTERN.lastIndex;
  }

  /** Returns where the member or element named by `segment` starts, or undefined. */
  findChild(start: number, segment: string): number | undefined {
    const opening = this.#text[start];
    if (opening === '{') {
      return this.#findMember(start, segment);
    }
    if (opening === '[' && /^(?:0|[1-9]\d*)$/.test(segment)) {
      return this.#findElement(start, Number(segment));
    }
    this.#skipValue(start);
    return undefined;
  }

  readValue(start: number): JsonPathValue {
    const character = this.#text[start];
    switch (character) {
      case '"':
        return { type: 'string', value: JSON.parse(this.#text.slice(start, this.#skipString(start))) as string };
      case '{':
        return { type: 'object' };
      case '[':
        return { type: 'array' };
      case 't':
        this.#expectWord(start, 'true');
        return { type: 'boolean', value: true };
      case 'f':
        this.#expectWord(start, 'false');
        return { type: 'boolean', value: false };
      case 'n':
        this.#expectWord(start, 'null');
        return { type: 'null' };
      default:
        return { type: 'number', text: this.#text.slice(start, this.#skipNumber(start)) };
    }
  }

  #findMember(start: number, key: string): number | undefined {
    let found: number | undefined;
    let position = this.skipWhitespace(start + 1);
    if (this.#text[position] === '}') {
      return undefined;
    }
    for (;;) {
      const keyEnd = this.#skipString(position);
      const memberKey = JSON.parse(this.#text.slice(position, keyEnd)) as string;
      position = this.skipWhitespace(keyEnd);
      this.#expect(position, ':');
      const valueStart = this.skipWhitespace(position + 1);
      if (memberKey === key) {
        found = valueStart;
      }
      position = this.skipWhitespace(this.#skipValue(valueStart));
      if (this.#text[position] === '}') {
        return found;
      }
      this.#expect(position, ',');
      position = this.skipWhitespace(position + 1);
    }
  }

  #findElement(start: number, index: number): number | undefined {
    let position = this.skipWhitespace(start + 1);
    if (this.#text[position] === ']') {
      return undefined;
    }
    for (let current = 0; ; current += 1) {
      if (current === index) {
        return position;
      }
      position = this.skipWhitespace(this.#skipValue(position));
      if (this.#text[position] === ']') {
        return undefined;
      }
      this.#expect(position, ',');
      position = this.skipWhitespace(position + 1);
    }
  }

  /** Returns the position after the value, counting brackets instead of recursing. */
  #skipValue(start: number): number {
    const character = this.#text[start];
    if (character === '"') {
      return this.#skipString(start);
    }
    if (character !== '{' && character !== '[') {
      return this.#skipScalar(start);
    }
    let depth = 0;
    let position = start;
    while (position < this.#text.length) {
      const current = this.#text[position];
      if (current === '"') {
        position = this.#skipString(position);
        continue;
      }
      if (current === '{' || current === '[') {
        depth += 1;
      } else if (current === '}' || current === ']') {
        depth -= 1;
        if (depth === 0) {
          return position + 1;
        }
      }
      position += 1;
    }
    throw new SyntaxError(`unterminated JSON value at position ${start}`);
  }

  /** Returns the position after a number, true, false or null. */
  #skipScalar(start: number): number {
    for (const word of ['true', 'false', 'null']) {
      if (this.#text.startsWith(word, start)) {
        return start + word.length;
      }
    }
    return this.#skipNumber(start);
  }

  /** Returns the position after the closing quote of the string that starts at `start`. */
  #skipString(start: number): number {
    this.#expect(start, '"');
    let position = start + 1;
    while (position < this.#text.length) {
      const character = this.#text[position];
      if (character === '\\') {
        position += 2;
        continue;
      }
      if (character === '"') {
        return position + 1;
      }
      position += 1;
    }
    throw new SyntaxError(`unterminated JSON string at position ${start}`);
  }

  #skipNumber(start: number): number {
    NUMBER_PATTERN.lastIndex = start;
    if (NUMBER_PATTERN.exec(this.#text) === null) {
      throw new SyntaxError(`invalid JSON value at position ${start}`);
    }
    return NUMBER_PATTERN.lastIndex;
  }

  #expectWord(start: number, word: string): void {
    if (!this.#text.startsWith(word, start)) {
      throw new SyntaxError(`invalid JSON value at position ${start}`);
    }
  }

  #expect(position: number, character: string): void {
    if (this.#text[position] !== character) {
      throw new SyntaxError(`expected '${character}' at position ${position} of the JSON text`);
    }
  }
}
