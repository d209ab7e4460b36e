import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelayMs, nextDelayMs, parseRetryAfterMs, sleep } from '../../src/core/retry.js';

const policy = { initialDelayMs: 1000, maxDelayMs: 60_000 };

test('backoff grows exponentially up to the cap', () => {
  const top = (): number => 0.999999;
  assert.equal(backoffDelayMs(policy, 0, top), 999);
  assert.equal(backoffDelayMs(policy, 3, top), 7999);
  assert.equal(backoffDelayMs(policy, 30, top), 59_999);
});

test('backoff uses full jitter and at least 1 ms', () => {
  assert.equal(backoffDelayMs(policy, 5, () => 0), 1);
  assert.equal(backoffDelayMs(policy, 1, () => 0.5), 1000);
});

test('retry-after accepts seconds and HTTP dates', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfterMs('7', now), 7000);
  assert.equal(parseRetryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
  assert.equal(parseRetryAfterMs('soon', now), undefined);
  assert.equal(parseRetryAfterMs(undefined, now), undefined);
});

test('retry-after wins over backoff but not over the cap', () => {
  assert.equal(nextDelayMs(policy, 0, 5000, () => 0), 5000);
  assert.equal(nextDelayMs(policy, 0, 600_000, () => 0), 60_000);
});

test('sleep rejects when aborted', async () => {
  const controller = new AbortController();
  const pending = sleep(60_000, controller.signal);
  controller.abort(new Error('stop'));
  await assert.rejects(pending, /stop/);
});
