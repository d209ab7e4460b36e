import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseConfig } from '../../src/config/load.js';
import { baseTypesFrom } from '../../src/filters/column-values.js';
import { compileWhere, type ConditionColumn, type WhereResult } from '../../src/filters/where.js';
import type { WhereCondition } from '../../src/filters/where-condition.js';
import { type ColumnValue, UNCHANGED_TOAST } from '../../src/source/messages.js';

/** Type OIDs from PostgreSQL's pg_type.dat. */
const BOOL = 16;
const INT8 = 20;
const INT4 = 23;
const TEXT = 25;
const OID = 26;
const FLOAT8 = 701;
const BPCHAR = 1042;
const DATE = 1082;
const TIMESTAMP = 1114;
const TIMESTAMPTZ = 1184;
const NUMERIC = 1700;
const UUID = 2950;
const JSONB = 3802;

/** Parses a `where:` value written in YAML through the real config loader. */
function condition(whereYaml: string): WhereCondition {
  const config = parseConfig(
    `source:\n  connection: postgres://127.0.0.1/app\nwebhooks:\n  - name: hook\n    url: http://127.0.0.1:9/\n` +
      `triggers:\n  - name: t\n    table: orders\n    webhook: hook\n    where: ${whereYaml}\n`,
    { file: 'test.yaml', env: {} },
  );
  const where = config.triggers[0]?.where;
  assert.ok(where !== undefined);
  return where;
}

/** Evaluates a condition on a one-column row. */
function evaluateOne(whereYaml: string, typeOid: number, value: ColumnValue, name = 'c'): WhereResult['outcome'] {
  const columns: ConditionColumn[] = [{ name, typeOid }];
  return compileWhere(condition(whereYaml)).evaluate({ columns, values: [value] }).outcome;
}

function matches(whereYaml: string, typeOid: number, value: ColumnValue): boolean {
  const outcome = evaluateOne(whereYaml, typeOid, value);
  assert.notEqual(outcome, 'unknown', `${whereYaml} on ${String(value)} was unknown`);
  return outcome === 'match';
}

test('where compares int8 beyond 2^53 exactly', () => {
  assert.equal(matches('{ c: { _gt: 9007199254740992 } }', INT8, '9007199254740993'), true);
  assert.equal(matches('{ c: { _eq: 9007199254740992 } }', INT8, '9007199254740993'), false);
  assert.equal(matches('{ c: { _eq: 9007199254740993 } }', INT8, '9007199254740993'), true);
  assert.equal(matches("{ c: { _lt: '9223372036854775807' } }", INT8, '9223372036854775806'), true);
  assert.equal(matches('{ c: { _gte: -9223372036854775808 } }', INT8, '-9223372036854775808'), true);
});

test('where compares numeric digits exactly', () => {
  assert.equal(matches('{ c: { _eq: 1.10 } }', NUMERIC, '1.1'), true);
  assert.equal(matches('{ c: { _gt: 0.1 } }', NUMERIC, '0.10000000000000000000001'), true);
  assert.equal(matches('{ c: { _gt: 12345678901234567890.5 } }', NUMERIC, '12345678901234567890.49'), false);
  assert.equal(matches('{ c: { _lt: -2 } }', NUMERIC, '-10'), true);
  assert.equal(matches('{ c: { _eq: 0 } }', NUMERIC, '-0.000'), true);
  assert.equal(matches('{ c: { _eq: 1e3 } }', INT4, '1000'), true);
  assert.equal(matches('{ c: { _gt: 4294967294 } }', OID, '4294967295'), true);
});

