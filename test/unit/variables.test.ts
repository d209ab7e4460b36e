import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { expandVariables, substituteVariables } from '../../src/config/variables.js';

test('variables expand set names', () => {
  const result = expandVariables('postgres://${USER}@${HOST}:5432/db', { USER: 'app', HOST: 'db.test' });
  assert.deepEqual(result, { value: 'postgres://app@db.test:5432/db', errors: [] });
});

test('variables use the default when unset or empty', () => {
  assert.equal(expandVariables('${PORT:-5432}', {}).value, '5432');
  assert.equal(expandVariables('${PORT:-5432}', { PORT: '' }).value, '5432');
  assert.equal(expandVariables('${PORT:-5432}', { PORT: '6543' }).value, '6543');
  assert.equal(expandVariables('${EMPTY:-}', {}).value, '');
  assert.equal(expandVariables('${URL:-http://h:1/a?b=c}', {}).value, 'http://h:1/a?b=c');
});

test('variables read $${ as a literal ${', () => {
  assert.equal(expandVariables('$${NAME}', { NAME: 'x' }).value, '${NAME}');
  assert.equal(expandVariables('a$${b}${NAME}', { NAME: 'x' }).value, 'a${b}x');
});

test('variables keep other dollar signs', () => {
  const env = { NAME: 'x' };
  assert.equal(expandVariables('$NAME', env).value, '$NAME');
  assert.equal(expandVariables('pa$$word$', env).value, 'pa$$word$');
  assert.equal(expandVariables('$', env).value, '$');
  assert.equal(expandVariables('${NAME}$', env).value, 'x$');
});

test('variables report unset and empty names', () => {
  assert.deepEqual(expandVariables('${TOKEN}', {}).errors, [
    'environment variable TOKEN is not set; export it or write ${TOKEN:-value}',
  ]);
  assert.deepEqual(expandVariables('${TOKEN}', { TOKEN: '' }).errors, [
    'environment variable TOKEN is empty; set a value or write ${TOKEN:-value}',
  ]);
});

test('variables report malformed references', () => {
  assert.match(expandVariables('${1X}', {}).errors[0] ?? '', /invalid variable reference '\$\{1X\}'/);
  assert.match(expandVariables('${A-b}', {}).errors[0] ?? '', /invalid variable reference/);
  assert.match(expandVariables('${}', {}).errors[0] ?? '', /invalid variable reference/);
  assert.match(expandVariables('${NAME', { NAME: 'x' }).errors[0] ?? '', /unclosed variable reference/);
  assert.match(expandVariables('${A:-${B}}', {}).errors[0] ?? '', /contains another reference/);
});

test('variables report every failed reference in a string', () => {
  const result = expandVariables('${A}:${B}@${C}', { B: 'b' });
  assert.equal(result.errors.length, 2);
  assert.match(result.errors[0] ?? '', /variable A /);
  assert.match(result.errors[1] ?? '', /variable C /);
});

test('variables ignore inherited object properties', () => {
  const result = expandVariables('${toString}${constructor}', {});
  assert.equal(result.errors.length, 2);
  assert.match(result.errors[0] ?? '', /toString is not set/);
});

test('variables keep the value out of messages', () => {
  const result = expandVariables('${SECRET} ${MISSING}', { SECRET: 'hunter2' });
  assert.equal(result.errors.length, 1);
  assert.ok(!(result.errors[0] ?? '').includes('hunter2'));
});

test('variable substitution walks lists and mappings', () => {
  const tree = {
    '${KEY}': '${VALUE}',
    list: ['${VALUE}', 3, true, null, { nested: '${MISSING}' }],
  };
  const result = substituteVariables(tree, { KEY: 'k', VALUE: 'v' });
  assert.deepEqual(result.value, {
    '${KEY}': 'v',
    list: ['v', 3, true, null, { nested: '${MISSING}' }],
  });
  assert.deepEqual(result.problems, [
    {
      path: ['list', 4, 'nested'],
      message: 'environment variable MISSING is not set; export it or write ${MISSING:-value}',
    },
  ]);
});

test('variables read secrets from files', () => {
  const directory = mkdtempSync(join(tmpdir(), 'walhook-secret-'));
  const file = join(directory, 'password');
  writeFileSync(file, 's3cret value\n');
  const result = substituteVariables({ url: `postgres://app:\${file:${file}}@db/app` }, {});
  assert.deepEqual(result.problems, []);
  assert.deepEqual(result.value, { url: 'postgres://app:s3cret value@db/app' });

  const missing = substituteVariables({ url: `\${file:${join(directory, 'absent')}}` }, {});
  assert.equal(missing.problems.length, 1);
  assert.match(missing.problems[0]?.message ?? '', /cannot read file .*absent \(ENOENT\)/);

  const relative = substituteVariables({ url: '${file:password}' }, {});
  assert.match(relative.problems[0]?.message ?? '', /absolute path/);
});
