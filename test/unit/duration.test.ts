import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatDuration, InvalidDurationError, parseDuration } from '../../src/config/duration.js';

test('duration parses each unit', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('10s'), 10_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('0s'), 0);
});

test('duration parses decimal values', () => {
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('0.25m'), 15_000);
  assert.equal(parseDuration('0.001s'), 1);
  assert.equal(parseDuration('2.50h'), 9_000_000);
});

test('duration rejects fractions of a millisecond', () => {
  assert.throws(() => parseDuration('0.5ms'), /not a whole number of milliseconds/);
  assert.throws(() => parseDuration('0.0001s'), /not a whole number of milliseconds/);
});

test('duration rejects bare numbers with a unit hint', () => {
  assert.throws(() => parseDuration('10'), {
    name: 'InvalidDurationError',
    message: "invalid duration '10': a bare number has no unit; write it with one, such as '10s' or '10ms'",
  });
});

test('duration rejects malformed text', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /expected a number followed by ms, s, m or h/],
    ['10sec', /expected a number followed by ms, s, m or h/],
    ['10S', /expected a number followed by ms, s, m or h/],
    ['1d', /expected a number followed by ms, s, m or h/],
    ['.5s', /expected a number followed by ms, s, m or h/],
    ['1.s', /expected a number followed by ms, s, m or h/],
    ['1e3ms', /expected a number followed by ms, s, m or h/],
    ['-1s', /cannot be negative/],
    ['10 s', /remove the spaces/],
    [' 10s', /remove the spaces/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseDuration(text), (error: unknown) => {
      assert.ok(error instanceof InvalidDurationError, `'${text}' raised ${String(error)}`);
      assert.match(error.message, message, `message for '${text}'`);
      assert.ok(error.message.includes(`'${text}'`), `message for '${text}' names the value`);
      return true;
    });
  }
});

test('duration rejects values beyond safe integers', () => {
  assert.throws(() => parseDuration('9999999999999999999h'), /too large/);
});

test('duration formats with the largest exact unit', () => {
  assert.equal(formatDuration(0), '0ms');
  assert.equal(formatDuration(250), '250ms');
  assert.equal(formatDuration(1500), '1500ms');
  assert.equal(formatDuration(10_000), '10s');
  assert.equal(formatDuration(90_000), '90s');
  assert.equal(formatDuration(300_000), '5m');
  assert.equal(formatDuration(7_200_000), '2h');
});

test('duration format round-trips through parse', () => {
  for (const milliseconds of [0, 1, 999, 1000, 61_000, 3_600_000, 86_400_001, Number.MAX_SAFE_INTEGER]) {
    assert.equal(parseDuration(formatDuration(milliseconds)), milliseconds);
  }
});

test('duration format rejects invalid numbers', () => {
  assert.throws(() => formatDuration(-1), RangeError);
  assert.throws(() => formatDuration(1.5), RangeError);
  assert.throws(() => formatDuration(Number.NaN), RangeError);
});