test('where orders NaN and Infinity like PostgreSQL', () => {
  assert.equal(matches("{ c: { _gt: 'Infinity' } }", NUMERIC, 'NaN'), true);
  assert.equal(matches("{ c: { _eq: 'NaN' } }", NUMERIC, 'NaN'), true);
  assert.equal(matches('{ c: { _gt: 1e300 } }', FLOAT8, 'Infinity'), true);
  assert.equal(matches("{ c: { _lt: '-1e300' } }", FLOAT8, '-Infinity'), true);
  assert.equal(matches('{ c: { _lt: .nan } }', FLOAT8, 'Infinity'), true);
  assert.equal(matches('{ c: { _gt: 1.5e-7 } }', FLOAT8, '1.5e-07'), false);
  assert.equal(matches('{ c: { _eq: 1.5e-7 } }', FLOAT8, '1.5e-07'), true);
});

test('where reads numeric operands from strings', () => {
  assert.equal(matches("{ c: { _gt: '100' } }", INT4, '101'), true);
  assert.equal(matches('{ c: { _in: [1, "2", 3.0] } }', INT4, '3'), true);
  assert.equal(matches('{ c: { _nin: [1, 2] } }', INT4, '3'), true);
});

test('where compares booleans', () => {
  assert.equal(matches('{ c: { _eq: true } }', BOOL, 't'), true);
  assert.equal(matches('{ c: { _eq: false } }', BOOL, 't'), false);
  assert.equal(matches("{ c: { _eq: 'yes' } }", BOOL, 't'), true);
  assert.equal(matches('{ c: { _gt: false } }', BOOL, 't'), true);
});

test('where compares text in code point order', () => {
  assert.equal(matches('{ c: { _eq: paid } }', TEXT, 'paid'), true);
  assert.equal(matches('{ c: { _eq: Paid } }', TEXT, 'paid'), false);
  assert.equal(matches('{ c: { _gt: Z } }', TEXT, 'a'), true);
  // U+FF5E (one UTF-16 unit) sorts before U+1F600 (two units starting at 0xD83D) by code point.
  assert.equal(matches('{ c: { _lt: "\\U0001F600" } }', TEXT, '\uff5e'), true);
  assert.equal(matches('{ c: { _gt: "\\uFF5E" } }', TEXT, '\u{1f600}'), true);
  assert.equal(matches('{ c: { _eq: 42 } }', TEXT, '42'), true);
});

test('where ignores trailing spaces of character columns', () => {
  assert.equal(matches("{ c: { _eq: 'ab' } }", BPCHAR, 'ab   '), true);
  assert.equal(matches("{ c: { _like: '%b' } }", BPCHAR, 'ab   '), true);
});

test('where compares uuids by value', () => {
  const value = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
  assert.equal(matches("{ c: { _eq: '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}' } }", UUID, value), true);
  assert.equal(matches("{ c: { _neq: 'a0eebc999c0b4ef8bb6d6bb9bd380a11' } }", UUID, value), false);
});

test('where compares dates and timestamps as instants', () => {
  assert.equal(matches("{ c: { _gte: '2024-03-10' } }", DATE, '2024-03-10'), true);
  assert.equal(matches("{ c: { _lt: '2024-03-10T00:00:01' } }", DATE, '2024-03-10'), true);
  assert.equal(matches("{ c: { _gt: '9999-12-31' } }", DATE, '10000-01-01'), true);
  assert.equal(matches("{ c: { _lt: '0001-01-01' } }", DATE, '0044-03-15 BC'), true);
  assert.equal(matches("{ c: { _gt: '2024-03-10 12:34:56.4' } }", TIMESTAMP, '2024-03-10 12:34:56.5'), true);
  assert.equal(matches("{ c: { _eq: '2024-03-10T14:34:56.5+02:00' } }", TIMESTAMPTZ, '2024-03-10 12:34:56.5+00'), true);
  assert.equal(matches("{ c: { _eq: '2024-03-10T12:34:56.5Z' } }", TIMESTAMPTZ, '2024-03-10 12:34:56.5+00'), true);
  assert.equal(matches("{ c: { _gt: '294276-12-31' } }", TIMESTAMP, 'infinity'), true);
  assert.equal(matches("{ c: { _lt: '4713-01-01 BC' } }", TIMESTAMPTZ, '-infinity'), true);
  assert.equal(matches("{ c: { _eq: '2024-02-29' } }", DATE, '2024-02-29'), true);
});

