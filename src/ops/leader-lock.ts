/**
 * The advisory lock key that walhook replicas compete for. Replicas with the same
 * database and slot name compute the same key, so they elect one leader among them.
 */
import { createHash } from 'node:crypto';

/** Prefix that keeps walhook's keys apart from advisory locks that applications take. */
const KEY_NAMESPACE = 'walhook-leader';

/**
 * Returns the 64-bit key of `pg_try_advisory_lock(bigint)` for a slot in a database.
 *
 * The key is the first 8 bytes of SHA-256 over `walhook-leader`, the database name and
 * the slot name, each followed by a NUL byte, read as a big-endian signed integer (the
 * range of PostgreSQL's bigint). The names are hashed as written, with no case folding.
 */
export function leaderLockKey(database: string, slot: string): bigint {
  const digest = createHash('sha256')
    .update(`${KEY_NAMESPACE}\0${database}\0${slot}\0`, 'utf8')
    .digest();
  return digest.readBigInt64BE(0);
}

/** The columns of a pg_locks row that identify an advisory lock on a bigint key. */
export interface AdvisoryLockFields {
  /** The key's high 32 bits, unsigned, as pg_locks.classid shows them. */
  readonly classid: number;
  /** The key's low 32 bits, unsigned, as pg_locks.objid shows them. */
  readonly objid: number;
  /** Always 1 for a bigint key; two int4 keys show 2. */
  readonly objsubid: 1;
}

/**
 * Splits `key` into the pg_locks columns that show it, so a query can find the session
 * that holds the lock: `WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND
 * objsubid = 1`.
 */
export function advisoryLockFields(key: bigint): AdvisoryLockFields {
  const unsigned = BigInt.asUintN(64, key);
  return {
    classid: Number(unsigned >> 32n),
    objid: Number(unsigned & 0xffff_ffffn),
    objsubid: 1,
  };
}
