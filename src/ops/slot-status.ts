/**
 * Reading and judging the state of walhook's replication slot from pg_replication_slots.
 * The query depends on the server version, because the columns that tell whether the
 * slot is at risk or lost arrived in several releases.
 */
import { SourceStateError } from '../core/errors.js';
import { slotLost } from '../source/setup.js';

/** The slot as one check saw it. Sizes are bytes; null where the server reports none. */
export interface SlotSnapshot {
  readonly exists: boolean;
  /** True while a walsender streams from the slot. */
  readonly active: boolean;
  readonly activePid: number | null;
  /** `reserved`, `extended`, `unreserved` or `lost`; null before PostgreSQL 13. */
  readonly walStatus: string | null;
  /**
   * Reason PostgreSQL gave for invalidating the slot (`wal_removed`, `rows_removed`, ...),
   * from `invalidation_reason` (PostgreSQL 17) or `conflicting` (16). Null while valid.
   */
  readonly invalidationReason: string | null;
  readonly confirmedFlushLsn: string | null;
  /** Current WAL position minus restart_lsn: what the server keeps for the slot. */
  readonly retainedBytes: bigint | null;
  /** Current WAL position minus confirmed_flush_lsn. */
  readonly lagBytes: bigint | null;
  /**
   * pg_stat_replication.flush_lag of the walsender in seconds: how long ago the
   * walsender sent the WAL that walhook confirmed last. 0 when nothing is unconfirmed.
   */
  readonly lagSeconds: number | null;
  /** WAL that may be written before the slot is at risk (PostgreSQL 13); null when unlimited. */
  readonly safeWalSizeBytes: bigint | null;
}

/** The row of `slotQuery()`; pg returns numeric and bigint columns as text. */
export interface SlotRow {
  readonly active: boolean;
  readonly active_pid: number | null;
  readonly wal_status: string | null;
  readonly invalidation_reason: string | null;
  readonly confirmed_flush_lsn: string | null;
  readonly retained_bytes: string | null;
  readonly lag_bytes: string | null;
  readonly flush_lag_seconds: string | number | null;
  readonly safe_wal_size: string | null;
}

/**
 * Returns the query that reads one slot (`$1`) on a server of `serverVersionNum`. On a
 * server in recovery the WAL position is the last replayed one, because
 * pg_current_wal_lsn() fails there.
 */
export function slotQuery(serverVersionNum: number): string {
  const walStatus =
    serverVersionNum >= 130000
      ? 's.wal_status, s.safe_wal_size::text AS safe_wal_size'
      : 'NULL::text AS wal_status, NULL::text AS safe_wal_size';
  let invalidation = 'NULL::text';
  if (serverVersionNum >= 170000) invalidation = 's.invalidation_reason';
  else if (serverVersionNum >= 160000) {
    invalidation = "CASE WHEN s.conflicting THEN 'rows_removed' END";
  }

  return `WITH position AS (
      SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                  ELSE pg_current_wal_lsn() END AS lsn
    )
    SELECT s.active, s.active_pid, ${walStatus},
           ${invalidation} AS invalidation_reason,
           s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
           pg_wal_lsn_diff(position.lsn, s.restart_lsn)::text AS retained_bytes,
           pg_wal_lsn_diff(position.lsn, s.confirmed_flush_lsn)::text AS lag_bytes,
           EXTRACT(EPOCH FROM r.flush_lag) AS flush_lag_seconds
      FROM pg_replication_slots s
      CROSS JOIN position
      LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
     WHERE s.slot_name = $1`;
}

/** Builds a snapshot from the query's row, or a missing slot from no row. */
export function snapshotFromRow(row: SlotRow | undefined): SlotSnapshot {
  if (row === undefined) {
    return {
      exists: false,
      active: false,
      activePid: null,
      walStatus: null,
      invalidationReason: null,
      confirmedFlushLsn: null,
      retainedBytes: null,
      lagBytes: null,
      lagSeconds: null,
      safeWalSizeBytes: null,
    };
  }
  const lagBytes = parseBytes(row.lag_bytes);
  let lagSeconds = row.flush_lag_seconds === null ? null : Number(row.flush_lag_seconds);
  // flush_lag turns NULL a while after the walsender has nothing left to send.
  if (lagSeconds === null && lagBytes === 0n) lagSeconds = 0;
  return {
    exists: true,
    active: row.active,
    activePid: row.active_pid,
    walStatus: row.wal_status,
    invalidationReason: row.invalidation_reason,
    confirmedFlushLsn: row.confirmed_flush_lsn,
    retainedBytes: parseBytes(row.retained_bytes),
    lagBytes,
    lagSeconds,
    safeWalSizeBytes: parseBytes(row.safe_wal_size),
  };
}

