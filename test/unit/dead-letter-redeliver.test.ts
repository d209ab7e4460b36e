import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseTimeArgument } from '../../src/cli/dead-letters.js';
import { findTopLevelValue, InvalidEnvelopeError, withCurrentRetry } from '../../src/sinks/dead-letter/redeliver.js';

const NOW = new Date('2025-01-31T12:00:00.000Z');

test('current retry replaces only the top-level value', () => {
  const envelope =
    '{"id":"e1","event":{"data":{"new":{"meta":{"delivery_info":{"max_retries":0,"current_retry":0}},' +
    '"note":"\\"delivery_info\\":{}"}}},"delivery_info":{"max_retries":5,"current_retry":4},"lsn":"0/1","xid":7}';

  const body = withCurrentRetry(envelope, 9);

  assert.equal(body, envelope.replace('{"max_retries":5,"current_retry":4}', '{"max_retries":5,"current_retry":9}'));
  assert.equal(body.indexOf('"max_retries":0,"current_retry":0'), envelope.indexOf('"max_retries":0,"current_retry":0'));
});

test('current retry keeps null max_retries and whitespace', () => {
  const envelope = '{ "amount" : 12345678901234567890.5 ,\n "delivery_info" : {"max_retries":null,"current_retry":0} }';

  assert.equal(
    withCurrentRetry(envelope, 3),
    '{ "amount" : 12345678901234567890.5 ,\n "delivery_info" : {"max_retries":null,"current_retry":3} }',
  );
});

test('current retry rejects envelopes without it', () => {
  const cases = [
    '{"id":"e1","event":{"delivery_info":{"current_retry":0}}}',
    '{"delivery_info":null}',
    '[1,2]',
    '{"id":"e1"',
    '',
  ];
  for (const envelope of cases) {
    assert.throws(() => withCurrentRetry(envelope, 1), InvalidEnvelopeError, envelope);
  }
});

test('top-level value takes the last duplicate', () => {
  const text = '{"a":1,"b":[{"a":2}],"a":"x\\\\"}';

  const span = findTopLevelValue(text, 'a');

  assert.equal(text.slice(span?.start, span?.end), '"x\\\\"');
  assert.equal(findTopLevelValue('{}', 'a'), undefined);
});

test('time argument parses durations', () => {
  assert.equal(parseTimeArgument('--since', '1h', NOW).toISOString(), '2025-01-31T11:00:00.000Z');
  assert.equal(parseTimeArgument('--since', '90s', NOW).toISOString(), '2025-01-31T11:58:30.000Z');
  assert.equal(parseTimeArgument('--since', '1.5m', NOW).toISOString(), '2025-01-31T11:58:30.000Z');
});

test('time argument parses timestamps', () => {
  const cases: [string, string][] = [
    ['2025-01-30', '2025-01-30T00:00:00.000Z'],
    ['2025-01-30T10:15:00Z', '2025-01-30T10:15:00.000Z'],
    ['2025-01-30T10:15Z', '2025-01-30T10:15:00.000Z'],
    ['2025-01-30 10:15:00.250+02:00', '2025-01-30T08:15:00.250Z'],
    ['2025-01-30T10:15:00.5-05:30', '2025-01-30T15:45:00.500Z'],
    ['2024-02-29T23:59:59z', '2024-02-29T23:59:59.000Z'],
  ];
  for (const [text, expected] of cases) {
    assert.equal(parseTimeArgument('--before', text, NOW).toISOString(), expected, text);
  }
});

test('time argument rejects unclear values', () => {
  const cases: [string, RegExp][] = [
    ['2025-01-30T10:15', /add Z or an offset such as \+02:00/],
    ['yesterday', /expected a duration back from now/],
    ['10', /expected a duration back from now/],
    ['0.5ms', /not a whole number of milliseconds/],
    ['2025-02-30', /not a valid date or time/],
    ['2025-01-30T24:00Z', /not a valid date or time/],
    ['2025-01-30T10:15:00.1234Z', /expected a duration back from now/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseTimeArgument('--before', text, NOW), message, text);
  }
});
