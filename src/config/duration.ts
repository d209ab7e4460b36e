/**
 * Duration strings in the configuration file: a non-negative decimal number followed by
 * a unit, with no space (`250ms`, `10s`, `1.5m`, `1h`).
 */

const UNIT_MS = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
} as const;

type DurationUnit = keyof typeof UNIT_MS;

const DURATION_PATTERN = /^(\d+)(?:\.(\d+))?(ms|s|m|h)$/;

const EXAMPLES = "'250ms', '10s', '1.5m' or '1h'";

/** A duration string that `parseDuration` cannot read; the message names the value. */
export class InvalidDurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidDurationError';
  }
}

/**
 * Parses a duration string such as `10s` into milliseconds.
 *
 * Fractions are allowed while the result is a whole number of milliseconds (`1.5s` is
 * 1500, `0.5ms` is rejected). Throws InvalidDurationError for anything else, including
 * a bare number, because a number without a unit is ambiguous.
 */
export function parseDuration(text: string): number {
  const match = DURATION_PATTERN.exec(text);
  if (match === null) {
    throw new InvalidDurationError(describeSyntaxError(text));
  }

  const [, whole = '', fraction = '', unit = 'ms'] = match;
  const factor = BigInt(UNIT_MS[unit as DurationUnit]);
  const scale = 10n ** BigInt(fraction.length);
  const scaledFraction = BigInt(fraction || '0') * factor;

  if (scaledFraction % scale !== 0n) {
    throw new InvalidDurationError(
      `invalid duration '${text}': it is not a whole number of milliseconds`,
    );
  }

  const milliseconds = BigInt(whole) * factor + scaledFraction / scale;
  if (milliseconds > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidDurationError(`invalid duration '${text}': the value is too large`);
  }
  return Number(milliseconds);
}

/**
 * Formats milliseconds with the largest unit that divides them exactly, so that
 * `parseDuration(formatDuration(ms)) === ms` for any non-negative safe integer.
 */
export function formatDuration(milliseconds: number): string {
  if (!Number.isSafeInteger(milliseconds) || milliseconds < 0) {
    throw new RangeError(`expected a non-negative integer number of milliseconds, got ${milliseconds}`);
  }

  for (const unit of ['h', 'm', 's'] as const) {
    const factor = UNIT_MS[unit];
    if (milliseconds !== 0 && milliseconds % factor === 0) {
      return `${milliseconds / factor}${unit}`;
    }
  }
  return `${milliseconds}ms`;
}

function describeSyntaxError(text: string): string {
  const trimmed = text.trim();
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) {
    return `invalid duration '${text}': a bare number has no unit; write it with one, such as '${trimmed}s' or '${trimmed}ms'`;
  }
  if (trimmed.startsWith('-')) {
    return `invalid duration '${text}': a duration cannot be negative`;
  }
  if (trimmed !== text || /\s/.test(trimmed)) {
    return `invalid duration '${text}': remove the spaces, as in ${EXAMPLES}`;
  }
  return `invalid duration '${text}': expected a number followed by ms, s, m or h, such as ${EXAMPLES}`;
}
