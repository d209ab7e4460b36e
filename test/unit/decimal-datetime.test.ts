import assert from 'node:assert/strict';
import { test } from 'node:test';

import { compareInstants, parseInstant } from '../../src/filters/datetime.js';
import { compareDecimals, parseDecimal } from '../../src/filters/decimal.js';
import { compareCodePoints } from '../../src/filters/text-order.js';

function decimalOrder(a: string, b: string): number {
  const left = parseDecimal(a);
  const right = parseDecimal(b);
  assert.ok(left !== undefined, a);
  assert.ok(right !== undefined, b);
  return Math.sign(compareDecimals(left, right));
}

function instantOrder(a: string, b: string): number {
  const left = parseInstant(a);
  const right = parseInstant(b);
  assert.ok(left !== undefined, a);
  assert.ok(right !== undefined, b);
  return Math.sign(compareInstants(left, right));
}

test('decimal orders values exactly', () => {
  const ascending = [
    '-Infinity',
    '-1e308',
    '-9007199254740993',
    '-9007199254740992',
    '-1',
    '-0.5',
    '0',
    '0.000001',
    '0.1',
    '0.10000000000000000001',
    '1',
    '1.5',
    '9007199254740992',
    '9007199254740993',
    '1e308',
    'Infinity',
    'NaN',
  ];
  for (let i = 0; i < ascending.length; i += 1) {
    for (let j = 0; j < ascending.length; j += 1) {
      const a = ascending[i] ?? '';
      const b = ascending[j] ?? '';
      assert.equal(decimalOrder(a, b), Math.sign(i - j), `${a} vs ${b}`);
    }
  }
});

test('decimal treats equal spellings as equal', () => {
  const same: [string, string][] = [
    ['1.10', '1.1'],
    ['-0', '0'],
    ['0.000', '0'],
    ['1e3', '1000'],
    ['1.5e-07', '0.00000015'],
    ['.5', '0.5'],
    ['5.', '5'],
    ['+7', '7'],
    ['inf', 'Infinity'],
    ['-INF', '-Infinity'],
    ['nan', 'NaN'],
    [' 12 ', '12'],
  ];
  for (const [a, b] of same) {
    assert.equal(decimalOrder(a, b), 0, `${a} vs ${b}`);
  }
});

test('decimal rejects non-numbers', () => {
  for (const text of ['', 'abc', '1,5', '0x10', '1e', '--1', '1e9999999999', '1 2']) {
    assert.equal(parseDecimal(text), undefined, text);
  }
});

test('instants order dates, times, offsets and eras', () => {
  const ascending = [
    '-infinity',
    '4714-11-24 BC',
    '0001-12-31 BC',
    '0001-01-01',
    '1969-12-31 23:59:59.999999',
    '1970-01-01',
    '2024-03-10 12:00:00+01',
    '2024-03-10 11:30:00Z',
    '2024-03-10T12:00:00',
    '2024-03-10 12:00:00.000001',
    '2024-03-10 24:00:00',
    '10000-01-01',
    'infinity',
  ];
  for (let i = 0; i < ascending.length; i += 1) {
    for (let j = 0; j < ascending.length; j += 1) {
      const a = ascending[i] ?? '';
      const b = ascending[j] ?? '';
      assert.equal(instantOrder(a, b), Math.sign(i - j), `${a} vs ${b}`);
    }
  }
});

test('instants treat equal spellings as equal', () => {
  const same: [string, string][] = [
    ['2024-03-10 12:34:56.5+00', '2024-03-10T12:34:56.500Z'],
    ['2024-03-10 12:34:56+05:30', '2024-03-10 07:04:56'],
    ['2024-03-10 12:34:56-0330', '2024-03-10 16:04:56'],
    ['2024-03-10 12:34:56+05:30:15', '2024-03-10 07:04:41'],
    ['2024-03-10 24:00:00', '2024-03-11'],
    ['2024-03-10', '2024-03-10 00:00:00'],
    ['2024-03-10 12:00:00.0000004', '2024-03-10 12:00:00'],
    ['2024-03-10 12:00:00.0000005', '2024-03-10 12:00:00.000001'],
    ['0001-01-01 BC', '0000-01-01'],
  ];
  for (const [a, b] of same) {
    assert.equal(instantOrder(a, b), 0, `${a} vs ${b}`);
  }
});

test('instants reject invalid fields', () => {
  for (const text of ['2023-02-29', '2024-13-01', '2024-00-10', '2024-04-31', '2024-03-10 25:00', '2024-03-10 12:60', '2024-03-10 12:00+16', '0000-01-01 BC', '24-03-10', 'now']) {
    assert.equal(parseInstant(text), undefined, text);
  }
  assert.ok(parseInstant('2000-02-29') !== undefined);
  assert.equal(parseInstant('1900-02-29'), undefined);
});

test('code point order puts astral last', () => {
  assert.ok(compareCodePoints('\uffff', '\u{10000}') < 0);
  assert.ok(compareCodePoints('\u{10000}', '\uffff') > 0);
  assert.ok(compareCodePoints('\ud7ff', '\u{10000}') < 0);
  assert.ok(compareCodePoints('a', 'ab') < 0);
  assert.equal(compareCodePoints('\u{1f600}', '\u{1f600}'), 0);
  // JavaScript's < would order these the other way.
  assert.ok('\u{1f600}' < '\uff5e');
  assert.ok(compareCodePoints('\u{1f600}', '\uff5e') > 0);
});
