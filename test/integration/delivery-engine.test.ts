import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { Webhook } from 'standardwebhooks';
import type { Envelope } from '../../src/pipeline/envelope.js';
import { uuidFromText } from '../../src/pipeline/envelope.js';
import {
  type DeadLetterRecord,
  DeliveryEngine,
  type DeliveryItem,
  type DeliveryOutcome,
} from '../../src/sinks/webhook/delivery-engine.js';
import { DEFAULT_DELIVERY_OPTIONS, type DeliveryOptions, defaultRetryStatus } from '../../src/sinks/webhook/options.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { waitFor } from '../helpers/wait.js';

const logger = pino({ level: 'silent' });
let receiver: Receiver;

before(async () => {
  receiver = await startReceiver();
});

after(async () => {
  await receiver.close();
});

interface TestEvent {
  row: number;
  seq: number;
}

function envelopeFor(event: TestEvent): Envelope {
  const id = uuidFromText(`${event.row}/${event.seq}`);
  return {
    id,
    head: `{"id":"${id}","row":${event.row},"seq":${event.seq},"delivery_info":`,
    tail: '}',
  };
}

function item(event: TestEvent, onDone: (outcome: DeliveryOutcome) => void, extra: Partial<DeliveryItem> = {}): DeliveryItem {
  const envelope = envelopeFor(event);
  return {
    envelope,
    triggerName: 'test',
    rowKey: `row-${event.row}`,
    tableKey: 'table',
    barrier: false,
    bytes: envelope.head.length + envelope.tail.length + 40,
    table: { schema: 'public', name: 't' },
    op: 'INSERT',
    lsn: '0/1',
    onDone,
    ...extra,
  };
}

function options(overrides: Partial<DeliveryOptions> = {}): DeliveryOptions {
  return {
    ...DEFAULT_DELIVERY_OPTIONS,
    retry: { ...DEFAULT_DELIVERY_OPTIONS.retry, initialDelayMs: 5, maxDelayMs: 50 },
    ...overrides,
  };
}

function engineFor(
  target: Receiver,
  deliveryOptions: DeliveryOptions,
  deadLetters: DeadLetterRecord[] | null = null,
): DeliveryEngine {
  return new DeliveryEngine(
    { name: 'test', url: target.url, headers: { authorization: 'Bearer secret' }, timeoutMs: 5000 },
    deliveryOptions,
    {
      logger,
      deadLetters:
        deadLetters === null
          ? null
          : {
              write: async (record) => {
                deadLetters.push(record);
              },
            },
    },
  );
}

function bodyOf(json: unknown): { row: number; seq: number; delivery_info: { current_retry: number } } {
  return json as { row: number; seq: number; delivery_info: { current_retry: number } };
}

test('engine keeps per-row order under concurrency', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  let seed = 7;
  target.respond(() => {
    seed = (seed * 48271) % 2147483647;
    return { delayMs: seed % 15 };
  });
  const engine = engineFor(target, options({ concurrency: 16 }));
  t.after(() => engine.close(1000));

  const outcomes: DeliveryOutcome[] = [];
  for (let seq = 0; seq < 300; seq++) {
    engine.enqueue(item({ row: seq % 10, seq }, (outcome) => outcomes.push(outcome)));
  }
  await waitFor(() => outcomes.length === 300, { timeoutMs: 20_000, message: 'not all events delivered' });

  const lastSeq = new Map<number, number>();
  for (const request of target.requests) {
    const body = bodyOf(request.json);
    assert.ok((lastSeq.get(body.row) ?? -1) < body.seq, `row ${body.row} out of order at seq ${body.seq}`);
    lastSeq.set(body.row, body.seq);
  }
  assert.ok(target.maxInFlight > 1, 'different rows were delivered in parallel');
  assert.ok(target.maxInFlight <= 10, 'at most one request per row at a time');
});

