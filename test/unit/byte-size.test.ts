import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InvalidByteSizeError, parseByteSize } from '../../src/config/byte-size.js';

test('byte size parses numbers and binary units', () => {
  const cases: [number | string, bigint][] = [
    [0, 0n],
    [1073741824, 1073741824n],
    ['512B', 512n],
    ['64KiB', 65536n],
    ['512MiB', 536870912n],
    ['1GiB', 1073741824n],
    ['1.5KiB', 1536n],
    ['2TiB', 2n * 1024n ** 4n],
  ];
  for (const [input, expected] of cases) {
    assert.equal(parseByteSize(input), expected, `parseByteSize(${JSON.stringify(input)})`);
  }
});

test('byte size rejects invalid values', () => {
  const cases: [number | string, RegExp][] = [
    [-1, /whole number of bytes/],
    [1.5, /whole number of bytes/],
    ['1.3B', /not a whole number of bytes/],
    ['1 GiB', /invalid size '1 GiB'/],
    ['GiB', /invalid size 'GiB'/],
    ['', /invalid size ''/],
    ['1gib', /invalid size '1gib'/],
  ];
  for (const [input, message] of cases) {
    assert.throws(() => parseByteSize(input), (error: unknown) => {
      assert.ok(error instanceof InvalidByteSizeError, `parseByteSize(${JSON.stringify(input)}) threw ${String(error)}`);
      assert.match(error.message, message);
      return true;
    });
  }
});

test('byte size suggests binary units for decimal ones', () => {
  assert.throws(() => parseByteSize('512MB'), /write '512MiB'/);
  assert.throws(() => parseByteSize('1GB'), /write '1GiB'/);
  assert.throws(() => parseByteSize('10k'), /write '10KiB'/);
});
