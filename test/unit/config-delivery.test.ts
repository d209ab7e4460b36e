import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError, type ConfigProblem } from '../../src/core/errors.js';

const ENV = { DATABASE_URL: 'postgres://walhook@127.0.0.1:5432/app' };

function withWebhook(lines: string): string {
  return (
    'source:\n  connection: ${DATABASE_URL}\nwebhooks:\n  - name: orders-api\n' +
    lines +
    'triggers:\n  - name: order_events\n    table: public.orders\n    webhook: orders-api\n'
  );
}

function problemsOf(text: string): readonly ConfigProblem[] {
  try {
    parseConfig(text, { file: 'test.yaml', env: ENV });
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

test('delivery keys normalize with their values', () => {
  const config = parseConfig(
    withWebhook(`    url: https://example.test/hooks
    concurrency: 4
    ordering: table
    rate_limit: { per_second: 2.5 }
    circuit_breaker: { failures: 3 }
    on_failure: block
    batch: { max_events: 50, max_bytes: 512KiB }
    max_body_bytes: 1MiB
    signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    stringify_numeric: true
    retry: { max_attempts: 5, multiplier: 3, on_status: [409, 5xx] }
`),
    { file: 'test.yaml', env: ENV },
  );
  const webhook = config.webhooks[0]!;
  assert.equal(webhook.concurrency, 4);
  assert.equal(webhook.ordering, 'table');
  assert.deepEqual(webhook.rateLimit, { perSecond: 2.5, burst: 3 });
  assert.deepEqual(webhook.circuitBreaker, { failures: 3, coolDownMs: 30_000 });
  assert.equal(webhook.onFailure, 'block');
  assert.deepEqual(webhook.batch, { maxEvents: 50, maxBytes: 512 * 1024, maxWaitMs: 100 });
  assert.equal(webhook.maxBodyBytes, 1024 * 1024);
  assert.equal(webhook.signingSecret, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
  assert.equal(webhook.stringifyNumeric, true);
  assert.equal(webhook.retry.maxAttempts, 5);
  assert.equal(webhook.retry.multiplier, 3);
  assert.deepEqual(webhook.retry.onStatus, [409, '5xx']);
});

test('delivery keys reject batching with URL placeholders', () => {
  const problems = problemsOf(
    withWebhook('    url: https://example.test/orders/{{ event.data.new.id }}\n    batch: { max_events: 10 }\n'),
  );
  assert.equal(problems.length, 1);
  assert.equal(problems[0]?.path, 'webhooks[0].batch');
  assert.match(problems[0]?.message ?? '', /placeholders/);
});

test('delivery keys reject a batch larger than max_body_bytes', () => {
  const problems = problemsOf(
    withWebhook('    url: https://example.test/\n    max_body_bytes: 1KiB\n    batch: { max_bytes: 2KiB }\n'),
  );
  assert.equal(problems[0]?.path, 'webhooks[0].batch.max_bytes');
});

test('delivery keys reject a malformed signing secret', () => {
  const problems = problemsOf(withWebhook('    url: https://example.test/\n    signing_secret: hunter2\n'));
  assert.equal(problems[0]?.path, 'webhooks[0].signing_secret');
  assert.match(problems[0]?.message ?? '', /whsec_/);
  assert.doesNotMatch(problems[0]?.message ?? '', /hunter2/, 'the secret is not repeated');
});

test('delivery keys reject unknown ordering and zero concurrency', () => {
  const problems = problemsOf(withWebhook('    url: https://example.test/\n    ordering: random\n    concurrency: 0\n'));
  const paths = problems.map((problem) => problem.path).sort();
  assert.deepEqual(paths, ['webhooks[0].concurrency', 'webhooks[0].ordering']);
});

test('message_prefix triggers normalize apart from table triggers', () => {
  const config = parseConfig(
    'source:\n  connection: ${DATABASE_URL}\nwebhooks:\n  - name: outbox\n    url: https://example.test/\n' +
      'triggers:\n  - name: order_messages\n    message_prefix: orders\n    webhook: outbox\n',
    { file: 'test.yaml', env: ENV },
  );
  assert.deepEqual(config.triggers, []);
  assert.deepEqual(config.messageTriggers, [{ name: 'order_messages', messagePrefix: 'orders', webhook: 'outbox' }]);
});

test('message_prefix triggers reject table and row filters', () => {
  const both = problemsOf(
    'source:\n  connection: ${DATABASE_URL}\nwebhooks:\n  - name: outbox\n    url: https://example.test/\n' +
      'triggers:\n  - name: t\n    message_prefix: orders\n    table: orders\n    webhook: outbox\n',
  );
  assert.equal(both[0]?.path, 'triggers[0].message_prefix');
  const neither = problemsOf(
    'source:\n  connection: ${DATABASE_URL}\nwebhooks:\n  - name: outbox\n    url: https://example.test/\n' +
      'triggers:\n  - name: t\n    webhook: outbox\n',
  );
  assert.equal(neither[0]?.path, 'triggers[0].table');
  const filtered = problemsOf(
    'source:\n  connection: ${DATABASE_URL}\nwebhooks:\n  - name: outbox\n    url: https://example.test/\n' +
      'triggers:\n  - name: t\n    message_prefix: orders\n    where: { id: { _eq: 1 } }\n    webhook: outbox\n',
  );
  assert.equal(filtered[0]?.path, 'triggers[0].where');
});

test('in-flight limit default', () => {
  const parse = (lines: string, extra = ''): number =>
    parseConfig(withWebhook(lines) + extra, { file: 'test.yaml', env: ENV }).maxInflightEvents;
  assert.equal(parse('    url: https://example.test/hooks\n'), 1000);
  assert.equal(parse('    url: https://example.test/hooks\n    concurrency: 16\n    batch: { max_events: 100 }\n'), 1600);
  assert.equal(
    parse('    url: https://example.test/hooks\n    batch: { max_events: 100 }\n', 'max_inflight_events: 300\n'),
    300,
    'an explicit value is kept',
  );
});
