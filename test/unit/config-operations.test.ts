// The configuration keys of the operations features: server, leader and
// source.max_lag_bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseConfig } from '../../src/config/index.js';
import { ConfigError, type ConfigProblem } from '../../src/core/errors.js';

const ENV = { DATABASE_URL: 'postgres://walhook:secret@127.0.0.1:5432/app' };

const ENTRIES = `webhooks:
  - name: orders-api
    url: https://example.test/hooks/orders
triggers:
  - name: order_events
    table: public.orders
    webhook: orders-api
`;

function configText(extra: string, source = ''): string {
  return `source:\n  connection: \${DATABASE_URL}\n${source}${ENTRIES}${extra}`;
}

function parse(text: string, env: Record<string, string | undefined> = ENV) {
  return parseConfig(text, { file: 'test.yaml', env });
}

function problemsOf(text: string, env: Record<string, string | undefined> = ENV): readonly ConfigProblem[] {
  try {
    parse(text, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail('expected a ConfigError, but the configuration was accepted');
}

test('operations keys have defaults', () => {
  const config = parse(configText(''));
  assert.deepEqual(config.server, { enabled: true, host: '0.0.0.0', port: 8080, adminToken: null });
  assert.deepEqual(config.leader, { pollIntervalMs: 2000 });
  assert.equal(config.source.maxLagBytes, 1024n ** 3n);
});

test('operations keys keep explicit values', () => {
  const config = parse(
    configText(
      'server:\n  enabled: false\n  host: 127.0.0.1\n  port: 0\n  admin_token: ${ADMIN_TOKEN}\nleader:\n  poll_interval: 500ms\n',
      '  max_lag_bytes: 512MiB\n',
    ),
    { ...ENV, ADMIN_TOKEN: 'a'.repeat(32) },
  );
  assert.deepEqual(config.server, { enabled: false, host: '127.0.0.1', port: 0, adminToken: 'a'.repeat(32) });
  assert.deepEqual(config.leader, { pollIntervalMs: 500 });
  assert.equal(config.source.maxLagBytes, 512n * 1024n * 1024n);
});

test('server port accepts a string of digits', () => {
  const config = parse(configText('server:\n  port: ${PORT}\n'), { ...ENV, PORT: '9090' });
  assert.equal(config.server.port, 9090);
});

test('max_lag_bytes accepts a number of bytes', () => {
  const config = parse(configText('', '  max_lag_bytes: 1048576\n'));
  assert.equal(config.source.maxLagBytes, 1048576n);
});

test('empty admin token means none', () => {
  const config = parse(configText('server:\n  admin_token: ${ADMIN_TOKEN:-}\n'));
  assert.equal(config.server.adminToken, null);
});

test('operations keys reject invalid values', () => {
  const cases: [string, string, string, string][] = [
    ['server:\n  port: 70000\n', '', 'server.port', 'expected a port number from 0 to 65535, got 70000'],
    ['server:\n  port: -1\n', '', 'server.port', 'expected a port number from 0 to 65535, got -1'],
    ['server:\n  port: http\n', '', 'server.port', 'expected a port number from 0 to 65535, got a string'],
    ['server:\n  host: ""\n', '', 'server.host', 'must not be empty'],
    ['leader:\n  poll_interval: 2\n', '', 'leader.poll_interval', "a bare number has no unit; write a duration such as '2s' or '2ms'"],
    ['', '  max_lag_bytes: 0\n', 'source.max_lag_bytes', 'must be greater than 0'],
    ['', '  max_lag_bytes: 1GB\n', 'source.max_lag_bytes', "invalid size '1GB'; units are binary, so write '1GiB'"],
    ['', '  max_lag_bytes: [1]\n', 'source.max_lag_bytes', "expected a size such as '1GiB' or a number of bytes, got a list"],
  ];
  for (const [extra, source, path, message] of cases) {
    assert.deepEqual(problemsOf(configText(extra, source)), [{ path, message }], `${extra}${source}`);
  }
});

test('short admin token is rejected without its value', () => {
  const problems = problemsOf(configText('server:\n  admin_token: ${ADMIN_TOKEN}\n'), { ...ENV, ADMIN_TOKEN: 'tooshort' });
  assert.equal(problems.length, 1);
  assert.equal(problems[0]?.path, 'server.admin_token');
  assert.match(problems[0]?.message ?? '', /at least 16 characters/);
  assert.doesNotMatch(problems[0]?.message ?? '', /tooshort/);
});

test('unknown server key lists the valid keys', () => {
  assert.deepEqual(problemsOf(configText('server:\n  address: 127.0.0.1\n')), [
    { path: 'server.address', message: 'unknown key; valid keys are enabled, host, port, admin_token' },
  ]);
});
