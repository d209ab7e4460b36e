/**
 * PostgreSQL type information that the JSON encoder needs: how `to_jsonb` treats each
 * type, the element type of arrays, the base type of domains and the attributes of
 * composite types.
 *
 * Built-in types have fixed OIDs and come from a static table. Every other type
 * (enums, domains, composites, extension types such as hstore, and the types that
 * initdb creates for system views) is read from the catalog with `TypeRegistry.load`.
 */
import type { TableName } from '../config/types.js';

/** OIDs of the built-in types that the encoder refers to, as pg_type lists them. */
export const enum TypeOid {
  Bool = 16,
  Bytea = 17,
  Int8 = 20,
  Int2 = 21,
  Int2Vector = 22,
  Int4 = 23,
  Oid = 26,
  OidVector = 30,
  Json = 114,
  Box = 603,
  Float4 = 700,
  Float8 = 701,
  Date = 1082,
  Timestamp = 1114,
  Timestamptz = 1184,
  Numeric = 1700,
  Jsonb = 3802,
}

/** First OID for objects created after initdb (FirstNormalObjectId in PostgreSQL's source). */
export const FIRST_NORMAL_OBJECT_ID = 16384;

/**
 * Rendering rule of `to_jsonb` for a scalar value:
 * - `bool`: JSON true or false.
 * - `integer`: a JSON number (int2, int4).
 * - `wideNumber`: a JSON number, or a string under `stringifyNumeric` (int8, numeric,
 *   float4, float8). NaN and the infinities are strings in both cases.
 * - `json`: the value embedded as JSON (json, jsonb).
 * - `date`, `timestamp`, `timestamptz`: a string in ISO 8601 form.
 * - `hstore`: a JSON object of string or null values, as the hstore extension's cast to
 *   json builds it.
 * - `text`: the text output as a JSON string. This covers every other type, enums
 *   and ranges included.
 */
export type ScalarCategory =
  | 'bool'
  | 'integer'
  | 'wideNumber'
  | 'json'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  | 'hstore'
  | 'text';

export interface CompositeAttribute {
  readonly name: string;
  readonly typeOid: number;
}

/** Encoder's description of one type. */
export type PgType =
  | { readonly kind: 'scalar'; readonly category: ScalarCategory }
  /** An array type. `delimiter` separates elements in its text form: ';' for box, else ','. */
  | { readonly kind: 'array'; readonly elementOid: number; readonly delimiter: string }
  /** int2vector and oidvector: arrays whose text form is the elements separated by spaces. */
  | { readonly kind: 'vector'; readonly elementOid: number }
  | { readonly kind: 'domain'; readonly baseOid: number }
  /** A composite type with its attributes in order, without dropped ones. */
  | { readonly kind: 'composite'; readonly attributes: readonly CompositeAttribute[] }
  /**
   * A type that has a cast function to json that walhook cannot reproduce. `to_jsonb`
   * calls that function, so the encoder's fallback, the text as a JSON string, differs.
   */
  | { readonly kind: 'jsonCast'; readonly castFunction: string };

/** Synchronous type lookups, which the encoder uses. */
export interface TypeLookup {
  lookup(oid: number): PgType | undefined;
}

const SPECIAL_SCALARS: ReadonlyArray<readonly [ScalarCategory, readonly number[]]> = [
  ['bool', [TypeOid.Bool]],
  ['integer', [TypeOid.Int2, TypeOid.Int4]],
  ['wideNumber', [TypeOid.Int8, TypeOid.Float4, TypeOid.Float8, TypeOid.Numeric]],
  ['json', [TypeOid.Json, TypeOid.Jsonb]],
  ['date', [TypeOid.Date]],
  ['timestamp', [TypeOid.Timestamp]],
  ['timestamptz', [TypeOid.Timestamptz]],
];

/**
 * Built-in base, range and multirange types that `to_jsonb` renders as their text
 * output. Taken from pg_type in PostgreSQL 15 and 18, which agree on OIDs below 10000.
 * oid, xid, money and the reg* types are in this list although PostgreSQL files them
 * under the numeric type category, because `to_jsonb` only turns int2, int4, int8,
 * float4, float8 and numeric into JSON numbers.
 */
const TEXT_SCALAR_OIDS: readonly number[] = [
  17, 18, 19, 24, 25, 26, 27, 28, 29, 142, 194, 600, 601, 602, 603, 604, 628, 650, 718, 774,
  790, 829, 869, 1033, 1042, 1043, 1083, 1186, 1266, 1560, 1562, 1790, 2202, 2203, 2204, 2205,
  2206, 2950, 2970, 3220, 3361, 3402, 3614, 3615, 3642, 3734, 3769, 3904, 3906, 3908, 3910,
  3912, 3926, 4072, 4089, 4096, 4191, 4451, 4532, 4533, 4534, 4535, 4536, 4600, 4601, 5017,
  5038, 5069,
];

