import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ActivityLog, combineObservers } from '../../src/ops/activity.js';
import type { DeliveryItem, DeliveryObserver } from '../../src/sinks/webhook/delivery-engine.js';

function item(id: string, triggerName = 'orders'): DeliveryItem {
  return {
    envelope: { id, head: '{', tail: '}' },
    triggerName,
    rowKey: 'k',
    tableKey: 't',
    barrier: false,
    bytes: 10,
    table: { schema: 'public', name: 'orders' },
    op: 'INSERT',
    lsn: '0/1',
    onDone: () => undefined,
  };
}

function failedAttempt(observer: DeliveryObserver, items: DeliveryItem[], fields: { status: number | null; error?: string | null; attempt?: number }): void {
  observer.attempt?.({
    webhook: 'orders-api',
    events: items.length,
    status: fields.status,
    ok: false,
    durationMs: 5,
    attempt: fields.attempt ?? 0,
    items,
    error: fields.error ?? null,
  });
}

test('activity lists failed attempts newest first', () => {
  let now = 1_000;
  const log = new ActivityLog({ now: () => now });
  const observer = log.observer('orders-api');
  failedAttempt(observer, [item('event-1')], { status: 503 });
  now = 2_000;
  failedAttempt(observer, [item('event-2', 'refunds')], { status: null, error: 'ECONNREFUSED: connect ECONNREFUSED', attempt: 2 });

  const failures = log.failures();
  assert.equal(failures.length, 2);
  assert.deepEqual(failures[0], {
    at: 2_000,
    webhook: 'orders-api',
    trigger: 'refunds',
    eventId: 'event-2',
    events: 1,
    status: null,
    error: 'ECONNREFUSED: connect ECONNREFUSED',
    attempt: 3,
  });
  assert.equal(failures[1]?.eventId, 'event-1');
  assert.equal(failures[1]?.status, 503);
});

test('activity keeps at most maxFailures', () => {
  const log = new ActivityLog({ maxFailures: 3 });
  const observer = log.observer('orders-api');
  for (let index = 1; index <= 5; index += 1) failedAttempt(observer, [item(`event-${index}`)], { status: 500 });
  assert.deepEqual(
    log.failures().map((failure) => failure.eventId),
    ['event-5', 'event-4', 'event-3'],
  );
});

test('activity ignores successful attempts', () => {
  const log = new ActivityLog();
  log.observer('orders-api').attempt?.({
    webhook: 'orders-api',
    events: 1,
    status: 200,
    ok: true,
    durationMs: 5,
    attempt: 0,
    items: [item('event-1')],
  });
  assert.equal(log.failures().length, 0);
});

test('activity lists an event given up without attempt', () => {
  const log = new ActivityLog();
  const observer = log.observer('orders-api');
  observer.done?.(item('too-large'), 'dead_lettered');
  failedAttempt(observer, [item('event-2')], { status: 404 });
  observer.done?.(item('event-2'), 'dead_lettered');

  const failures = log.failures();
  assert.equal(failures.length, 2, 'the dead letter after a listed failure adds no entry');
  assert.equal(failures[1]?.eventId, 'too-large');
  assert.equal(failures[1]?.attempt, 0);
  assert.match(failures[1]?.error ?? '', /dead-letter table/);
});

test('activity samples count per interval', () => {
  let now = 0;
  let lag: bigint | null = 2048n;
  const log = new ActivityLog({ now: () => now, sampleIntervalMs: 10_000, lagBytes: () => lag });
  const observer = log.observer('orders-api');
  observer.done?.(item('a'), 'delivered');
  observer.done?.(item('b'), 'delivered');
  failedAttempt(observer, [item('c'), item('d')], { status: 500 });
  observer.done?.(item('c'), 'dead_lettered');
  now = 10_000;
  log.closeSample();
  lag = null;
  now = 12_500;
  observer.done?.(item('e'), 'delivered');

  const samples = log.samples();
  assert.equal(samples.length, 2, 'one closed sample and the open one');
  assert.deepEqual(samples[0], { at: 10_000, intervalMs: 10_000, delivered: 2, failed: 2, deadLettered: 1, lagBytes: 2048 });
  assert.deepEqual(samples[1], { at: 12_500, intervalMs: 2_500, delivered: 1, failed: 0, deadLettered: 0, lagBytes: null });
});

test('activity keeps at most maxSamples', () => {
  let now = 0;
  const log = new ActivityLog({ now: () => now, maxSamples: 2 });
  for (let index = 1; index <= 4; index += 1) {
    now = index * 10_000;
    log.closeSample();
  }
  const samples = log.samples();
  assert.deepEqual(
    samples.map((sample) => sample.at),
    [30_000, 40_000, 40_000],
  );
});

test('combined observers all receive calls', () => {
  const calls: string[] = [];
  const recorder = (name: string): DeliveryObserver => ({
    attempt: (event) => calls.push(`${name}:attempt:${event.status}`),
    done: (delivered, outcome) => calls.push(`${name}:done:${delivered.envelope.id}:${outcome}`),
    breakerOpened: (webhook) => calls.push(`${name}:breaker:${webhook}`),
    blocked: (webhook, blocked) => calls.push(`${name}:blocked:${webhook}:${blocked}`),
  });
  const combined = combineObservers(recorder('first'), undefined, recorder('second'));
  failedAttempt(combined, [item('x')], { status: 502 });
  combined.done?.(item('x'), 'delivered');
  combined.breakerOpened?.('orders-api');
  combined.blocked?.('orders-api', true);
  assert.deepEqual(calls, [
    'first:attempt:502',
    'second:attempt:502',
    'first:done:x:delivered',
    'second:done:x:delivered',
    'first:breaker:orders-api',
    'second:breaker:orders-api',
    'first:blocked:orders-api:true',
    'second:blocked:orders-api:true',
  ]);
});
