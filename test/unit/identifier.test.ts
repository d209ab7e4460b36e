import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  formatTableName,
  InvalidTableNameError,
  MAX_IDENTIFIER_BYTES,
  parseTableName,
  quoteIdentifier,
} from '../../src/config/identifier.js';

test('table name without schema is in public', () => {
  assert.deepEqual(parseTableName('orders'), { schema: 'public', name: 'orders' });
});

test('table name folds unquoted parts to lower case', () => {
  assert.deepEqual(parseTableName('Public.Orders'), { schema: 'public', name: 'orders' });
  assert.deepEqual(parseTableName('SALES.order_Items$2'), { schema: 'sales', name: 'order_items$2' });
});

test('table name folds only ASCII letters', () => {
  assert.deepEqual(parseTableName('ÄRGER'), { schema: 'public', name: 'Ärger' });
  assert.deepEqual(parseTableName('_tmp.Straße'), { schema: '_tmp', name: 'straße' });
});

test('table name keeps quoted case, dots and spaces', () => {
  assert.deepEqual(parseTableName('"Sales.EU"."Order Items"'), { schema: 'Sales.EU', name: 'Order Items' });
  assert.deepEqual(parseTableName('sales."Order"'), { schema: 'sales', name: 'Order' });
  assert.deepEqual(parseTableName('"Sales".orders'), { schema: 'Sales', name: 'orders' });
  assert.deepEqual(parseTableName('"1st table"'), { schema: 'public', name: '1st table' });
});

test('table name unescapes doubled quotes', () => {
  assert.deepEqual(parseTableName('"quote""d"'), { schema: 'public', name: 'quote"d' });
  assert.deepEqual(parseTableName('""""'), { schema: 'public', name: '"' });
  assert.deepEqual(parseTableName('"a"".b"."c"'), { schema: 'a".b', name: 'c' });
});

test('table name rejects malformed text', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /the name is empty/],
    ['.', /part is empty/],
    ['orders.', /part is empty/],
    ['.orders', /part is empty/],
    ['public..orders', /part is empty/],
    ['db.public.orders', /got 3 dot-separated parts/],
    ['"a"."b"."c"', /got 3 dot-separated parts/],
    ['"Orders', /unbalanced double quote/],
    ['public."Orders', /unbalanced double quote/],
    ['"quote""d', /unbalanced double quote/],
    ['public.""', /quoted part cannot be empty/],
    ['"a"b', /unexpected 'b' at position 4/],
    ['ab"c"', /unexpected '"' at position 3/],
    ['order-items', /unquoted part 'order-items' may contain only/],
    ['public.1st', /must not start with a digit/],
    ['$x', /must not start with a digit or \$/],
    ['order items', /put it in double quotes/],
    ['"a\0b"', /NUL character/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseTableName(text), (error: unknown) => {
      assert.ok(error instanceof InvalidTableNameError, `'${text}' raised ${String(error)}`);
      assert.match(error.message, message, `message for '${text}'`);
      assert.ok(error.message.startsWith(`invalid table name '${text}': `), `message for '${text}' names the value`);
      return true;
    });
  }
});

test('table name limits each part to 63 bytes', () => {
  const longest = 'a'.repeat(MAX_IDENTIFIER_BYTES);
  assert.deepEqual(parseTableName(`${longest}.${longest}`), { schema: longest, name: longest });
  assert.throws(() => parseTableName(`${longest}a`), /longer than 63 bytes/);
  // 32 two-byte characters are 64 bytes in UTF-8.
  assert.throws(() => parseTableName(`"${'é'.repeat(32)}"`), /longer than 63 bytes/);
});

test('table name format quotes only where needed', () => {
  assert.equal(formatTableName({ schema: 'public', name: 'orders' }), 'public.orders');
  assert.equal(formatTableName({ schema: 'Sales.EU', name: 'Order Items' }), '"Sales.EU"."Order Items"');
  assert.equal(formatTableName({ schema: 'public', name: 'quote"d' }), 'public."quote""d"');
  assert.equal(formatTableName({ schema: 'public', name: 'Orders' }), 'public."Orders"');
  assert.equal(formatTableName({ schema: 'public', name: '1st' }), 'public."1st"');
  assert.equal(formatTableName({ schema: 'public', name: 'straße$1' }), 'public.straße$1');
});

test('table name format round-trips through parse', () => {
  const tables = [
    { schema: 'public', name: 'orders' },
    { schema: 'Sales.EU', name: 'Order Items' },
    { schema: 'a"b', name: '"' },
    { schema: 'public', name: 'Ärger' },
    { schema: 'x y', name: '$money' },
  ];
  for (const table of tables) {
    assert.deepEqual(parseTableName(formatTableName(table)), table);
  }
});

test('quote identifier always quotes', () => {
  assert.equal(quoteIdentifier('orders'), '"orders"');
  assert.equal(quoteIdentifier('Order "Items"'), '"Order ""Items"""');
  assert.throws(() => quoteIdentifier(''), RangeError);
  assert.throws(() => quoteIdentifier('a\0b'), RangeError);
});
