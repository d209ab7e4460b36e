/**
 * Byte sizes in the configuration file: a whole number of bytes (`1073741824`), or a
 * number followed by a binary unit with no space (`512MiB`, `1GiB`, `1.5GiB`).
 */

const UNIT_BYTES = {
  B: 1n,
  KiB: 1024n,
  MiB: 1024n ** 2n,
  GiB: 1024n ** 3n,
  TiB: 1024n ** 4n,
} as const;

type SizeUnit = keyof typeof UNIT_BYTES;

const SIZE_PATTERN = /^(\d+)(?:\.(\d+))?(B|KiB|MiB|GiB|TiB)$/;

/** Decimal units that people often write; the message suggests the binary unit. */
const DECIMAL_UNITS: Readonly<Record<string, SizeUnit>> = {
  k: 'KiB',
  kb: 'KiB',
  m: 'MiB',
  mb: 'MiB',
  g: 'GiB',
  gb: 'GiB',
  t: 'TiB',
  tb: 'TiB',
};

/** A byte size that `parseByteSize` cannot read; the message names the value. */
export class InvalidByteSizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidByteSizeError';
  }
}

/**
 * Parses a byte size into bytes. A fraction is allowed while the result is a whole
 * number of bytes (`1.5KiB` is 1536). Throws InvalidByteSizeError for anything else.
 */
export function parseByteSize(value: number | string): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new InvalidByteSizeError(
        `invalid size ${value}; write a whole number of bytes or a size such as '1GiB'`,
      );
    }
    return BigInt(value);
  }

  const match = SIZE_PATTERN.exec(value);
  if (match === null) {
    throw new InvalidByteSizeError(describeSyntaxError(value));
  }
  const [, whole = '', fraction = '', unit = 'B'] = match;
  const factor = UNIT_BYTES[unit as SizeUnit];
  const scale = 10n ** BigInt(fraction.length);
  const scaledFraction = BigInt(fraction || '0') * factor;
  if (scaledFraction % scale !== 0n) {
    throw new InvalidByteSizeError(`invalid size '${value}': it is not a whole number of bytes`);
  }
  return BigInt(whole) * factor + scaledFraction / scale;
}

function describeSyntaxError(text: string): string {
  const decimal = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/.exec(text.trim());
  const suggestion = decimal === null ? undefined : DECIMAL_UNITS[decimal[2]!.toLowerCase()];
  if (decimal !== null && suggestion !== undefined) {
    return `invalid size '${text}'; units are binary, so write '${decimal[1]}${suggestion}'`;
  }
  return (
    `invalid size '${text}'; write a whole number of bytes or a number with ` +
    "B, KiB, MiB, GiB or TiB, such as '1GiB'"
  );
}
