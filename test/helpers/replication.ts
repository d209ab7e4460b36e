/** Anything that runs SQL and returns rows, such as TestPostgres. */
export interface Queryable {
  query<Row extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Row[]>;
}

/** A replication slot as pg_replication_slots reports it. */
export interface SlotState {
  /** True while a walsender streams from the slot. */
  readonly active: boolean;
  /** Position up to which the consumer confirmed processing, such as '0/16B3748'. */
  readonly confirmedFlushLsn: string | null;
  /** `reserved`, `extended`, `unreserved` or `lost`. */
  readonly walStatus: string | null;
  /** Bytes of WAL between the current write position and `confirmedFlushLsn`. */
  readonly lagBytes: bigint | null;
}

interface SlotRow extends Record<string, unknown> {
  active: boolean;
  confirmed_flush_lsn: string | null;
  wal_status: string | null;
  lag_bytes: string | null;
}

/** Reads the state of replication slot `slot`, or returns undefined when it does not exist. */
export async function slotState(db: Queryable, slot: string): Promise<SlotState | undefined> {
  const rows = await db.query<SlotRow>(
    `SELECT active, confirmed_flush_lsn, wal_status,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) AS lag_bytes
       FROM pg_replication_slots
      WHERE slot_name = $1`,
    [slot],
  );
  const row = rows[0];
  if (row === undefined) {
    return undefined;
  }
  return {
    active: row.active,
    confirmedFlushLsn: row.confirmed_flush_lsn,
    walStatus: row.wal_status,
    // pg_wal_lsn_diff returns numeric, which node-postgres returns as a string.
    lagBytes: row.lag_bytes === null ? null : BigInt(row.lag_bytes),
  };
}

/** Returns the current WAL write position, such as '0/16B3748'. */
export async function currentWalLsn(db: Queryable): Promise<string> {
  const rows = await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const lsn = rows[0]?.lsn;
  if (lsn === undefined) {
    throw new Error('pg_current_wal_lsn() returned no row');
  }
  return lsn;
}

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/**
 * Parses an LSN in PostgreSQL's text form, two hexadecimal 32-bit halves separated by
 * '/', into a 64-bit position: `parseLsn('0/16B3748') === 0x16B3748n`.
 */
export function parseLsn(text: string): bigint {
  const match = LSN_PATTERN.exec(text);
  if (match === null) {
    throw new Error(`invalid LSN '${text}': expected two hexadecimal numbers such as '0/16B3748'`);
  }
  const [, high = '0', low = '0'] = match;
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

/** Formats a 64-bit position in PostgreSQL's LSN text form, such as '0/16B3748'. */
export function formatLsn(position: bigint): string {
  if (position < 0n || position > 0xffff_ffff_ffff_ffffn) {
    throw new Error(`LSN out of range: ${position}`);
  }
  const high = (position >> 32n).toString(16).toUpperCase();
  const low = (position & 0xffff_ffffn).toString(16).toUpperCase();
  return `${high}/${low}`;
}

/** Returns a negative number, 0 or a positive number as `a` is before, at or after `b`. */
export function compareLsn(a: string | bigint, b: string | bigint): number {
  const left = typeof a === 'bigint' ? a : parseLsn(a);
  const right = typeof b === 'bigint' ? b : parseLsn(b);
  if (left < right) {
    return -1;
  }
  return left > right ? 1 : 0;
}