test('where invalid date operand is unknown', () => {
  assert.equal(evaluateOne("{ c: { _eq: '2023-02-29' } }", DATE, '2023-03-01'), 'unknown');
  assert.equal(evaluateOne("{ c: { _eq: 'tomorrow' } }", TIMESTAMPTZ, '2023-03-01 00:00:00+00'), 'unknown');
});

test('where compares other types by text', () => {
  assert.equal(matches('{ c: { _eq: \'{"a": 1}\' } }', JSONB, '{"a": 1}'), true);
  assert.equal(matches("{ c: { _eq: '{\"a\":1}' } }", JSONB, '{"a": 1}'), false);
});

test('where comparisons with NULL are false', () => {
  for (const operator of ['_eq', '_neq', '_gt', '_gte', '_lt', '_lte']) {
    assert.equal(matches(`{ c: { ${operator}: 1 } }`, INT4, null), false, operator);
  }
  assert.equal(matches('{ c: { _in: [1] } }', INT4, null), false);
  assert.equal(matches('{ c: { _nin: [1] } }', INT4, null), false);
  assert.equal(matches("{ c: { _like: '%' } }", TEXT, null), false);
  assert.equal(matches('{ c: { _is_null: true } }', INT4, null), true);
  assert.equal(matches('{ c: { _is_null: false } }', INT4, null), false);
  assert.equal(matches('{ c: { _is_null: true } }', INT4, '1'), false);
});

test('where _not inverts a NULL comparison', () => {
  assert.equal(matches('{ _not: { c: { _eq: 1 } } }', INT4, null), true);
  assert.equal(matches('{ _not: { c: { _eq: 1 } } }', INT4, '1'), false);
});

test('where LIKE handles wildcards and escapes', () => {
  const cases: [string, string, boolean][] = [
    ['order-%', 'order-17', true],
    ['order-%', 'Order-17', false],
    ['order-_', 'order-17', false],
    ['order-__', 'order-17', true],
    ['%', '', true],
    ['_', '', false],
    ['a%b%c', 'aXbYc', true],
    ['a%b%c', 'aXbYcZ', false],
    ['%\\%', '100%', true],
    ['%\\%', '100', false],
    ['\\_x', '_x', true],
    ['\\_x', 'ax', false],
    ['a\\\\b', 'a\\b', true],
    ['\\a', 'a', true],
    ['_', '\u{1f600}', true],
    ['%%%x', 'abcx', true],
  ];
  for (const [pattern, value, expected] of cases) {
    const yaml = `{ c: { _like: ${JSON.stringify(pattern)} } }`;
    assert.equal(matches(yaml, TEXT, value), expected, `'${value}' LIKE '${pattern}'`);
  }
});

test('where ILIKE ignores case', () => {
  assert.equal(matches("{ c: { _ilike: 'ORDER-%' } }", TEXT, 'order-17'), true);
  assert.equal(matches("{ c: { _ilike: 'straße' } }", TEXT, 'STRAßE'), true);
  assert.equal(matches("{ c: { _like: 'ORDER-%' } }", TEXT, 'order-17'), false);
});

test('where LIKE stays fast on many wildcards', () => {
  const start = process.hrtime.bigint();
  assert.equal(matches("{ c: { _like: '%a%a%a%a%a%a%a%b' } }", TEXT, 'a'.repeat(5000)), false);
  const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
  assert.ok(elapsedMs < 2000, `took ${elapsedMs} ms`);
});

const ORDER_COLUMNS: ConditionColumn[] = [
  { name: 'id', typeOid: INT8, isKey: true },
  { name: 'status', typeOid: TEXT, isKey: false },
  { name: 'total', typeOid: NUMERIC, isKey: false },
];

