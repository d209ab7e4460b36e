/**
 * Parser for wal2json output that keeps every number as the text wal2json wrote, and
 * the mapping from a wal2json column value back to PostgreSQL's text output, which
 * encodeValue takes. JSON.parse would turn int8 and numeric values into doubles.
 *
 * wal2json 2.5 writes int2, int4, int8, oid, float4, float8 and numeric values as JSON
 * numbers and bool as true or false. It writes bytea as its hex output without the
 * leading `\x`. Every other type, json and jsonb included, is its text output in a JSON
 * string, and so is a domain over any type and an array of any type.
 */
import { TypeOid } from './pg-types.js';

/** A JSON number, kept as its text. */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** A JSON value with numbers as JsonNumber and objects as maps, in text order. */
export type ExactJson = null | boolean | string | JsonNumber | ExactJson[] | Map<string, ExactJson>;

/** Raised for text that is not valid JSON. */
export class JsonSyntaxError extends Error {
  constructor(message: string) {
    super(`invalid JSON: ${message}`);
    this.name = 'JsonSyntaxError';
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const WHITESPACE = /[ \t\n\r]*/y;

/** Parses JSON text. A repeated object key keeps its last value, as in JSON.parse. */
export function parseExactJson(text: string): ExactJson {
  const parser = new ExactJsonParser(text);
  return parser.parseDocument();
}

class ExactJsonParser {
  readonly #text: string;
  #position = 0;

  constructor(text: string) {
    this.#text = text;
  }

  parseDocument(): ExactJson {
    const value = this.#parseValue();
    this.#skipWhitespace();
    if (this.#position !== this.#text.length) {
      throw new JsonSyntaxError(`unexpected text at offset ${this.#position}`);
    }
    return value;
  }

  #parseValue(): ExactJson {
    this.#skipWhitespace();
    const char = this.#text[this.#position];
    switch (char) {
      case '{':
        return this.#parseObject();
      case '[':
        return this.#parseArray();
      case '"':
        return this.#parseString();
      case 't':
        return this.#parseLiteral('true', true);
      case 'f':
        return this.#parseLiteral('false', false);
      case 'n':
        return this.#parseLiteral('null', null);
      default:
        return this.#parseNumber();
    }
  }

  #parseObject(): Map<string, ExactJson> {
    const members = new Map<string, ExactJson>();
    this.#position++;
    this.#skipWhitespace();
    if (this.#text[this.#position] === '}') {
      this.#position++;
      return members;
    }
    for (;;) {
      this.#skipWhitespace();
      if (this.#text[this.#position] !== '"') {
        throw new JsonSyntaxError(`expected a member name at offset ${this.#position}`);
      }
      const name = this.#parseString();
      this.#skipWhitespace();
      this.#expect(':');
      members.set(name, this.#parseValue());
      this.#skipWhitespace();
      if (this.#text[this.#position] === '}') {
        this.#position++;
        return members;
      }
      this.#expect(',');
    }
  }

  #parseArray(): ExactJson[] {
    const elements: ExactJson[] = [];
    this.#position++;
    this.#skipWhitespace();
    if (this.#text[this.#position] === ']') {
      this.#position++;
      return elements;
    }
    for (;;) {
      elements.push(this.#parseValue());
      this.#skipWhitespace();
      if (this.#text[this.#position] === ']') {
        this.#position++;
        return elements;
      }
      this.#expect(',');
    }
  }

  #parseString(): string {
    const token = this.#match(STRING, 'string');
    // The token is a valid JSON string, so JSON.parse only decodes its escapes.
    return JSON.parse(token) as string;
  }

  #parseNumber(): JsonNumber {
    return new JsonNumber(this.#match(NUMBER, 'value'));
  }

  #parseLiteral<T extends boolean | null>(word: string, value: T): T {
    if (!this.#text.startsWith(word, this.#position)) {
      throw new JsonSyntaxError(`expected ${word} at offset ${this.#position}`);
    }
    this.#position += word.length;
    return value;
  }

  #match(pattern: RegExp, expected: string): string {
    pattern.lastIndex = this.#position;
    const match = pattern.exec(this.#text);
    if (match === null) {
      throw new JsonSyntaxError(`expected a ${expected} at offset ${this.#position}`);
    }
    this.#position += match[0].length;
    return match[0];
  }

  #expect(char: string): void {
    if (this.#text[this.#position] !== char) {
      throw new JsonSyntaxError(`expected '${char}' at offset ${this.#position}`);
    }
    this.#position++;
  }

  #skipWhitespace(): void {
    WHITESPACE.lastIndex = this.#position;
    WHITESPACE.exec(this.#text);
    this.#position = WHITESPACE.lastIndex;
  }
}

/** OIDs of float4, float8 and numeric, whose NaN and infinities wal2json 2.5 writes as null. */
const NULL_FOR_NON_FINITE = new Set<number>([TypeOid.Float4, TypeOid.Float8, TypeOid.Numeric]);

/**
 * Returns true when a wal2json null in a column of this type may be NaN, Infinity or
 * -Infinity rather than SQL NULL. wal2json 2.5 writes those values of float4, float8 and
 * numeric columns as null, so nothing distinguishes them from NULL.
 */
export function isAmbiguousWal2jsonNull(typeOid: number): boolean {
  return NULL_FOR_NON_FINITE.has(typeOid);
}

/**
 * Returns the PostgreSQL text output that a wal2json column value of type `typeOid`
 * stands for, or null for SQL NULL. Arrays and objects never occur as wal2json column
 * values and raise.
 *
 * NOTE: wal2json drops the first two characters of bytea output, which are `\x` only
 * when bytea_output is hex, as walhook's pinned session settings make it.
 */
export function wal2jsonColumnText(value: ExactJson, typeOid: number): string | null {
  if (typeof value === 'string' && typeOid === TypeOid.Bytea) {
    return `\\x${value}`;
  }
  if (value === null || typeof value === 'string') {
    return value;
  }
  if (typeof value === 'boolean') {
    return value ? 't' : 'f';
  }
  if (value instanceof JsonNumber) {
    return value.text;
  }
  const kind = Array.isArray(value) ? 'array' : 'object';
  throw new TypeError(`invalid wal2json column value: expected a scalar, got a JSON ${kind}`);
}