/** Built-in array types as [array OID, element OID], from the same pg_type listing. */
const BUILTIN_ARRAYS: ReadonlyArray<readonly [number, number]> = [
  [143, 142], [199, 114], [271, 5069], [629, 628], [651, 650], [719, 718], [775, 774],
  [791, 790], [1000, 16], [1001, 17], [1002, 18], [1003, 19], [1005, 21], [1006, 22],
  [1007, 23], [1008, 24], [1009, 25], [1010, 27], [1011, 28], [1012, 29], [1013, 30],
  [1014, 1042], [1015, 1043], [1016, 20], [1017, 600], [1018, 601], [1019, 602],
  [1020, 603], [1021, 700], [1022, 701], [1027, 604], [1028, 26], [1034, 1033],
  [1040, 829], [1041, 869], [1115, 1114], [1182, 1082], [1183, 1083], [1185, 1184],
  [1187, 1186], [1231, 1700], [1270, 1266], [1561, 1560], [1563, 1562], [2201, 1790],
  [2207, 2202], [2208, 2203], [2209, 2204], [2210, 2205], [2211, 2206], [2949, 2970],
  [2951, 2950], [3221, 3220], [3643, 3614], [3644, 3642], [3645, 3615], [3735, 3734],
  [3770, 3769], [3807, 3802], [3905, 3904], [3907, 3906], [3909, 3908], [3911, 3910],
  [3913, 3912], [3927, 3926], [4073, 4072], [4090, 4089], [4097, 4096], [4192, 4191],
  [5039, 5038], [6150, 4451], [6151, 4532], [6152, 4533], [6153, 4534], [6155, 4535],
  [6157, 4536],
];

function buildBuiltinTypes(): ReadonlyMap<number, PgType> {
  const types = new Map<number, PgType>();
  for (const oid of TEXT_SCALAR_OIDS) {
    types.set(oid, { kind: 'scalar', category: 'text' });
  }
  for (const [category, oids] of SPECIAL_SCALARS) {
    for (const oid of oids) {
      types.set(oid, { kind: 'scalar', category });
    }
  }
  types.set(TypeOid.Int2Vector, { kind: 'vector', elementOid: TypeOid.Int2 });
  types.set(TypeOid.OidVector, { kind: 'vector', elementOid: TypeOid.Oid });
  for (const [arrayOid, elementOid] of BUILTIN_ARRAYS) {
    const delimiter = elementOid === TypeOid.Box ? ';' : ',';
    types.set(arrayOid, { kind: 'array', elementOid, delimiter });
  }
  return types;
}

const BUILTIN_TYPES = buildBuiltinTypes();

/** Returns the static entry for a built-in type, or undefined for any other OID. */
export function builtinType(oid: number): PgType | undefined {
  return BUILTIN_TYPES.get(oid);
}

/** The built-in types only, for callers that have no catalog connection. */
export const BUILTIN_TYPE_LOOKUP: TypeLookup = { lookup: builtinType };

/** Runs one catalog query and returns its rows, such as `pg.Client#query(...).rows`. */
export type CatalogQuery = (
  sql: string,
  params: unknown[],
) => Promise<ReadonlyArray<Record<string, unknown>>>;

// A type is an array when its element type names it as its array type (typarray). That
// avoids pg_type.typsubscript, which PostgreSQL 14 added. Tested on PostgreSQL 15 and 18.
const TYPES_SQL = `
SELECT t.oid::int8::text AS oid,
       t.typtype AS typtype,
       t.typbasetype::int8::text AS base_oid,
       CASE WHEN e.oid IS NOT NULL THEN t.typelem::int8::text END AS element_oid,
       e.typdelim AS element_delimiter,
       (SELECT p.proname
          FROM pg_cast c
          JOIN pg_proc p ON p.oid = c.castfunc
         WHERE c.castsource = t.oid
           AND c.casttarget = 'json'::regtype
           AND c.castmethod = 'f'
         LIMIT 1) AS json_cast_function
  FROM pg_type t
  LEFT JOIN pg_type e ON e.oid = t.typelem AND e.typarray = t.oid
 WHERE t.oid = ANY($1::oid[])`;

const ATTRIBUTES_SQL = `
SELECT t.oid::int8::text AS type_oid,
       a.attname AS name,
       a.atttypid::int8::text AS attribute_type_oid
  FROM pg_type t
  JOIN pg_attribute a ON a.attrelid = t.typrelid
 WHERE t.oid = ANY($1::oid[])
   AND t.typtype = 'c'
   AND a.attnum > 0
   AND NOT a.attisdropped
 ORDER BY t.oid, a.attnum`;

const TABLE_COLUMN_TYPES_SQL = `
SELECT DISTINCT a.atttypid::int8::text AS oid
  FROM unnest($1::text[], $2::text[]) AS wanted(schema_name, table_name)
  JOIN pg_namespace n ON n.nspname = wanted.schema_name
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.table_name
  JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE a.attnum > 0
   AND NOT a.attisdropped`;

/** Upper bound on catalog round trips for one load, against a runaway type graph. */
const MAX_LOAD_ROUNDS = 32;

/**
 * Types of the columns walhook encodes. `load` reads types from the catalog, and
 * `lookup` then returns them synchronously. Built-in types need no load.
 *
 * A type that refers to other types (an array, a domain or a composite) is loaded
 * together with the types it refers to, so one `load` per relation is enough.
 */