test('engine respects the concurrency limit', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond(() => ({ delayMs: 20 }));
  const engine = engineFor(target, options({ concurrency: 3, ordering: 'none' }));
  t.after(() => engine.close(1000));

  let done = 0;
  for (let seq = 0; seq < 30; seq++) engine.enqueue(item({ row: seq, seq }, () => done++));
  await waitFor(() => done === 30, { timeoutMs: 10_000 });
  assert.equal(target.maxInFlight, 3);
});

test('engine respects the rate limit', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  const engine = engineFor(target, options({ ordering: 'none', rateLimit: { perSecond: 20, burst: 5 } }));
  t.after(() => engine.close(1000));

  let done = 0;
  for (let seq = 0; seq < 25; seq++) engine.enqueue(item({ row: seq, seq }, () => done++));
  await waitFor(() => done === 25, { timeoutMs: 10_000 });

  const times = target.requests.map((r) => r.receivedAt);
  const spanMs = Math.max(...times) - Math.min(...times);
  // 5 requests may go at once, the other 20 need 20 tokens at 20 per second.
  assert.ok(spanMs >= 850, `25 requests took only ${spanMs} ms`);
});

test('engine retries until success and counts current_retry', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond((_request, index) => (index < 2 ? { status: 503 } : { status: 200 }));
  const engine = engineFor(target, options());
  t.after(() => engine.close(1000));

  const outcomes: DeliveryOutcome[] = [];
  engine.enqueue(item({ row: 1, seq: 1 }, (outcome) => outcomes.push(outcome)));
  await waitFor(() => outcomes.length === 1, { timeoutMs: 5000 });

  assert.deepEqual(outcomes, ['delivered']);
  assert.deepEqual(
    target.requests.map((r) => bodyOf(r.json).delivery_info.current_retry),
    [0, 1, 2],
  );
  const ids = new Set(target.requests.map((r) => r.headers['webhook-id']));
  assert.equal(ids.size, 1, 'webhook-id is stable across retries');
  assert.equal(target.requests[0]!.headers.authorization, 'Bearer secret');
});

test('engine waits for Retry-After', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond((_request, index) => (index === 0 ? { status: 429, headers: { 'retry-after': '1' } } : {}));
  // Retry-After is capped at max_delay, so the cap must be above one second here.
  const engine = engineFor(target, options({ retry: { ...options().retry, maxDelayMs: 5000 } }));
  t.after(() => engine.close(1000));

  let done = 0;
  engine.enqueue(item({ row: 1, seq: 1 }, () => done++));
  await waitFor(() => done === 1, { timeoutMs: 5000 });
  const gap = target.requests[1]!.receivedAt - target.requests[0]!.receivedAt;
  assert.ok(gap >= 950, `second attempt came after ${gap} ms`);
});

test('engine dead-letters a permanent 4xx at once', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond((request) => (bodyOf(request.json).row === 1 ? { status: 404 } : {}));
  const deadLetters: DeadLetterRecord[] = [];
  const engine = engineFor(target, options({ retry: { ...options().retry, retryStatus: defaultRetryStatus } }), deadLetters);
  t.after(() => engine.close(1000));

  const outcomes = new Map<number, DeliveryOutcome>();
  engine.enqueue(item({ row: 1, seq: 1 }, (outcome) => outcomes.set(1, outcome)));
  engine.enqueue(item({ row: 2, seq: 2 }, (outcome) => outcomes.set(2, outcome)));
  await waitFor(() => outcomes.size === 2, { timeoutMs: 5000 });

  assert.equal(outcomes.get(1), 'dead_lettered');
  assert.equal(outcomes.get(2), 'delivered');
  assert.equal(deadLetters.length, 1);
  assert.equal(deadLetters[0]!.lastStatus, 404);
  assert.equal(deadLetters[0]!.attempts, 1);
  assert.match(deadLetters[0]!.reason, /permanent status 404/);
  assert.equal(JSON.parse(deadLetters[0]!.envelope).row, 1);
});

