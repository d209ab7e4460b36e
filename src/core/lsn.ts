/**
 * PostgreSQL WAL positions (LSNs). Kept as bigint so comparisons are exact; the
 * text form `XXXXXXXX/XXXXXXXX` is two 32-bit hex halves.
 */
export type Lsn = bigint;

export const ZERO_LSN: Lsn = 0n;

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const match = LSN_PATTERN.exec(text);
  if (!match) {
    throw new TypeError(`invalid LSN '${text}': expected two hex numbers such as 0/16B3748`);
  }
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  const high = (lsn >> 32n).toString(16).toUpperCase();
  const low = (lsn & 0xffffffffn).toString(16).toUpperCase();
  return `${high}/${low}`;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