export class TypeRegistry implements TypeLookup {
  readonly #query: CatalogQuery;
  readonly #loaded = new Map<number, PgType>();

  constructor(query: CatalogQuery) {
    this.#query = query;
  }

  lookup(oid: number): PgType | undefined {
    return BUILTIN_TYPES.get(oid) ?? this.#loaded.get(oid);
  }

  /** Returns the OIDs among `oids` that are neither built in nor loaded, without duplicates. */
  unknownOids(oids: Iterable<number>): number[] {
    const unknown = new Set<number>();
    for (const oid of oids) {
      if (this.lookup(oid) === undefined) {
        unknown.add(oid);
      }
    }
    return [...unknown];
  }

  /**
   * Reads the given types from the catalog, replacing earlier entries, and then every
   * type they refer to that is still unknown. Pass a loaded OID again to pick up an
   * ALTER TYPE. OIDs that the catalog does not have stay unknown and encode as strings.
   */
  async load(oids: Iterable<number>): Promise<void> {
    let pending = [...new Set(oids)].filter((oid) => !BUILTIN_TYPES.has(oid));
    const requested = new Set<number>();
    for (let round = 0; pending.length > 0 && round < MAX_LOAD_ROUNDS; round++) {
      for (const oid of pending) {
        requested.add(oid);
      }
      const found = await this.#fetch(pending);
      const referenced: number[] = [];
      for (const [oid, type] of found) {
        this.#loaded.set(oid, type);
        referenced.push(...referencedOids(type));
      }
      pending = this.unknownOids(referenced).filter((oid) => !requested.has(oid));
    }
  }

  /** Loads the types of every column of `tables`. Tables that do not exist are skipped. */
  async loadTables(tables: readonly TableName[]): Promise<void> {
    const rows = await this.#query(TABLE_COLUMN_TYPES_SQL, [
      tables.map((table) => table.schema),
      tables.map((table) => table.name),
    ]);
    await this.load(this.unknownOids(rows.map((row) => oidField(row, 'oid'))));
  }

  async #fetch(oids: readonly number[]): Promise<Map<number, PgType>> {
    const typeRows = await this.#query(TYPES_SQL, [oids]);
    const attributeRows = await this.#query(ATTRIBUTES_SQL, [oids]);

    const attributes = new Map<number, CompositeAttribute[]>();
    for (const row of attributeRows) {
      const typeOid = oidField(row, 'type_oid');
      const list = attributes.get(typeOid) ?? [];
      list.push({ name: textField(row, 'name'), typeOid: oidField(row, 'attribute_type_oid') });
      attributes.set(typeOid, list);
    }

    const types = new Map<number, PgType>();
    for (const row of typeRows) {
      const oid = oidField(row, 'oid');
      types.set(oid, classifyCatalogType(oid, row, attributes.get(oid) ?? []));
    }
    return types;
  }
}

function classifyCatalogType(
  oid: number,
  row: Record<string, unknown>,
  attributes: readonly CompositeAttribute[],
): PgType {
  const typtype = textField(row, 'typtype');
  if (typtype === 'd') {
    return { kind: 'domain', baseOid: oidField(row, 'base_oid') };
  }
  if (row.element_oid !== null && row.element_oid !== undefined) {
    const delimiter = textField(row, 'element_delimiter');
    return { kind: 'array', elementOid: oidField(row, 'element_oid'), delimiter };
  }
  if (typtype === 'c') {
    return { kind: 'composite', attributes };
  }

  // json_categorize_type in PostgreSQL's source calls a cast to json, not to jsonb, and
  // only for types created after initdb.
  const castFunction = row.json_cast_function;
  if (oid >= FIRST_NORMAL_OBJECT_ID && typeof castFunction === 'string') {
    if (castFunction === 'hstore_to_json') {
      return { kind: 'scalar', category: 'hstore' };
    }
    return { kind: 'jsonCast', castFunction };
  }
  return { kind: 'scalar', category: 'text' };
}

function referencedOids(type: PgType): number[] {
  switch (type.kind) {
    case 'array':
    case 'vector':
      return [type.elementOid];
    case 'domain':
      return [type.baseOid];
    case 'composite':
      return type.attributes.map((attribute) => attribute.typeOid);
    case 'scalar':
    case 'jsonCast':
      return [];
    default: {
      const unreachable: never = type;
      throw new Error(`unknown type kind ${JSON.stringify(unreachable)}`);
    }
  }
}

function textField(row: Record<string, unknown>, name: string): string {
  const value = row[name];
  if (typeof value !== 'string') {
    throw new TypeError(`catalog row field '${name}' is ${String(value)}, expected text`);
  }
  return value;
}

function oidField(row: Record<string, unknown>, name: string): number {
  const oid = Number(textField(row, name));
  if (!Number.isSafeInteger(oid) || oid < 0) {
    throw new TypeError(`catalog row field '${name}' is not an OID: ${String(row[name])}`);
  }
  return oid;
}