test('engine dead-letters after max_attempts', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond(() => ({ status: 500 }));
  const deadLetters: DeadLetterRecord[] = [];
  const engine = engineFor(
    target,
    options({ retry: { ...options().retry, maxAttempts: 3, retryStatus: defaultRetryStatus } }),
    deadLetters,
  );
  t.after(() => engine.close(1000));

  let outcome: DeliveryOutcome | undefined;
  engine.enqueue(item({ row: 1, seq: 1 }, (value) => (outcome = value)));
  await waitFor(() => outcome !== undefined, { timeoutMs: 5000 });

  assert.equal(outcome, 'dead_lettered');
  assert.equal(target.requests.length, 3);
  assert.equal(bodyOf(target.requests[2]!.json).delivery_info.current_retry, 2);
  assert.match(target.requests[0]!.body, /"max_retries":2/);
  assert.equal(deadLetters[0]!.attempts, 3);
});

test('engine keeps other rows flowing while one row fails', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond((request) => (bodyOf(request.json).row === 1 ? { status: 500 } : {}));
  const engine = engineFor(target, options());
  t.after(() => engine.close(1000));

  const delivered = new Set<number>();
  engine.enqueue(item({ row: 1, seq: 0 }, () => delivered.add(0)));
  for (let seq = 1; seq <= 20; seq++) engine.enqueue(item({ row: 2 + seq, seq }, () => delivered.add(seq)));
  await waitFor(() => delivered.size === 20, { timeoutMs: 5000, message: 'other rows stalled' });
  assert.equal(delivered.has(0), false);
});

test('engine under block holds the whole webhook', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  let failing = true;
  target.respond((request) => (failing && bodyOf(request.json).row === 1 ? { status: 400 } : {}));
  const engine = engineFor(
    target,
    options({ concurrency: 1, onFailure: 'block', retry: { ...options().retry, retryStatus: defaultRetryStatus } }),
  );
  t.after(() => engine.close(1000));

  const delivered: number[] = [];
  engine.enqueue(item({ row: 1, seq: 0 }, () => delivered.push(0)));
  await target.waitForRequests(3, { timeoutMs: 5000 });
  engine.enqueue(item({ row: 2, seq: 1 }, () => delivered.push(1)));
  await target.waitForRequests(6, { timeoutMs: 5000 });
  assert.equal(engine.blocked, true);
  assert.deepEqual(delivered, [], 'nothing passes the blocked event');
  assert.ok(target.requests.every((r) => bodyOf(r.json).row === 1));

  failing = false;
  await waitFor(() => delivered.length === 2, { timeoutMs: 5000 });
  assert.deepEqual(delivered, [0, 1]);
  assert.equal(engine.blocked, false);
});

test('engine batches events and keeps row order across batches', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  const engine = engineFor(
    target,
    options({ concurrency: 4, batch: { maxEvents: 10, maxBytes: 1_000_000, maxWaitMs: 20 } }),
  );
  t.after(() => engine.close(1000));

  let done = 0;
  for (let seq = 0; seq < 95; seq++) engine.enqueue(item({ row: seq % 3, seq }, () => done++));
  await waitFor(() => done === 95, { timeoutMs: 10_000 });

  const lastSeq = new Map<number, number>();
  let events = 0;
  for (const request of target.requests) {
    const batch = request.json as { events: { row: number; seq: number }[] };
    assert.ok(batch.events.length <= 10);
    events += batch.events.length;
    for (const event of batch.events) {
      assert.ok((lastSeq.get(event.row) ?? -1) < event.seq, `row ${event.row} out of order`);
      lastSeq.set(event.row, event.seq);
    }
  }
  assert.equal(events, 95);
  assert.ok(target.requests.length < 95, 'events were batched');
});