/**
 * `lost`: the slot cannot stream again. `unreserved`: PostgreSQL may remove WAL the slot
 * needs at the next checkpoint. `over_limit`: retained WAL passed the configured limit.
 */
export type SlotCondition = 'ok' | 'missing' | 'over_limit' | 'unreserved' | 'lost';

/** Judges a snapshot against the retained WAL limit; the worst condition wins. */
export function assessSlot(snapshot: SlotSnapshot, maxRetainedBytes: bigint): SlotCondition {
  if (!snapshot.exists) return 'missing';
  if (isLost(snapshot)) return 'lost';
  if (snapshot.walStatus === 'unreserved') return 'unreserved';
  const retained = snapshot.retainedBytes;
  if (retained !== null && retained > maxRetainedBytes) return 'over_limit';
  return 'ok';
}

/**
 * Returns true when `wal_status` is `lost` (PostgreSQL 13 and later) or the server
 * reports an invalidation reason (16 and later). The reason also covers slots
 * invalidated for other causes than removed WAL.
 */
function isLost(snapshot: SlotSnapshot): boolean {
  return snapshot.walStatus === 'lost' || snapshot.invalidationReason !== null;
}

/** Returns the fatal error for a lost slot, with the remedy for the reason PostgreSQL gave. */
export function slotLostError(slot: string, snapshot: SlotSnapshot): SourceStateError {
  const reason = snapshot.invalidationReason;
  if (reason === null || reason === 'wal_removed') return slotLost(slot);
  return new SourceStateError(
    'WALHOOK_SLOT_LOST',
    `replication slot '${slot}' was invalidated by PostgreSQL (reason: ${reason}), so changes ` +
      'since its last confirmed position cannot be streamed. Resynchronize the receivers from ' +
      `the tables, then drop the slot (SELECT pg_drop_replication_slot('${slot}')) and start ` +
      'walhook to create a new one',
  );
}

/** Returns the warning text for retained WAL above the limit, with the numbers and the remedy. */
export function overLimitMessage(
  slot: string,
  snapshot: SlotSnapshot,
  maxRetainedBytes: bigint,
): string {
  const retained = snapshot.retainedBytes ?? 0n;
  let message =
    `replication slot '${slot}' retains ${formatBytes(retained)} of WAL (${retained} bytes), ` +
    `above source.max_lag_bytes (${formatBytes(maxRetainedBytes)}). PostgreSQL keeps this WAL ` +
    'on disk until walhook confirms it. Check that the webhooks are reachable and that no ' +
    'webhook is blocked, because failing deliveries hold the slot. Check that a walhook ' +
    'replica leads and streams. Raise source.max_lag_bytes if the backlog is expected.';
  if (snapshot.safeWalSizeBytes !== null) {
    const safe = formatBytes(snapshot.safeWalSizeBytes);
    message += ` PostgreSQL invalidates the slot after about ${safe} more WAL (safe_wal_size).`;
  }
  return message;
}

/** Returns the warning text for a slot whose WAL PostgreSQL may remove at the next checkpoint. */
export function unreservedMessage(slot: string, snapshot: SlotSnapshot): string {
  return (
    `replication slot '${slot}' has wal_status 'unreserved': it retains ` +
    `${formatBytes(snapshot.retainedBytes ?? 0n)} of WAL, more than max_slot_wal_keep_size ` +
    'allows, so PostgreSQL may remove WAL it needs at the next checkpoint and the slot would ' +
    'be lost. Let walhook catch up (check the webhooks and that a replica streams) or raise ' +
    'max_slot_wal_keep_size on the server.'
  );
}

/** Formats a byte count with a binary unit, such as `1.5 GiB`. */
export function formatBytes(bytes: bigint): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Number(bytes);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 ? String(value) : value.toFixed(value >= 100 ? 0 : 1);
  return `${text} ${units[unit]}`;
}

function parseBytes(text: string | null): bigint | null {
  if (text === null) return null;
  // pg_wal_lsn_diff returns numeric; drop a fractional part in case one is printed.
  const point = text.indexOf('.');
  return BigInt(point === -1 ? text : text.slice(0, point));
}
