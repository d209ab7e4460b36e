import assert from 'node:assert/strict';
import { test } from 'node:test';

// pg-connection-string is the parser node-postgres applies to `connectionString`, so
// these tests check the converted URL against it rather than against our own reading.
import { parse as parseWithPg } from 'pg-connection-string';

import {
  InvalidConnectionStringError,
  normalizeConnectionString,
  parseKeyValueString,
} from '../../src/config/connection.js';

test('connection keeps postgres URLs unchanged', () => {
  for (const url of ['postgres://u:p@127.0.0.1:5432/app', 'postgresql://127.0.0.1/app?sslmode=disable', 'POSTGRES://h/db']) {
    assert.equal(normalizeConnectionString(url), url);
  }
});

test('connection rejects other URL schemes', () => {
  assert.throws(() => normalizeConnectionString('mysql://u:hunter2@h/db'), {
    name: 'InvalidConnectionStringError',
    message: 'expected a postgres:// or postgresql:// URL or a key=value string, got a mysql:// URL',
  });
});

test('connection parses key=value syntax', () => {
  const settings = parseKeyValueString(" host=127.0.0.1  port = 5433 user='walhook' password='it\\'s' dbname=app ");
  assert.deepEqual(Object.fromEntries(settings), {
    host: '127.0.0.1',
    port: '5433',
    user: 'walhook',
    password: "it's",
    dbname: 'app',
  });
});

test('connection unescapes backslashes in values', () => {
  const settings = parseKeyValueString("password='a \\'quoted\\' \\\\ value' options=-c\\ x=1 empty=''");
  assert.equal(settings.get('password'), "a 'quoted' \\ value");
  assert.equal(settings.get('options'), '-c x=1');
  assert.equal(settings.get('empty'), '');
});

test('connection lets a later keyword win', () => {
  assert.equal(parseKeyValueString('port=1 port=2').get('port'), '2');
});

test('connection converts key=value strings for node-postgres', () => {
  const url = normalizeConnectionString(
    "host=127.0.0.1 port=5433 dbname=app user=walhook password='p@ss w/rd?&#%' sslmode=disable application_name='walhook test'",
  );
  const parsed = parseWithPg(url);
  assert.equal(parsed.host, '127.0.0.1');
  assert.equal(parsed.port, '5433');
  assert.equal(parsed.database, 'app');
  assert.equal(parsed.user, 'walhook');
  assert.equal(parsed.password, 'p@ss w/rd?&#%');
  assert.equal(parsed.ssl, false);
  assert.equal(parsed.application_name, 'walhook test');
});

test('connection converts socket hosts and odd database names', () => {
  const parsed = parseWithPg(normalizeConnectionString("host=/var/run/postgresql dbname='Sales 100%/EU é'"));
  assert.equal(parsed.host, '/var/run/postgresql');
  assert.equal(parsed.database, 'Sales 100%/EU é');
});

test('connection leaves out a missing dbname', () => {
  const parsed = parseWithPg(normalizeConnectionString('host=db.test user=walhook'));
  assert.equal(parsed.host, 'db.test');
  assert.equal(parsed.user, 'walhook');
  assert.equal(parsed.database, null);
});

test('connection rejects malformed key=value strings', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /is empty/],
    ['   ', /is empty/],
    ['app', /'=' is missing after word 1$/],
    ['host=h port', /'=' is missing after word 2$/],
    ['host-name=h', /a keyword contains only letters and _/],
    ["password='hunter2", /quoted value of password has no closing '/],
    ['dbname=a?b', /dbname contains \? or #/],
    ['dbname=a\ud800', /unpaired UTF-16 surrogate/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => normalizeConnectionString(text), (error: unknown) => {
      assert.ok(error instanceof InvalidConnectionStringError, `'${text}' raised ${String(error)}`);
      assert.match(error.message, message, `message for '${text}'`);
      assert.ok(!error.message.includes('hunter2'), `message for '${text}' repeats the password`);
      return true;
    });
  }
});
