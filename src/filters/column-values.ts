/**
 * Reading and ordering of column values for `where`, per column type. Column values arrive
 * as PostgreSQL text output, operands as written in the configuration file.
 *
 * - int2, int4, int8, oid, numeric, float4, float8: exact decimal order (decimal.ts).
 * - bool: false before true.
 * - date, timestamp, timestamptz: instants in time (datetime.ts).
 * - uuid: the 128-bit value, so case, hyphens and braces in the operand do not matter.
 * - bpchar (character(n)): the text without trailing spaces, as PostgreSQL compares it.
 * - every other type: the text output in code point order (text-order.ts).
 */
import { compareDecimals, type Decimal, parseDecimal } from './decimal.js';
import { compareInstants, type Instant, parseInstant } from './datetime.js';
import type { TypeLookup } from '../pipeline/pg-types.js';
import { compareCodePoints } from './text-order.js';
import type { WhereOperand } from './where-condition.js';

/** Built-in type OIDs from PostgreSQL's pg_type.dat. */
const NUMERIC_TYPE_OIDS = new Set([20, 21, 23, 26, 700, 701, 1700]);
const BOOL_TYPE_OID = 16;
const DATE_TIME_TYPE_OIDS = new Set([1082, 1114, 1184]);
const UUID_TYPE_OID = 2950;
const BPCHAR_TYPE_OID = 1042;

/** Nesting of domains beyond which a type counts as text. PostgreSQL has no such limit, but real schemas stay far below it. */
const MAX_DOMAIN_DEPTH = 32;

/**
 * Returns the base type of a domain, or undefined for a type that is not a domain.
 * The pipeline can build it from its type registry. Without it, a column of a domain
 * type compares as text.
 */
export type BaseTypeLookup = (typeOid: number) => number | undefined;

/** Adapts the JSON encoder's type lookup, which contains the loaded domains, to a BaseTypeLookup. */
export function baseTypesFrom(types: TypeLookup): BaseTypeLookup {
  return (typeOid) => {
    const type = types.lookup(typeOid);
    return type?.kind === 'domain' ? type.baseOid : undefined;
  };
}

export type OperandResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

/** Reading and ordering of one group of column types. */
export interface ValueComparator<T> {
  /** Type group name used in messages. */
  readonly typeName: string;
  /** Parses a column's text output, or returns undefined when the text does not parse. */
  readValue(text: string): T | undefined;
  /** Converts an operand for comparison with this type, or returns the reason it cannot. */
  readOperand(operand: WhereOperand): OperandResult<T>;
  compare(a: T, b: T): number;
  /** Returns the text that LIKE matches against. */
  likeText(text: string): string;
}

/** Returns the comparator for a column type, looking through domains. */
export function comparatorFor(typeOid: number, baseTypeOf?: BaseTypeLookup): ValueComparator<unknown> {
  const oid = resolveDomain(typeOid, baseTypeOf);
  if (NUMERIC_TYPE_OIDS.has(oid)) {
    return NUMERIC as ValueComparator<unknown>;
  }
  if (oid === BOOL_TYPE_OID) {
    return BOOLEAN as ValueComparator<unknown>;
  }
  if (DATE_TIME_TYPE_OIDS.has(oid)) {
    return DATE_TIME as ValueComparator<unknown>;
  }
  if (oid === UUID_TYPE_OID) {
    return UUID as ValueComparator<unknown>;
  }
  if (oid === BPCHAR_TYPE_OID) {
    return BPCHAR as ValueComparator<unknown>;
  }
  return TEXT as ValueComparator<unknown>;
}

function resolveDomain(typeOid: number, baseTypeOf: BaseTypeLookup | undefined): number {
  let oid = typeOid;
  for (let depth = 0; baseTypeOf !== undefined && depth < MAX_DOMAIN_DEPTH; depth += 1) {
    const base = baseTypeOf(oid);
    if (base === undefined) {
      break;
    }
    oid = base;
  }
  return oid;
}