test('where combines conditions with _and and _or', () => {
  const where = compileWhere(condition('{ _and: [ { status: { _eq: paid } }, { total: { _gt: 100 } } ] }'));
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid', '100.5'] }).outcome, 'match');
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid', '100'] }).outcome, 'no-match');

  const either = compileWhere(condition('{ _or: [ { status: { _eq: paid } }, { total: { _gt: 100 } } ] }'));
  assert.equal(either.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'open', '101'] }).outcome, 'match');
  assert.equal(either.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'open', '99'] }).outcome, 'no-match');
});

test('where sibling keys mean AND', () => {
  const where = compileWhere(condition('{ status: { _eq: paid }, total: { _gt: 10, _lt: 20 } }'));
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid', '15'] }).outcome, 'match');
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid', '25'] }).outcome, 'no-match');
});

test('where empty _and and _or', () => {
  assert.equal(matches('{ _and: [] }', INT4, '1'), true);
  assert.equal(matches('{ _or: [] }', INT4, '1'), false);
  assert.equal(matches('{}', INT4, '1'), true);
});

test('where key-only row non-key column', () => {
  const where = compileWhere(condition('{ status: { _eq: paid } }'));
  const result = where.evaluate({ columns: ORDER_COLUMNS, values: ['1', null, null], keyOnly: true });
  assert.equal(result.outcome, 'unknown');
  assert.ok(result.outcome === 'unknown');
  assert.match(result.reason, /column "status" is not in the old row/);
  assert.match(result.reason, /REPLICA IDENTITY FULL/);
});

test('where key-only row key column', () => {
  const where = compileWhere(condition('{ id: { _eq: 1 } }'));
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', null, null], keyOnly: true }).outcome, 'match');
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['2', null, null], keyOnly: true }).outcome, 'no-match');
});

test('where key-only _is_null is unknown', () => {
  const where = compileWhere(condition('{ status: { _is_null: true } }'));
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', null, null], keyOnly: true }).outcome, 'unknown');
});

test('where decides unknown parts with three-valued logic', () => {
  const keyOnly = { columns: ORDER_COLUMNS, values: ['1', null, null], keyOnly: true };
  const orWithTrue = compileWhere(condition('{ _or: [ { status: { _eq: paid } }, { id: { _eq: 1 } } ] }'));
  assert.equal(orWithTrue.evaluate(keyOnly).outcome, 'match');
  const andWithFalse = compileWhere(condition('{ _and: [ { status: { _eq: paid } }, { id: { _eq: 2 } } ] }'));
  assert.equal(andWithFalse.evaluate(keyOnly).outcome, 'no-match');
  const andWithTrue = compileWhere(condition('{ _and: [ { status: { _eq: paid } }, { id: { _eq: 1 } } ] }'));
  assert.equal(andWithTrue.evaluate(keyOnly).outcome, 'unknown');
  const negated = compileWhere(condition('{ _not: { status: { _eq: paid } } }'));
  assert.equal(negated.evaluate(keyOnly).outcome, 'unknown');
});

test('where reason names the deciding part', () => {
  const columns: ConditionColumn[] = [
    { name: 'id', typeOid: INT8, isKey: true },
    { name: 'x', typeOid: TEXT },
    { name: 'y', typeOid: TEXT },
  ];
  const where = compileWhere(condition('{ _or: [ { _and: [ { x: { _eq: a } }, { id: { _eq: 2 } } ] }, { y: { _eq: b } } ] }'));
  const result = where.evaluate({ columns, values: ['1', null, null], keyOnly: true });
  assert.ok(result.outcome === 'unknown');
  assert.match(result.reason, /^column "y"/);
});

