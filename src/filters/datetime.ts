/**
 * Parsing of dates and timestamps into instants for `where` comparisons.
 *
 * Values arrive as PostgreSQL prints them with DateStyle ISO (`2024-03-10`,
 * `2024-03-10 12:34:56.5`, `2024-03-10 12:34:56.5+00`, `0044-03-15 BC`, `infinity`).
 * Operands may also use `T` between date and time and `Z` or `+05:30` as offset.
 * Every value becomes microseconds since 1970-01-01 00:00 UTC. A value without an
 * offset counts as UTC, which is the TimeZone that walhook pins on its sessions, so
 * date, timestamp and timestamptz values compare the way PostgreSQL casts them there.
 */

export type Instant =
  | { readonly kind: 'finite'; readonly micros: bigint }
  | { readonly kind: 'infinity'; readonly sign: -1 | 1 };

const DATE_TIME_PATTERN =
  /^(\d{4,7})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?(?:\s*([Zz]|[+-]\d\d(?::?\d\d(?::?\d\d)?)?))?)?(?:\s+(BC|AD))?$/i;

const INFINITY_PATTERN = /^([+-]?)infinity$/i;

const MICROS_PER_SECOND = 1_000_000n;
const MICROS_PER_DAY = 86_400n * MICROS_PER_SECOND;

/** Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar. */
const DAYS_TO_UNIX_EPOCH = 719_468;

/** PostgreSQL accepts UTC offsets up to 15:59:59. */
const MAX_OFFSET_HOURS = 15;

/**
 * Parses an ISO date or timestamp with an optional UTC offset and era, or
 * `infinity`/`-infinity`. Returns undefined for any other text or an invalid field,
 * such as February 30.
 */
export function parseInstant(text: string): Instant | undefined {
  const trimmed = text.trim();
  const infinity = INFINITY_PATTERN.exec(trimmed);
  if (infinity !== null) {
    return { kind: 'infinity', sign: infinity[1] === '-' ? -1 : 1 };
  }

  const match = DATE_TIME_PATTERN.exec(trimmed);
  if (match === null) {
    return undefined;
  }
  const [, yearText = '', monthText = '', dayText = '', hourText, minuteText, secondText, fraction, offset, era] = match;

  const writtenYear = Number(yearText);
  const isBc = era?.toUpperCase() === 'BC';
  if (isBc && writtenYear === 0) {
    return undefined;
  }
  // Astronomical numbering: 1 BC is year 0, 2 BC is year -1.
  const year = isBc ? 1 - writtenYear : writtenYear;
  const month = Number(monthText);
  const day = Number(dayText);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    return undefined;
  }

  const timeMicros = parseTimeOfDay(hourText, minuteText, secondText, fraction);
  const offsetSeconds = offset === undefined ? 0 : parseOffset(offset);
  if (timeMicros === undefined || offsetSeconds === undefined) {
    return undefined;
  }
  const micros =
    BigInt(daysFromCivil(year, month, day)) * MICROS_PER_DAY + timeMicros - BigInt(offsetSeconds) * MICROS_PER_SECOND;
  return { kind: 'finite', micros };
}

/** Returns a negative number, zero or a positive number as `a` is before, at or after `b`. */
export function compareInstants(a: Instant, b: Instant): number {
  const rankA = a.kind === 'infinity' ? a.sign : 0;
  const rankB = b.kind === 'infinity' ? b.sign : 0;
  if (rankA !== rankB || a.kind !== 'finite' || b.kind !== 'finite') {
    return rankA - rankB;
  }
  if (a.micros === b.micros) {
    return 0;
  }
  return a.micros < b.micros ? -1 : 1;
}

function parseTimeOfDay(
  hourText: string | undefined,
  minuteText: string | undefined,
  secondText: string | undefined,
  fraction: string | undefined,
): bigint | undefined {
  if (hourText === undefined || minuteText === undefined) {
    return 0n;
  }
  const hour = Number(hourText);
  const minute = Number(minuteText);
  const second = Number(secondText ?? '0');
  const fractionMicros = parseFractionMicros(fraction ?? '');
  // PostgreSQL accepts 24:00:00 as the end of a day and a leap second 60, which both roll over.
  const isEndOfDay = hour === 24 && minute === 0 && second === 0 && fractionMicros === 0n;
  if ((hour > 23 && !isEndOfDay) || minute > 59 || second > 60) {
    return undefined;
  }
  return BigInt(hour * 3600 + minute * 60 + second) * MICROS_PER_SECOND + fractionMicros;
}

/**
 * Converts the digits after the decimal point to microseconds.
 * NOTE: a seventh digit of 5 rounds up, while PostgreSQL rounds half to even, so
 * operands with more than six fraction digits can differ by one microsecond.
 */
function parseFractionMicros(digits: string): bigint {
  const padded = digits.padEnd(7, '0');
  const micros = BigInt(padded.slice(0, 6));
  return padded.charCodeAt(6) >= '5'.charCodeAt(0) ? micros + 1n : micros;
}

/** Returns the offset east of UTC in seconds, or undefined when a field is out of range. */
function parseOffset(offset: string): number | undefined {
  if (offset === 'Z' || offset === 'z') {
    return 0;
  }
  const sign = offset.startsWith('-') ? -1 : 1;
  const digits = offset.slice(1).replace(/:/g, '');
  const hours = Number(digits.slice(0, 2));
  const minutes = Number(digits.slice(2, 4) || '0');
  const seconds = Number(digits.slice(4, 6) || '0');
  if (hours > MAX_OFFSET_HOURS || minutes > 59 || seconds > 59) {
    return undefined;
  }
  return sign * (hours * 3600 + minutes * 60 + seconds);
}

function isLeapYear(year: number): boolean {
  return mod(year, 4) === 0 && (mod(year, 100) !== 0 || mod(year, 400) === 0);
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) {
    return isLeapYear(year) ? 29 : 28;
  }
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * Counts days from 1970-01-01 to a proleptic Gregorian date with an astronomical year.
 * The count runs in 400-year cycles of 146097 days from a year that starts on March 1,
 * so that the leap day falls at the end of the year.
 */
function daysFromCivil(year: number, month: number, day: number): number {
  const marchYear = month <= 2 ? year - 1 : year;
  const cycle = Math.floor(marchYear / 400);
  const yearOfCycle = marchYear - cycle * 400;
  const monthFromMarch = (month + 9) % 12;
  const dayOfYear = Math.floor((153 * monthFromMarch + 2) / 5) + day - 1;
  const dayOfCycle = yearOfCycle * 365 + Math.floor(yearOfCycle / 4) - Math.floor(yearOfCycle / 100) + dayOfYear;
  return cycle * 146_097 + dayOfCycle - DAYS_TO_UNIX_EPOCH;
}

function mod(value: number, divisor: number): number {
  return ((value % divisor) + divisor) % divisor;
}
