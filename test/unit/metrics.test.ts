import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Metrics, statusClassOf, type AttemptObservation } from '../../src/ops/metrics.js';
import type { DeliveryItem } from '../../src/sinks/webhook/delivery-engine.js';

function item(triggerName: string, op: string, commitTimeMs?: number): DeliveryItem {
  return {
    envelope: { id: `${triggerName}-${op}`, head: '{', tail: '}' },
    triggerName,
    rowKey: 'k',
    tableKey: 't',
    barrier: false,
    bytes: 10,
    table: { schema: 'public', name: 'orders' },
    op,
    lsn: '0/1',
    onDone: () => undefined,
    ...(commitTimeMs === undefined ? {} : { commitTimeMs }),
  } as DeliveryItem;
}

/** Returns the value of the sample `name{labels}` in the text format, or undefined. */
function sample(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (line.slice(0, space) === (labels === '' ? name : `${name}{${labels}}`)) return Number(line.slice(space + 1));
  }
  return undefined;
}

test('metrics count events by trigger, webhook and op', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  metrics.eventCaptured('order_events', 'orders-api', 'INSERT');
  metrics.eventCaptured('order_events', 'orders-api', 'INSERT');
  metrics.eventCaptured('order_events', 'orders-api', 'DELETE');
  const observer = metrics.observer('orders-api');
  observer.done?.(item('order_events', 'INSERT'), 'delivered');
  observer.done?.(item('order_events', 'DELETE'), 'dead_lettered');

  const text = await metrics.render();
  const labels = (op: string) => `trigger="order_events",webhook="orders-api",op="${op}"`;
  assert.equal(sample(text, 'walhook_events_captured_total', labels('insert')), 2);
  assert.equal(sample(text, 'walhook_events_captured_total', labels('delete')), 1);
  assert.equal(sample(text, 'walhook_events_delivered_total', labels('insert')), 1);
  assert.equal(sample(text, 'walhook_events_delivered_total', labels('delete')), undefined);
  assert.equal(sample(text, 'walhook_events_dead_lettered_total', labels('delete')), 1);
});

test('metrics count attempts, retries and failed events', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  const observer = metrics.observer('orders-api');
  const attempt = (fields: Partial<AttemptObservation>): void => {
    observer.attempt?.({ webhook: 'orders-api', events: 1, status: 200, ok: true, durationMs: 20, ...fields });
  };
  attempt({ status: 503, ok: false, attempt: 0, items: [item('order_events', 'UPDATE')] });
  attempt({ status: null, ok: false, attempt: 1, durationMs: 10_000, items: [item('order_events', 'UPDATE')] });
  attempt({ status: 204, ok: true, attempt: 2 });

  const text = await metrics.render();
  assert.equal(sample(text, 'walhook_delivery_attempts_total', 'webhook="orders-api",outcome="failure",status_class="5xx"'), 1);
  assert.equal(sample(text, 'walhook_delivery_attempts_total', 'webhook="orders-api",outcome="failure",status_class="error"'), 1);
  assert.equal(sample(text, 'walhook_delivery_attempts_total', 'webhook="orders-api",outcome="success",status_class="2xx"'), 1);
  assert.equal(sample(text, 'walhook_delivery_retries_total', 'webhook="orders-api",status_class="error"'), 1);
  assert.equal(sample(text, 'walhook_delivery_retries_total', 'webhook="orders-api",status_class="2xx"'), 1);
  assert.equal(sample(text, 'walhook_delivery_retries_total', 'webhook="orders-api",status_class="5xx"'), undefined);
  assert.equal(sample(text, 'walhook_events_failed_total', 'trigger="order_events",webhook="orders-api",op="update"'), 2);
  assert.equal(sample(text, 'walhook_delivery_duration_seconds_count', 'webhook="orders-api"'), 3);
  assert.equal(sample(text, 'walhook_delivery_duration_seconds_sum', 'webhook="orders-api"'), 10.04);
  assert.equal(sample(text, 'walhook_delivery_duration_seconds_bucket', 'le="0.025",webhook="orders-api"'), 2);
});

test('metrics observe commit to delivery latency', async () => {
  let now = 1_000_000;
  const metrics = new Metrics({ defaultMetrics: false, now: () => now });
  const observer = metrics.observer('orders-api');
  now += 1500;
  observer.done?.(item('order_events', 'INSERT', 1_000_000), 'delivered');
  observer.done?.(item('order_events', 'INSERT'), 'delivered');

  const text = await metrics.render();
  assert.equal(sample(text, 'walhook_commit_to_delivery_seconds_count', 'webhook="orders-api"'), 1);
  assert.equal(sample(text, 'walhook_commit_to_delivery_seconds_sum', 'webhook="orders-api"'), 1.5);
  assert.equal(sample(text, 'walhook_commit_to_delivery_seconds_bucket', 'le="1",webhook="orders-api"'), 0);
  assert.equal(sample(text, 'walhook_commit_to_delivery_seconds_bucket', 'le="2.5",webhook="orders-api"'), 1);
});

