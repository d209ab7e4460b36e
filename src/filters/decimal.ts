/**
 * Exact comparison of numbers written in decimal text, as PostgreSQL prints int2,
 * int4, int8, oid, numeric, float4 and float8. Nothing passes through a double, so
 * 9007199254740993 stays greater than 9007199254740992.
 *
 * The order is PostgreSQL's for numeric and float: -Infinity, then finite values,
 * then Infinity, then NaN. NaN equals NaN, and -0 equals 0.
 */

/**
 * A parsed number. A finite value is sign × 0.digits × 10^exponent, where `digits` has
 * no leading or trailing zeros. Zero has sign 0 and empty digits.
 */
export type Decimal =
  | { readonly kind: 'finite'; readonly sign: -1 | 0 | 1; readonly digits: string; readonly exponent: number }
  | { readonly kind: 'infinity'; readonly sign: -1 | 1 }
  | { readonly kind: 'nan' };

const DECIMAL_PATTERN = /^([+-]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?$/;
const INFINITY_PATTERN = /^([+-]?)inf(?:inity)?$/i;

/**
 * Exponents beyond this are rejected. PostgreSQL's own limits are far smaller
 * (float8 stops near 1e308, numeric near 1e131072), so no valid value is refused.
 */
const MAX_EXPONENT = 1_000_000_000;

/**
 * Parses decimal text: an optional sign, digits with an optional fraction, an optional
 * exponent, or NaN, Inf, Infinity in any case. Surrounding whitespace is ignored, as
 * PostgreSQL's input functions do. Returns undefined for anything else.
 */
export function parseDecimal(text: string): Decimal | undefined {
  const trimmed = text.trim();
  if (/^nan$/i.test(trimmed)) {
    return { kind: 'nan' };
  }
  const infinity = INFINITY_PATTERN.exec(trimmed);
  if (infinity !== null) {
    return { kind: 'infinity', sign: infinity[1] === '-' ? -1 : 1 };
  }

  const match = DECIMAL_PATTERN.exec(trimmed);
  if (match === null) {
    return undefined;
  }
  const [, signText, integerPart = '', fractionAfterInteger = '', fractionOnly = '', exponentText = '0'] = match;
  const fraction = fractionAfterInteger + fractionOnly;
  const written = Number(exponentText);
  if (!Number.isSafeInteger(written) || Math.abs(written) > MAX_EXPONENT) {
    return undefined;
  }

  // The value is allDigits × 10^(written - fraction.length).
  const allDigits = (integerPart + fraction).replace(/^0+/, '');
  const withoutTrailingZeros = allDigits.replace(/0+$/, '');
  if (withoutTrailingZeros === '') {
    return { kind: 'finite', sign: 0, digits: '', exponent: 0 };
  }
  const droppedZeros = allDigits.length - withoutTrailingZeros.length;
  const exponent = written - fraction.length + droppedZeros + withoutTrailingZeros.length;
  return {
    kind: 'finite',
    sign: signText === '-' ? -1 : 1,
    digits: withoutTrailingZeros,
    exponent,
  };
}

/** Returns a negative number, zero or a positive number as `a` is less than, equal to or greater than `b`. */
export function compareDecimals(a: Decimal, b: Decimal): number {
  const rankA = rank(a);
  const rankB = rank(b);
  if (rankA !== rankB) {
    return rankA - rankB;
  }
  if (a.kind !== 'finite' || b.kind !== 'finite') {
    // Same rank outside the finite values: both NaN, or infinities of the same sign.
    return 0;
  }
  if (a.sign !== b.sign) {
    return a.sign - b.sign;
  }
  if (a.sign === 0) {
    return 0;
  }
  const order = compareMagnitudes(a.digits, a.exponent, b.digits, b.exponent);
  // A larger magnitude is the smaller value below zero. Equal stays 0, never -0.
  return order === 0 ? 0 : a.sign * order;
}

/** Orders the kinds: -Infinity 0, finite 1, Infinity 2, NaN 3. */
function rank(value: Decimal): number {
  switch (value.kind) {
    case 'nan':
      return 3;
    case 'infinity':
      return value.sign === 1 ? 2 : 0;
    case 'finite':
      return 1;
  }
}

/** Compares two non-zero magnitudes 0.digits × 10^exponent. */
function compareMagnitudes(digitsA: string, exponentA: number, digitsB: string, exponentB: number): number {
  if (exponentA !== exponentB) {
    return exponentA - exponentB;
  }
  // Without trailing zeros, a digit string that is a prefix of the other is the smaller fraction.
  if (digitsA === digitsB) {
    return 0;
  }
  return digitsA < digitsB ? -1 : 1;
}
