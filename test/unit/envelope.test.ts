import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RowChange } from '../../src/pipeline/change.js';
import { buildEnvelope, envelopeBody, eventId, formatCommitTime } from '../../src/pipeline/envelope.js';
import { UNCHANGED_TOAST, type RelationInfo } from '../../src/source/messages.js';

const relation: RelationInfo = {
  oid: 16384,
  schema: 'public',
  name: 'orders',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', typeOid: 20, typeMod: -1, isKey: true },
    { name: 'note', typeOid: 25, typeMod: -1, isKey: false },
    { name: 'meta', typeOid: 3802, typeMod: -1, isKey: false },
  ],
};

const transaction = { xid: 1234, commitLsn: 0x16b3748n, commitTimeMicros: 0n };

function insert(lsn: bigint, ordinal = 0): RowChange {
  return {
    op: 'INSERT',
    transaction,
    relation,
    lsn,
    lsnOrdinal: ordinal,
    newTuple: ['9007199254740993', 'a "quoted"\nline', '{"ext": 12345678901234567891}'],
  };
}

test('envelope keeps big integers exact in the body', () => {
  const body = envelopeBody(buildEnvelope('order_events', insert(100n)), null, 0);
  assert.match(body, /"id":9007199254740993/);
  assert.match(body, /"ext": 12345678901234567891/);
  const parsed = JSON.parse(body);
  assert.equal(parsed.event.op, 'INSERT');
  assert.equal(parsed.event.data.old, null);
  assert.equal(parsed.event.data.new.note, 'a "quoted"\nline');
  assert.deepEqual(parsed.delivery_info, { max_retries: null, current_retry: 0 });
  assert.equal(parsed.lsn, '0/64');
  assert.equal(parsed.xid, 1234);
  assert.deepEqual(parsed.table, { schema: 'public', name: 'orders' });
  assert.deepEqual(parsed.trigger, { name: 'order_events' });
});

test('envelope id is stable and distinct per change and trigger', () => {
  assert.equal(eventId('t', insert(100n)), eventId('t', insert(100n)));
  assert.notEqual(eventId('t', insert(100n)), eventId('u', insert(100n)));
  assert.notEqual(eventId('t', insert(100n)), eventId('t', insert(100n, 1)));
  assert.match(eventId('t', insert(100n)), /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('envelope current_retry counts attempts', () => {
  const envelope = buildEnvelope('t', insert(1n));
  assert.equal(JSON.parse(envelopeBody(envelope, null, 3)).delivery_info.current_retry, 3);
});

test('envelope leaves unchanged TOAST columns out and names them', () => {
  const change: RowChange = {
    op: 'UPDATE',
    transaction,
    relation,
    lsn: 5n,
    lsnOrdinal: 0,
    oldKind: null,
    oldTuple: null,
    newTuple: ['1', 'paid', UNCHANGED_TOAST],
  };
  const parsed = JSON.parse(envelopeBody(buildEnvelope('t', change), null, 0));
  assert.deepEqual(parsed.event.data.new, { id: 1, note: 'paid' });
  assert.deepEqual(parsed.event.unchanged_columns, ['meta']);
  assert.equal(parsed.event.data.old, null);
});

test('envelope marks key-only old rows', () => {
  const change: RowChange = {
    op: 'DELETE',
    transaction,
    relation,
    lsn: 5n,
    lsnOrdinal: 0,
    oldKind: 'key',
    oldTuple: ['7', null, null],
  };
  const parsed = JSON.parse(envelopeBody(buildEnvelope('t', change), null, 0));
  assert.deepEqual(parsed.event.data.old, { id: 7 });
  assert.equal(parsed.event.old_row, 'key');
  assert.equal(parsed.event.data.new, null);
});

test('commit time formats with microseconds', () => {
  assert.equal(formatCommitTime(0n), '2000-01-01T00:00:00.000000Z');
  assert.equal(formatCommitTime(829_657_696_789_123n), '2026-04-16T12:28:16.789123Z');
  assert.equal(formatCommitTime(1_500n), '2000-01-01T00:00:00.001500Z');
  assert.equal(formatCommitTime(7n), '2000-01-01T00:00:00.000007Z');
});

test('commit time before 2000 and after 2285', () => {
  assert.equal(formatCommitTime(-1n), '1999-12-31T23:59:59.999999Z');
  assert.equal(formatCommitTime(-1_000_500n), '1999-12-31T23:59:58.999500Z');
  // 2^53 + 1 microseconds after 2000 cannot pass through a double.
  assert.equal(formatCommitTime(9_007_199_254_740_993n), '2285-06-04T23:47:34.740993Z');
});