test('metrics show paused and blocked webhooks', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  metrics.declareWebhooks(['orders-api', 'audit-log']);
  const observer = metrics.observer('orders-api');
  observer.breakerOpened?.('orders-api');
  observer.blocked?.('audit-log', true);

  let text = await metrics.render();
  assert.equal(sample(text, 'walhook_webhook_paused', 'webhook="orders-api"'), 1);
  assert.equal(sample(text, 'walhook_webhook_paused', 'webhook="audit-log"'), 0);
  assert.equal(sample(text, 'walhook_webhook_blocked', 'webhook="audit-log"'), 1);
  assert.equal(sample(text, 'walhook_circuit_breaker_opened_total', 'webhook="orders-api"'), 1);

  // A successful attempt closes the breaker.
  observer.attempt?.({ webhook: 'orders-api', events: 1, status: 200, ok: true, durationMs: 5 });
  observer.blocked?.('audit-log', false);
  text = await metrics.render();
  assert.equal(sample(text, 'walhook_webhook_paused', 'webhook="orders-api"'), 0);
  assert.equal(sample(text, 'walhook_webhook_blocked', 'webhook="audit-log"'), 0);
});

test('metrics show slot, lag, leader and in-flight gauges', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  metrics.setInflight(12, 3456);
  metrics.setReadPaused(true);
  metrics.setConfirmedLsn(0x1_0000_0010n);
  metrics.setLeader(true);
  metrics.setRetainedLimit(1024n, true);
  metrics.setSlot({ retainedBytes: 2048n, walStatus: 'extended', lagBytes: 100n, lagSeconds: 0.25, safeWalSizeBytes: 4096n });

  const text = await metrics.render();
  assert.equal(sample(text, 'walhook_inflight_events'), 12);
  assert.equal(sample(text, 'walhook_inflight_bytes'), 3456);
  assert.equal(sample(text, 'walhook_replication_read_paused'), 1);
  assert.equal(sample(text, 'walhook_confirmed_lsn_bytes'), 4294967312);
  assert.equal(sample(text, 'walhook_leader'), 1);
  assert.equal(sample(text, 'walhook_slot_retained_wal_bytes'), 2048);
  assert.equal(sample(text, 'walhook_slot_retained_wal_limit_bytes'), 1024);
  assert.equal(sample(text, 'walhook_slot_retained_wal_over_limit'), 1);
  assert.equal(sample(text, 'walhook_slot_safe_wal_size_bytes'), 4096);
  assert.equal(sample(text, 'walhook_replication_lag_bytes'), 100);
  assert.equal(sample(text, 'walhook_replication_lag_seconds'), 0.25);
  assert.equal(sample(text, 'walhook_slot_wal_status', 'status="extended"'), 1);
  assert.equal(sample(text, 'walhook_slot_wal_status', 'status="reserved"'), 0);
  assert.equal(sample(text, 'walhook_slot_wal_status', 'status="lost"'), 0);
});

test('metrics run render hooks until removed', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  let inflight = 3;
  const remove = metrics.beforeRender(() => metrics.setInflight(inflight, inflight * 100));
  assert.equal(sample(await metrics.render(), 'walhook_inflight_events'), 3);

  inflight = 5;
  assert.equal(sample(await metrics.render(), 'walhook_inflight_bytes'), 500);

  remove();
  inflight = 7;
  assert.equal(sample(await metrics.render(), 'walhook_inflight_events'), 5);
});

test('metrics show unknown slot figures as NaN', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  metrics.setSlot({ retainedBytes: null, walStatus: null, lagBytes: null, lagSeconds: null, safeWalSizeBytes: null });
  const text = await metrics.render();
  assert.ok(Number.isNaN(sample(text, 'walhook_slot_retained_wal_bytes')));
  assert.ok(Number.isNaN(sample(text, 'walhook_replication_lag_seconds')));
  assert.ok(Number.isNaN(sample(text, 'walhook_slot_safe_wal_size_bytes')));
  assert.equal(sample(text, 'walhook_slot_wal_status', 'status="reserved"'), 0);
});

test('metrics include process metrics by default', async () => {
  const metrics = new Metrics();
  const text = await metrics.render();
  assert.match(text, /^process_resident_memory_bytes \d+/m);
  assert.match(text, /^nodejs_eventloop_lag_seconds /m);
  assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);
});

test('status class groups HTTP statuses', () => {
  assert.equal(statusClassOf(200), '2xx');
  assert.equal(statusClassOf(302), '3xx');
  assert.equal(statusClassOf(429), '4xx');
  assert.equal(statusClassOf(599), '5xx');
  assert.equal(statusClassOf(null), 'error');
  assert.equal(statusClassOf(42), 'error');
});
