import assert from 'node:assert/strict';
import { test } from 'node:test';

import { advisoryLockFields, leaderLockKey } from '../../src/ops/leader-lock.js';

test('leader lock key is stable for one slot', () => {
  assert.equal(leaderLockKey('app', 'walhook'), leaderLockKey('app', 'walhook'));
});

test('leader lock key differs by slot and database', () => {
  const keys = new Set([
    leaderLockKey('app', 'walhook'),
    leaderLockKey('app', 'walhook_2'),
    leaderLockKey('other', 'walhook'),
    // The separator keeps a name boundary from moving unnoticed.
    leaderLockKey('appw', 'alhook'),
  ]);
  assert.equal(keys.size, 4);
});

test('leader lock key fits a signed bigint', () => {
  for (const slot of ['a', 'walhook', 'orders_slot', 'x'.repeat(63)]) {
    const key = leaderLockKey('postgres', slot);
    assert.ok(key >= -(2n ** 63n), `key ${key} is below the bigint range`);
    assert.ok(key < 2n ** 63n, `key ${key} is above the bigint range`);
  }
});

test('advisory lock fields split the key', () => {
  assert.deepEqual(advisoryLockFields(0x0000_0001_0000_0002n), { classid: 1, objid: 2, objsubid: 1 });
  // A negative key shows as its two's complement halves, as pg_locks prints them.
  assert.deepEqual(advisoryLockFields(-1n), { classid: 0xffff_ffff, objid: 0xffff_ffff, objsubid: 1 });
  assert.deepEqual(advisoryLockFields(-(2n ** 63n)), { classid: 0x8000_0000, objid: 0, objsubid: 1 });
});