test('where unchanged TOAST is unknown', () => {
  const where = compileWhere(condition('{ status: { _like: "p%" } }'));
  const result = where.evaluate({ columns: ORDER_COLUMNS, values: ['1', UNCHANGED_TOAST, '5'] });
  assert.equal(result.outcome, 'unknown');
  assert.ok(result.outcome === 'unknown');
  assert.match(result.reason, /unchanged TOASTed value/);
});

test('where unchanged TOAST is not null', () => {
  const where = compileWhere(condition('{ status: { _is_null: false } }'));
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', UNCHANGED_TOAST, '5'] }).outcome, 'match');
});

test('where absent column is unknown', () => {
  const where = compileWhere(condition('{ Status: { _eq: paid } }'));
  const result = where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid', '5'] });
  assert.equal(result.outcome, 'unknown');
  assert.ok(result.outcome === 'unknown');
  assert.equal(result.reason, 'column "Status" is not in the table');
  assert.deepEqual(where.checkColumns(ORDER_COLUMNS), ['column "Status" is not in the table']);
});

test('where mistyped operand is unknown', () => {
  const where = compileWhere(condition('{ total: { _gt: abc } }'));
  const result = where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid', '5'] });
  assert.equal(result.outcome, 'unknown');
  assert.deepEqual(where.checkColumns(ORDER_COLUMNS), ["_gt on column \"total\": operand 'abc' is not a valid number value"]);
  assert.equal(evaluateOne('{ c: { _eq: true } }', TEXT, 'true'), 'unknown');
  assert.equal(evaluateOne('{ c: { _eq: 1 } }', BOOL, 't'), 'unknown');
});

test('where reason leaves out row values', () => {
  const columns: ConditionColumn[] = [{ name: 'c', typeOid: INT4 }];
  const result = compileWhere(condition('{ c: { _gt: 1 } }')).evaluate({ columns, values: ['secret-text'] });
  assert.ok(result.outcome === 'unknown');
  assert.equal(result.reason.includes('secret-text'), false);
});

test('where resolves domains through baseTypeOf', () => {
  const DOMAIN_OID = 70_000;
  const columns: ConditionColumn[] = [{ name: 'c', typeOid: DOMAIN_OID }];
  const where = condition('{ c: { _gt: 9 } }');
  const asText = compileWhere(where).evaluate({ columns, values: ['10'] });
  // As text, '10' sorts before '9'.
  assert.equal(asText.outcome, 'no-match');
  const baseTypeOf = (oid: number): number | undefined => (oid === DOMAIN_OID ? INT4 : undefined);
  assert.equal(compileWhere(where, { baseTypeOf }).evaluate({ columns, values: ['10'] }).outcome, 'match');
});

test('where rebinds for new columns', () => {
  const where = compileWhere(condition('{ status: { _eq: paid } }'));
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid', '5'] }).outcome, 'match');
  const reordered: ConditionColumn[] = [
    { name: 'status', typeOid: TEXT },
    { name: 'id', typeOid: INT8 },
  ];
  assert.equal(where.evaluate({ columns: reordered, values: ['paid', '1'] }).outcome, 'match');
  assert.equal(where.evaluate({ columns: reordered, values: ['open', '1'] }).outcome, 'no-match');
});

test('where short tuple value is missing', () => {
  const where = compileWhere(condition('{ total: { _gt: 1 } }'));
  assert.equal(where.evaluate({ columns: ORDER_COLUMNS, values: ['1', 'paid'] }).outcome, 'unknown');
});

test('where reads domains from the type registry', () => {
  const DOMAIN_OID = 70_001;
  const types = { lookup: (oid: number) => (oid === DOMAIN_OID ? ({ kind: 'domain', baseOid: INT4 } as const) : undefined) };
  const columns: ConditionColumn[] = [{ name: 'c', typeOid: DOMAIN_OID }];
  const where = compileWhere(condition('{ c: { _gt: 9 } }'), { baseTypeOf: baseTypesFrom(types) });
  assert.equal(where.evaluate({ columns, values: ['10'] }).outcome, 'match');
});