test('engine splits a batch on 413 and dead-letters an oversized event', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond((request) => ((request.json as { events: unknown[] }).events.length > 2 ? { status: 413 } : {}));
  const deadLetters: DeadLetterRecord[] = [];
  const engine = engineFor(
    target,
    options({
      maxBodyBytes: 200,
      batch: { maxEvents: 8, maxBytes: 1_000_000, maxWaitMs: 10 },
      retry: { ...options().retry, retryStatus: defaultRetryStatus },
    }),
    deadLetters,
  );
  t.after(() => engine.close(1000));

  const outcomes: DeliveryOutcome[] = [];
  for (let seq = 0; seq < 8; seq++) engine.enqueue(item({ row: 1, seq }, (outcome) => outcomes.push(outcome)));
  await waitFor(() => outcomes.length === 8, { timeoutMs: 5000 });
  assert.ok(outcomes.every((outcome) => outcome === 'delivered'));
  const delivered = target.requests.filter((r) => (r.json as { events: unknown[] }).events.length <= 2);
  assert.equal(delivered.reduce((sum, r) => sum + (r.json as { events: unknown[] }).events.length, 0), 8);

  let big: DeliveryOutcome | undefined;
  engine.enqueue(item({ row: 9, seq: 99 }, (outcome) => (big = outcome), { bytes: 500 }));
  await waitFor(() => big !== undefined, { timeoutMs: 5000 });
  assert.equal(big, 'dead_lettered');
  assert.match(deadLetters[0]!.reason, /larger than max_body_bytes/);
});

test('engine signs requests verifiably with standardwebhooks', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  const secret = `whsec_${Buffer.from('walhook test signing key 32 bytes!').toString('base64')}`;
  const engine = engineFor(target, options({ signingSecret: secret }));
  t.after(() => engine.close(1000));

  let done = 0;
  engine.enqueue(item({ row: 1, seq: 1 }, () => done++));
  await waitFor(() => done === 1, { timeoutMs: 5000 });

  const request = target.requests[0]!;
  const headers = {
    'webhook-id': String(request.headers['webhook-id']),
    'webhook-timestamp': String(request.headers['webhook-timestamp']),
    'webhook-signature': String(request.headers['webhook-signature']),
  };
  const verified = new Webhook(secret).verify(request.body, headers) as { row: number };
  assert.equal(verified.row, 1);
  assert.throws(() => new Webhook(secret).verify(`${request.body} `, headers));
});

test('engine delivers a truncate after everything before it', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond((request) => ({ delayMs: bodyOf(request.json).seq < 5 ? 30 : 0 }));
  const engine = engineFor(target, options());
  t.after(() => engine.close(1000));

  let done = 0;
  for (let seq = 0; seq < 5; seq++) engine.enqueue(item({ row: seq, seq }, () => done++));
  engine.enqueue(item({ row: 100, seq: 5 }, () => done++, { barrier: true }));
  for (let seq = 6; seq < 9; seq++) engine.enqueue(item({ row: seq, seq }, () => done++));
  await waitFor(() => done === 9, { timeoutMs: 5000 });

  const order = target.requests.map((r) => bodyOf(r.json).seq);
  const barrierAt = order.indexOf(5);
  assert.deepEqual(order.slice(0, barrierAt).sort(), [0, 1, 2, 3, 4]);
  assert.deepEqual(order.slice(barrierAt + 1).sort(), [6, 7, 8]);
});

test('engine times out a request without a response', async (t) => {
  const target = await startReceiver();
  t.after(() => target.close());
  target.respond(() => ({ delayMs: 5_000 }));
  const engine = new DeliveryEngine(
    { name: 'test', url: target.url, headers: {}, timeoutMs: 200 },
    options(),
    { logger, deadLetters: null },
  );
  t.after(() => engine.close(1000));

  const started = performance.now();
  const result = await engine.attempt(target.url, 'timeout-test', '{}');
  const elapsedMs = performance.now() - started;
  assert.equal(result.ok, false);
  assert.equal(result.status, null);
  assert.equal(result.error, 'timed out after 200 ms');
  // The response would come after 5 s, so an attempt that ended earlier was aborted.
  assert.ok(elapsedMs < 4_000, `attempt took ${Math.round(elapsedMs)} ms`);
});
