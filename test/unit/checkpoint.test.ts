import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckpointTracker } from '../../src/core/checkpoint.js';

test('checkpoint tracker holds LSN while a delivery is pending', () => {
  const tracker = new CheckpointTracker(100n);
  const tx = tracker.begin();
  tracker.addPending(tx);
  assert.equal(tracker.commit(tx, 200n), false);
  assert.equal(tracker.confirmedLsn, 100n);
  assert.equal(tracker.complete(tx), true);
  assert.equal(tracker.confirmedLsn, 200n);
});

test('checkpoint tracker confirms out-of-order completions in commit order', () => {
  const tracker = new CheckpointTracker(0n);
  const first = tracker.begin();
  tracker.addPending(first);
  tracker.commit(first, 10n);
  const second = tracker.begin();
  tracker.addPending(second);
  tracker.commit(second, 20n);

  assert.equal(tracker.complete(second), false);
  assert.equal(tracker.confirmedLsn, 0n);
  assert.equal(tracker.complete(first), true);
  assert.equal(tracker.confirmedLsn, 20n);
});

test('checkpoint tracker confirms a transaction without events at commit', () => {
  const tracker = new CheckpointTracker(0n);
  const tx = tracker.begin();
  assert.equal(tracker.commit(tx, 50n), true);
  assert.equal(tracker.confirmedLsn, 50n);
});

test('checkpoint tracker lets an empty transaction wait behind a pending one', () => {
  const tracker = new CheckpointTracker(0n);
  const busy = tracker.begin();
  tracker.addPending(busy);
  tracker.commit(busy, 10n);
  const empty = tracker.begin();
  tracker.commit(empty, 30n);
  assert.equal(tracker.confirmedLsn, 0n);
  assert.equal(tracker.heldTransactions, 1);

  tracker.complete(busy);
  assert.equal(tracker.confirmedLsn, 30n);
});

test('checkpoint tracker waits for the commit even when events finished early', () => {
  const tracker = new CheckpointTracker(0n);
  const tx = tracker.begin();
  tracker.addPending(tx);
  tracker.complete(tx);
  assert.equal(tracker.confirmedLsn, 0n);
  assert.equal(tracker.commit(tx, 40n), true);
  assert.equal(tracker.confirmedLsn, 40n);
});

test('checkpoint tracker ignores keepalives while a delivery is pending', () => {
  const tracker = new CheckpointTracker(0n);
  const tx = tracker.begin();
  tracker.addPending(tx);
  tracker.commit(tx, 10n);
  assert.equal(tracker.observeServerPosition(5000n), false);
  assert.equal(tracker.confirmedLsn, 0n);

  tracker.complete(tx);
  assert.equal(tracker.observeServerPosition(5000n), true);
  assert.equal(tracker.confirmedLsn, 5000n);
});

test('checkpoint tracker ignores keepalives while a transaction is open', () => {
  const tracker = new CheckpointTracker(0n);
  tracker.begin();
  assert.equal(tracker.observeServerPosition(5000n), false);
  assert.equal(tracker.confirmedLsn, 0n);
});

test('checkpoint tracker never moves backwards', () => {
  const tracker = new CheckpointTracker(100n);
  assert.equal(tracker.observeServerPosition(50n), false);
  const tx = tracker.begin();
  tracker.commit(tx, 80n);
  assert.equal(tracker.confirmedLsn, 100n);
});

test('checkpoint tracker abandons an open transaction without confirming it', () => {
  const tracker = new CheckpointTracker(0n);
  const cut = tracker.begin();
  tracker.addPending(cut);
  tracker.abandonOpen();
  assert.equal(tracker.hasOpenTransaction, false);

  const resent = tracker.begin();
  tracker.addPending(resent);
  tracker.commit(resent, 70n);
  tracker.complete(resent);
  assert.equal(tracker.confirmedLsn, 0n, 'the abandoned copy still has a pending delivery');

  tracker.complete(cut);
  assert.equal(tracker.confirmedLsn, 70n);
});

test('checkpoint tracker stays exact over many transactions', () => {
  const tracker = new CheckpointTracker(0n);
  const handles = [];
  for (let i = 1; i <= 5000; i++) {
    const tx = tracker.begin();
    tracker.addPending(tx);
    tracker.addPending(tx);
    tracker.commit(tx, BigInt(i * 10));
    handles.push(tx);
  }
  // Finish every second transaction first: nothing may be confirmed past the first gap.
  for (let i = 1; i < handles.length; i += 2) {
    tracker.complete(handles[i]!);
    tracker.complete(handles[i]!);
  }
  assert.equal(tracker.confirmedLsn, 0n);
  tracker.complete(handles[0]!);
  assert.equal(tracker.confirmedLsn, 0n);
  tracker.complete(handles[0]!);
  assert.equal(tracker.confirmedLsn, 20n);
  for (let i = 2; i < handles.length; i += 2) {
    tracker.complete(handles[i]!);
    tracker.complete(handles[i]!);
  }
  assert.equal(tracker.confirmedLsn, 50000n);
  assert.equal(tracker.pendingEvents, 0);
  assert.equal(tracker.heldTransactions, 0);
});