function rejectOperand(operand: WhereOperand, typeName: string, hint = ''): OperandResult<never> {
  const operandText = operand.kind === 'string' ? `'${operand.text}'` : operand.text;
  return { ok: false, message: `operand ${operandText} is not a valid ${typeName} value${hint}` };
}

function identity(text: string): string {
  return text;
}

const NUMERIC: ValueComparator<Decimal> = {
  typeName: 'number',
  readValue: parseDecimal,
  readOperand(operand) {
    const value = operand.kind === 'boolean' ? undefined : parseDecimal(operand.text);
    return value === undefined ? rejectOperand(operand, this.typeName) : { ok: true, value };
  },
  compare: compareDecimals,
  likeText: identity,
};

/** Spellings that PostgreSQL's boolean input accepts, with their unique prefixes. */
function parseBooleanText(text: string): boolean | undefined {
  const word = text.trim().toLowerCase();
  if (word === '') {
    return undefined;
  }
  if (word === '1' || word === 'on' || 'true'.startsWith(word) || 'yes'.startsWith(word)) {
    return true;
  }
  if (word === '0' || word === 'of' || word === 'off' || 'false'.startsWith(word) || 'no'.startsWith(word)) {
    return false;
  }
  return undefined;
}

const BOOLEAN: ValueComparator<boolean> = {
  typeName: 'boolean',
  readValue: parseBooleanText,
  readOperand(operand) {
    const value = operand.kind === 'number' ? undefined : parseBooleanText(operand.text);
    return value === undefined ? rejectOperand(operand, this.typeName, '; write true or false') : { ok: true, value };
  },
  compare: (a, b) => Number(a) - Number(b),
  likeText: identity,
};

const DATE_TIME: ValueComparator<Instant> = {
  typeName: 'date or timestamp',
  readValue: parseInstant,
  readOperand(operand) {
    const value = operand.kind === 'string' ? parseInstant(operand.text) : undefined;
    return value === undefined
      ? rejectOperand(operand, this.typeName, "; write an ISO 8601 date or timestamp such as '2024-03-10' or '2024-03-10T12:00:00Z'")
      : { ok: true, value };
  },
  compare: compareInstants,
  likeText: identity,
};

function normalizeUuid(text: string): string | undefined {
  const digits = text.trim().replace(/^\{(.*)\}$/, '$1').replace(/-/g, '').toLowerCase();
  return /^[0-9a-f]{32}$/.test(digits) ? digits : undefined;
}

const UUID: ValueComparator<string> = {
  typeName: 'uuid',
  readValue: normalizeUuid,
  readOperand(operand) {
    const value = operand.kind === 'string' ? normalizeUuid(operand.text) : undefined;
    return value === undefined ? rejectOperand(operand, this.typeName) : { ok: true, value };
  },
  compare: compareCodePoints,
  likeText: identity,
};

function readTextOperand(operand: WhereOperand, typeName: string): OperandResult<string> {
  if (operand.kind === 'boolean') {
    return rejectOperand(operand, typeName, `; write '${operand.text}' in quotes to compare with the text`);
  }
  return { ok: true, value: operand.text };
}

function trimTrailingSpaces(text: string): string {
  return text.replace(/ +$/, '');
}

const BPCHAR: ValueComparator<string> = {
  typeName: 'character',
  readValue: trimTrailingSpaces,
  readOperand(operand) {
    const result = readTextOperand(operand, this.typeName);
    return result.ok ? { ok: true, value: trimTrailingSpaces(result.value) } : result;
  },
  compare: compareCodePoints,
  // PostgreSQL casts character(n) to text for LIKE, which drops the trailing spaces.
  likeText: trimTrailingSpaces,
};

const TEXT: ValueComparator<string> = {
  typeName: 'text',
  readValue: identity,
  readOperand(operand) {
    return readTextOperand(operand, this.typeName);
  },
  compare: compareCodePoints,
  likeText: identity,
};
