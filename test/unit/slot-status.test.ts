import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  assessSlot,
  formatBytes,
  overLimitMessage,
  type SlotRow,
  type SlotSnapshot,
  slotLostError,
  slotQuery,
  snapshotFromRow,
} from '../../src/ops/slot-status.js';

const ROW: SlotRow = {
  active: true,
  active_pid: 4242,
  wal_status: 'reserved',
  invalidation_reason: null,
  confirmed_flush_lsn: '0/16B3748',
  retained_bytes: '2048',
  lag_bytes: '1024',
  flush_lag_seconds: '0.5',
  safe_wal_size: null,
};

function snapshot(fields: Partial<SlotRow>): SlotSnapshot {
  return snapshotFromRow({ ...ROW, ...fields });
}

test('slot snapshot converts the row', () => {
  assert.deepEqual(snapshotFromRow(ROW), {
    exists: true,
    active: true,
    activePid: 4242,
    walStatus: 'reserved',
    invalidationReason: null,
    confirmedFlushLsn: '0/16B3748',
    retainedBytes: 2048n,
    lagBytes: 1024n,
    lagSeconds: 0.5,
    safeWalSizeBytes: null,
  });
});

test('slot snapshot reads numeric text with a fraction', () => {
  assert.equal(snapshot({ retained_bytes: '4096.0' }).retainedBytes, 4096n);
});

test('slot snapshot sets zero lag seconds when caught up', () => {
  assert.equal(snapshot({ lag_bytes: '0', flush_lag_seconds: null }).lagSeconds, 0);
  assert.equal(snapshot({ lag_bytes: '10', flush_lag_seconds: null }).lagSeconds, null);
});

test('slot snapshot of no row is missing', () => {
  const missing = snapshotFromRow(undefined);
  assert.equal(missing.exists, false);
  assert.equal(assessSlot(missing, 1n), 'missing');
});

test('slot assessment orders conditions', () => {
  const limit = 1000n;
  assert.equal(assessSlot(snapshot({ retained_bytes: '999' }), limit), 'ok');
  assert.equal(assessSlot(snapshot({ retained_bytes: '1000' }), limit), 'ok');
  assert.equal(assessSlot(snapshot({ retained_bytes: '1001' }), limit), 'over_limit');
  assert.equal(assessSlot(snapshot({ retained_bytes: '1001', wal_status: 'extended' }), limit), 'over_limit');
  assert.equal(assessSlot(snapshot({ retained_bytes: '5', wal_status: 'unreserved' }), limit), 'unreserved');
  assert.equal(assessSlot(snapshot({ retained_bytes: null, wal_status: 'lost' }), limit), 'lost');
  assert.equal(assessSlot(snapshot({ invalidation_reason: 'rows_removed' }), limit), 'lost');
});

test('slot assessment works without wal_status', () => {
  // PostgreSQL 12 and older have no wal_status column; the query returns NULL.
  assert.equal(assessSlot(snapshot({ wal_status: null, retained_bytes: '10' }), 100n), 'ok');
  assert.equal(assessSlot(snapshot({ wal_status: null, retained_bytes: '1000' }), 100n), 'over_limit');
});

test('slot query reads the columns of each version', () => {
  assert.doesNotMatch(slotQuery(120000), /s\.wal_status/);
  assert.match(slotQuery(120000), /NULL::text AS wal_status/);
  assert.match(slotQuery(130000), /s\.wal_status, s\.safe_wal_size/);
  assert.match(slotQuery(160000), /s\.conflicting/);
  assert.match(slotQuery(170000), /s\.invalidation_reason/);
});

test('lost slot error names the remedy', () => {
  const removed = slotLostError('orders', snapshot({ wal_status: 'lost' }));
  assert.equal(removed.code, 'WALHOOK_SLOT_LOST');
  assert.match(removed.message, /max_slot_wal_keep_size/);
  assert.match(removed.message, /pg_drop_replication_slot\('orders'\)/);

  const conflict = slotLostError('orders', snapshot({ invalidation_reason: 'rows_removed' }));
  assert.equal(conflict.code, 'WALHOOK_SLOT_LOST');
  assert.match(conflict.message, /reason: rows_removed/);
  assert.match(conflict.message, /Resynchronize the receivers/);
});

test('over limit message gives numbers and remedy', () => {
  const message = overLimitMessage('orders', snapshot({ retained_bytes: String(3n * 1024n ** 3n), safe_wal_size: String(512n * 1024n ** 2n) }), 1024n ** 3n);
  assert.match(message, /retains 3\.0 GiB of WAL \(3221225472 bytes\)/);
  assert.match(message, /source\.max_lag_bytes \(1\.0 GiB\)/);
  assert.match(message, /webhooks are reachable/);
  assert.match(message, /after about 512 MiB more WAL \(safe_wal_size\)/);
});

test('format bytes uses binary units', () => {
  assert.equal(formatBytes(0n), '0 bytes');
  assert.equal(formatBytes(1023n), '1023 bytes');
  assert.equal(formatBytes(1536n), '1.5 KiB');
  assert.equal(formatBytes(200n * 1024n ** 2n), '200 MiB');
  assert.equal(formatBytes(5n * 1024n ** 4n), '5.0 TiB');
});
