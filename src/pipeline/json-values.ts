/**
 * Turns PostgreSQL text output into JSON text the way `to_jsonb` does, without
 * passing numbers through JavaScript doubles. Requires the replication session to
 * run with the settings pinned in src/source/session-settings.ts.
 */

/** Built-in type OIDs, from pg_type.dat in the PostgreSQL source. */
export const enum TypeOid {
  Bool = 16,
  Int8 = 20,
  Int2 = 21,
  Int4 = 23,
  Oid = 26,
  Json = 114,
  Float4 = 700,
  Float8 = 701,
  Numeric = 1700,
  Jsonb = 3802,
}

const NON_FINITE = new Set(['NaN', 'Infinity', '-Infinity']);

/** Returns the JSON text for one non-null column value. */
export function encodeValue(typeOid: number, text: string): string {
  switch (typeOid) {
    case TypeOid.Bool:
      return text === 't' ? 'true' : 'false';
    case TypeOid.Int2:
    case TypeOid.Int4:
    case TypeOid.Int8:
    case TypeOid.Oid:
      return text;
    case TypeOid.Float4:
    case TypeOid.Float8:
    case TypeOid.Numeric:
      // to_jsonb keeps digits exactly and turns the non-finite values into strings.
      return NON_FINITE.has(text) ? JSON.stringify(text) : text;
    case TypeOid.Json:
    case TypeOid.Jsonb:
      return text;
    default:
      // NOTE: arrays, date/time types and composites are emitted as their text
      // output for now, which differs from to_jsonb for those types.
      return JSON.stringify(text);
  }
}
