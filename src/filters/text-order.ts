/**
 * Text comparison in Unicode code point order. This equals byte order of UTF-8 and so
 * PostgreSQL's `COLLATE "C"` in a UTF-8 database, but not the database's default
 * collation, which usually sorts by language rules.
 */

/** Returns a negative number, zero or a positive number as `a` sorts before, with or after `b`. */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i += 1) {
    const unitA = a.charCodeAt(i);
    const unitB = b.charCodeAt(i);
    if (unitA !== unitB) {
      return codePointRank(unitA) - codePointRank(unitB);
    }
  }
  return a.length - b.length;
}

/**
 * Maps a UTF-16 code unit to a rank that sorts in code point order at the first unit
 * where two strings differ. Surrogates (U+D800 to U+DFFF) start code points above
 * U+FFFF, so they must sort after U+E000 to U+FFFF, which JavaScript's `<` puts after them.
 */
function codePointRank(unit: number): number {
  if (unit >= 0xe000) {
    return unit - 0x800;
  }
  if (unit >= 0xd800) {
    return unit + 0x2000;
  }
  return unit;
}
