import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { loadConfig, parseConfig } from '../../src/config/load.js';
import type { WalhookConfig } from '../../src/config/types.js';
import { ConfigError, type ConfigProblem } from '../../src/core/errors.js';

/** Builds a file with one webhook and one trigger; `triggerKeys` and `url` are YAML lines. */
function file(triggerKeys: string, url = 'https://example.test/hooks'): string {
  return (
    'source:\n  connection: postgres://127.0.0.1/app\n' +
    `webhooks:\n  - name: hook\n    url: ${url}\n` +
    `triggers:\n  - name: order_events\n    table: public.orders\n    webhook: hook\n${triggerKeys}`
  );
}

function parse(text: string): WalhookConfig {
  return parseConfig(text, { file: 'test.yaml', env: { MIN_TOTAL: '100' } });
}

function problemsOf(text: string): readonly ConfigProblem[] {
  try {
    parse(text);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail('expected a ConfigError, but the configuration was accepted');
}

test('filter keys stay absent when not set', () => {
  const trigger = parse(file(''))['triggers'][0];
  assert.ok(trigger !== undefined);
  assert.deepEqual(Object.keys(trigger).sort(), ['name', 'operations', 'table', 'unchangedToast', 'webhook']);
});

test('filter keys are normalized and frozen', () => {
  const config = parse(
    file(
      '    operations: [update]\n' +
        '    columns: [status, "Total"]\n' +
        '    where: { _and: [ { status: { _eq: paid } }, { Total: { _gt: 100 } } ] }\n' +
        '    payload: { columns: [id, status] }\n' +
        '    transform: { body: \'{ "id": event.data.new.id }\' }\n',
    ),
  );
  const trigger = config.triggers[0];
  assert.ok(trigger !== undefined);
  assert.deepEqual(trigger.columns, ['status', 'Total']);
  assert.deepEqual(trigger.where, {
    type: 'and',
    conditions: [
      { type: 'compare', column: 'status', operator: '_eq', operand: { kind: 'string', text: 'paid' } },
      { type: 'compare', column: 'Total', operator: '_gt', operand: { kind: 'number', text: '100' } },
    ],
  });
  assert.deepEqual(trigger.payload, { columns: ['id', 'status'] });
  assert.deepEqual(trigger.transform, { body: '{ "id": event.data.new.id }' });
  assert.ok(Object.isFrozen(trigger.where));
});

test('where keeps number digits as written', () => {
  const where = parse(file('    where: { id: { _in: [9007199254740993, 1.10, -0, 1e3] } }\n')).triggers[0]?.where;
  assert.deepEqual(where, {
    type: 'in',
    column: 'id',
    negated: false,
    operands: [
      { kind: 'number', text: '9007199254740993' },
      { kind: 'number', text: '1.10' },
      { kind: 'number', text: '-0' },
      { kind: 'number', text: '1e3' },
    ],
  });
});

test('where takes operands from variables', () => {
  const where = parse(file('    where: { total: { _gte: "${MIN_TOTAL}" } }\n')).triggers[0]?.where;
  assert.deepEqual(where, {
    type: 'compare',
    column: 'total',
    operator: '_gte',
    operand: { kind: 'string', text: '100' },
  });
});

test('where parses every operator', () => {
  const where = parse(
    file(
      '    where:\n' +
        '      a: { _neq: 1, _lt: 2, _lte: 3, _gte: 0 }\n' +
        '      b: { _nin: [x, true] }\n' +
        '      c: { _is_null: false }\n' +
        "      d: { _like: 'a%', _ilike: 'B_' }\n" +
        '      _or: [ { e: { _eq: 1 } } ]\n' +
        '      _not: { f: { _eq: 2 } }\n',
    ),
  ).triggers[0]?.where;
  assert.ok(where?.type === 'and');
  assert.deepEqual(
    where.conditions.map((condition) => condition.type),
    ['and', 'in', 'isNull', 'and', 'or', 'not'],
  );
  assert.deepEqual(where.conditions[1], {
    type: 'in',
    column: 'b',
    negated: true,
    operands: [
      { kind: 'string', text: 'x' },
      { kind: 'boolean', text: 'true' },
    ],
  });
  assert.deepEqual(where.conditions[3], {
    type: 'and',
    conditions: [
      { type: 'like', column: 'd', pattern: 'a%', caseInsensitive: false },
      { type: 'like', column: 'd', pattern: 'B_', caseInsensitive: true },
    ],
  });
});

test('where accepts underscore column names', () => {
  const where = parse(file('    where: { _id: { _eq: 1 } }\n')).triggers[0]?.where;
  assert.deepEqual(where, { type: 'compare', column: '_id', operator: '_eq', operand: { kind: 'number', text: '1' } });
});

test('where rejects unknown operators', () => {
  assert.deepEqual(problemsOf(file("    where: { status: { _lik: 'p%' } }\n")), [
    { path: 'triggers[0].where.status._lik', message: "unknown operator '_lik'; did you mean '_like'?" },
  ]);
  assert.deepEqual(problemsOf(file('    where: { status: { _equals: paid } }\n')), [
    {
      path: 'triggers[0].where.status._equals',
      message: "unknown operator '_equals'; valid operators are _eq _neq _gt _gte _lt _lte _in _nin _is_null _like _ilike",
    },
  ]);
});

test('where rejects a misspelled logical operator', () => {
  assert.deepEqual(problemsOf(file('    where: { _nto: { status: { _eq: paid } } }\n')), [
    { path: 'triggers[0].where._nto', message: "unknown operator '_nto'; did you mean '_not'?" },
  ]);
});

test('where rejects malformed conditions', () => {
  const cases: [string, string, string][] = [
    ['where: paid', 'triggers[0].where', 'expected a mapping such as { status: { _eq: paid } }, got a string'],
    ['where: { status: paid }', 'triggers[0].where.status', 'expected a mapping of operators for column "status", such as { _eq: value }, got a string'],
    ['where: { status: {} }', 'triggers[0].where.status', 'list at least one operator for column "status", such as { _eq: value }'],
    ['where: { _and: { a: { _eq: 1 } } }', 'triggers[0].where._and', 'expected a list of conditions, got a mapping; write _and: [ { a: { _eq: 1 } }, { b: { _eq: 2 } } ]'],
    ['where: { _or: [ paid ] }', 'triggers[0].where._or[0]', 'expected a mapping such as { status: { _eq: paid } }, got a string'],
    ['where: { _eq: 1 }', 'triggers[0].where._eq', "operator '_eq' must be inside a column, as in { status: { _eq: ... } }"],
    ['where: { status: { _eq: null } }', 'triggers[0].where.status._eq', 'a comparison with null never matches; use _is_null: true instead'],
    ['where: { status: { _eq: [a] } }', 'triggers[0].where.status._eq', 'expected a string, number or boolean, got a list'],
    ['where: { status: { _in: a } }', 'triggers[0].where.status._in', 'expected a list of values, got a string; write _in: [a, b]'],
    ['where: { status: { _in: [a, null] } }', 'triggers[0].where.status._in[1]', 'a comparison with null never matches; use _is_null: true instead'],
    ['where: { status: { _is_null: yes } }', 'triggers[0].where.status._is_null', 'expected true or false, got a string'],
    ['where: { status: { _like: 5 } }', 'triggers[0].where.status._like', "expected a pattern string such as 'order-%', got a number"],
    ["where: { status: { _like: 'ab\\' } }", 'triggers[0].where.status._like', "invalid LIKE pattern: it ends with the escape character '\\'; write '\\\\' to match a backslash"],
    ['where: { "": { _eq: 1 } }', 'triggers[0].where[""]', 'a column name cannot be empty'],
    [`where: { ${'x'.repeat(64)}: { _eq: 1 } }`, `triggers[0].where.${'x'.repeat(64)}`, 'column name is longer than 63 bytes, so no PostgreSQL column can have it'],
  ];
  for (const [yaml, path, message] of cases) {
    assert.deepEqual(problemsOf(file(`    ${yaml}\n`)), [{ path, message }], yaml);
  }
});

test('where rejects deep nesting', () => {
  let nested = '{ a: { _eq: 1 } }';
  for (let depth = 0; depth < 40; depth += 1) {
    nested = `{ _not: ${nested} }`;
  }
  const problems = problemsOf(file(`    where: ${nested}\n`));
  assert.equal(problems.length, 1);
  assert.match(problems[0]?.message ?? '', /nest more than 32 levels/);
});

test('where rejects inexact aliased integer', () => {
  const text = file('    where: { id: { _eq: *big } }\n').replace('source:', 'x-big: &big 9007199254740993\nsource:');
  const problems = problemsOf(text);
  // The alias target sits outside `where`, so the loader cannot see its digits.
  assert.deepEqual(
    problems.filter((problem) => problem.path.startsWith('triggers')),
    [
      {
        path: 'triggers[0].where.id._eq',
        message: 'the number 9007199254740992 may have lost digits when YAML read it; write it in quotes to keep every digit',
      },
    ],
  );
});

test('columns requires update in operations', () => {
  assert.deepEqual(problemsOf(file('    operations: [insert, delete]\n    columns: [status]\n')), [
    {
      path: 'triggers[0].columns',
      message: "columns filters update events only, but operations does not include 'update'; add update or remove columns",
    },
  ]);
  const trigger = parse(file('    columns: [status]\n')).triggers[0];
  assert.deepEqual(trigger?.operations, ['insert', 'update', 'delete', 'truncate']);
});

test('columns check runs beside other problems', () => {
  const problems = problemsOf(file('    operations: [insert]\n    columns: [status]\n    webhook_typo: 1\n'));
  assert.deepEqual(
    problems.map((problem) => problem.path),
    ['triggers[0].columns', 'triggers[0].webhook_typo'],
  );
});

test('column lists reject bad names', () => {
  assert.deepEqual(problemsOf(file('    columns: []\n')), [
    { path: 'triggers[0].columns', message: 'list at least one column, or remove the key' },
  ]);
  assert.deepEqual(problemsOf(file('    columns: [a, b, a]\n')), [
    { path: 'triggers[0].columns[2]', message: "duplicate column 'a'" },
  ]);
  assert.deepEqual(problemsOf(file('    payload: { columns: [""] }\n')), [
    {
      path: 'triggers[0].payload.columns[0]',
      message: 'invalid column name; use 1 to 63 bytes without the NUL character, exactly as the table names it',
    },
  ]);
  assert.deepEqual(problemsOf(file('    columns: status\n')), [
    {
      path: 'triggers[0].columns',
      message: "expected a list, got a string; write a list, such as [a, b] or one '- item' per line",
    },
  ]);
});

test('payload and transform reject unknown keys', () => {
  assert.deepEqual(problemsOf(file('    payload: { column: [a] }\n')), [
    { path: 'triggers[0].payload.columns', message: 'required key is missing' },
    { path: 'triggers[0].payload.column', message: "unknown key; did you mean 'columns'?" },
  ]);
  assert.deepEqual(problemsOf(file("    transform: { bdy: '1' }\n")), [
    { path: 'triggers[0].transform.body', message: 'required key is missing' },
    { path: 'triggers[0].transform.bdy', message: "unknown key; did you mean 'body'?" },
  ]);
});

test('transform rejects invalid JSONata', () => {
  const text =
    file("    transform: { body: '1' }\n") +
    '  - name: second\n    table: a\n    webhook: hook\n' +
    "  - name: third\n    table: b\n    webhook: hook\n    transform:\n      body: '{ \"a\": }'\n";
  assert.deepEqual(problemsOf(text), [
    {
      path: 'triggers[2].transform.body',
      message: 'invalid JSONata expression: The symbol "}" cannot be used as a unary operator at character 8 (S0211)',
    },
  ]);
});

test('webhook URL accepts placeholders after the host', () => {
  const config = parse(file('', "'https://example.test/orders/{{ event.data.new.id }}?op={{event.op}}'"));
  assert.equal(config.webhooks[0]?.url, 'https://example.test/orders/{{ event.data.new.id }}?op={{event.op}}');
});

test('webhook URL rejects invalid templates', () => {
  const cases: [string, string][] = [
    [
      'https://{{ table.name }}.example.test/',
      'placeholders may appear only in the path, query or fragment, after a fixed scheme and host, ' +
        "as in 'https://api.example.test/orders/{{ event.data.new.id }}'",
    ],
    [
      'https://example.test{{ event.op }}',
      'placeholders may appear only in the path, query or fragment, after a fixed scheme and host, ' +
        "as in 'https://api.example.test/orders/{{ event.data.new.id }}'",
    ],
    ['https://example.test/{{ event.op', "'{{' at character 21 has no closing '}}'"],
    [
      'https://example.test/{{ }}',
      'invalid placeholder {{ }}; write a path such as {{ event.data.new.id }}, with "double quotes" around keys that contain other characters',
    ],
    ['https://example.test/{{ event op }}', "invalid placeholder {{ event op }}; separate keys with '.'"],
    ['ftp://example.test/{{ event.op }}', 'must be an http(s) URL once the placeholders are filled'],
  ];
  for (const [url, message] of cases) {
    assert.deepEqual(problemsOf(file('', `'${url}'`)), [{ path: 'webhooks[0].url', message: `${message}, got '${url}'` }], url);
  }
});

test('webhook URL without placeholders keeps its message', () => {
  assert.deepEqual(problemsOf(file('', 'example.test/hooks')), [
    { path: 'webhooks[0].url', message: "must be an http(s) URL, got 'example.test/hooks'" },
  ]);
});

test('example file sets every filter key', () => {
  const path = new URL('../../config/example.yaml', import.meta.url);
  const config = loadConfig(fileURLToPath(path), { DATABASE_URL: 'postgres://127.0.0.1/app', ORDERS_TOKEN: 'token' });
  const trigger = config.triggers.find((entry) => entry.name === 'large_paid_orders');
  assert.deepEqual(trigger?.columns, ['status']);
  assert.equal(trigger?.where?.type, 'and');
  assert.deepEqual(trigger?.payload, { columns: ['id', 'status', 'total'] });
  assert.equal(trigger?.transform?.body, '{ "order": event.data.new.id, "total": event.data.new.total }');
});
