import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError, type ConfigProblem } from '../../src/core/errors.js';

const ENV = { DATABASE_URL: 'postgres://walhook:secret@127.0.0.1:5432/app' };

const MINIMAL = `
source:
  connection: \${DATABASE_URL}
webhooks:
  - name: orders-api
    url: https://example.test/hooks/orders
triggers:
  - name: order_events
    table: public.orders
    webhook: orders-api
`;

const CONFIG_DIR = fileURLToPath(new URL('../../config/', import.meta.url));

function parse(text: string, env: Record<string, string | undefined> = ENV) {
  return parseConfig(text, { file: 'test.yaml', env });
}

/** Parses text that must be invalid and returns the problems of the ConfigError. */
function problemsOf(text: string, env: Record<string, string | undefined> = ENV): readonly ConfigProblem[] {
  try {
    parse(text, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.code, 'WALHOOK_CONFIG_INVALID');
    return error.problems;
  }
  assert.fail('expected a ConfigError, but the configuration was accepted');
}

/** Builds a file from MINIMAL with one webhook and one trigger replaced. */
function withEntries(webhook: string, trigger = '    table: public.orders\n    webhook: orders-api\n'): string {
  return `source:\n  connection: \${DATABASE_URL}\nwebhooks:\n  - name: orders-api\n${webhook}triggers:\n  - name: order_events\n${trigger}`;
}

test('config normalizes a minimal file with defaults', () => {
  const config = parse(MINIMAL);
  assert.deepEqual(config, {
    source: {
      connection: ENV.DATABASE_URL,
      slot: 'walhook',
      publication: 'walhook',
      plugin: 'pgoutput',
      maxLagBytes: 1024n ** 3n,
      replicaIdentityFull: false,
    },
    webhooks: [
      {
        name: 'orders-api',
        url: 'https://example.test/hooks/orders',
        headers: {},
        timeoutMs: 10_000,
        retry: { initialDelayMs: 1000, maxDelayMs: 300_000, maxAttempts: null, multiplier: 2, onStatus: [408, 425, 429, '5xx'] },
        concurrency: 16,
        ordering: 'row',
        rateLimit: null,
        circuitBreaker: null,
        onFailure: 'dead_letter',
        batch: null,
        maxBodyBytes: 10 * 1024 * 1024,
        signingSecret: null,
        stringifyNumeric: false,
      },
    ],
    triggers: [
      {
        name: 'order_events',
        table: { schema: 'public', name: 'orders' },
        operations: ['insert', 'update', 'delete', 'truncate'],
        webhook: 'orders-api',
        unchangedToast: 'omit',
      },
    ],
    messageTriggers: [],
    deadLetters: { schema: 'walhook' },
    server: { enabled: true, host: '0.0.0.0', port: 8080, adminToken: null },
    leader: { pollIntervalMs: 2000 },
    log: { level: 'info' },
    shutdownTimeoutMs: 30_000,
    maxInflightEvents: 1_000,
    maxInflightBytes: 16 * 1024 * 1024,
  });
});

test('config keeps explicit values', () => {
  const config = parse(`
source:
  connection: host=127.0.0.1 dbname=app
  slot: orders_slot
  publication: orders_pub
  plugin: wal2json
webhooks:
  - name: orders-api
    url: http://127.0.0.1:8080/hooks
    headers:
      Authorization: Bearer abc
      X-Attempt-Limit: "5"
    timeout: 1.5s
    retry: { initial_delay: 250ms, max_delay: 1h }
triggers:
  - name: order_events
    table: Sales.Orders
    operations: [delete, insert]
    webhook: orders-api
log:
  level: debug
shutdown_timeout: 2m
`);
  assert.deepEqual(config.source, {
    connection: 'postgres:///app?host=127.0.0.1',
    slot: 'orders_slot',
    publication: 'orders_pub',
    plugin: 'wal2json',
    maxLagBytes: 1024n ** 3n,
    replicaIdentityFull: false,
  });
  const [webhook] = config.webhooks;
  assert.deepEqual(webhook?.headers, { Authorization: 'Bearer abc', 'X-Attempt-Limit': '5' });
  assert.equal(webhook?.timeoutMs, 1500);
  assert.deepEqual(webhook?.retry, { initialDelayMs: 250, maxDelayMs: 3_600_000, maxAttempts: null, multiplier: 2, onStatus: [408, 425, 429, '5xx'] });
  assert.deepEqual(config.triggers[0]?.table, { schema: 'sales', name: 'orders' });
  assert.deepEqual(config.triggers[0]?.operations, ['insert', 'delete']);
  assert.equal(config.log.level, 'debug');
  assert.equal(config.shutdownTimeoutMs, 120_000);
});

test('config result is deeply frozen', () => {
  const config = parse(MINIMAL);
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(config.source));
  assert.ok(Object.isFrozen(config.webhooks));
  assert.ok(Object.isFrozen(config.webhooks[0]?.headers));
  assert.ok(Object.isFrozen(config.webhooks[0]?.retry));
  assert.ok(Object.isFrozen(config.triggers[0]?.table));
  assert.ok(Object.isFrozen(config.triggers[0]?.operations));
  assert.throws(() => {
    (config.webhooks[0]?.headers as Record<string, string>)['X-Extra'] = 'x';
  }, TypeError);
});

test('config rejects an unknown webhook name', () => {
  const problems = problemsOf(MINIMAL.replace('webhook: orders-api', 'webhook: ordres-api'));
  assert.deepEqual(problems, [
    {
      path: 'triggers[0].webhook',
      message: "no webhook named 'ordres-api'; did you mean 'orders-api'? Defined webhooks: orders-api",
    },
  ]);
});

test('config lists webhooks when no name is close', () => {
  const problems = problemsOf(MINIMAL.replace('webhook: orders-api', 'webhook: billing'));
  assert.deepEqual(problems, [
    { path: 'triggers[0].webhook', message: "no webhook named 'billing'; defined webhooks: orders-api" },
  ]);
});

test('config reports triggers without a webhooks section', () => {
  const text = `
source:
  connection: \${DATABASE_URL}
triggers:
  - name: order_events
    table: public.orders
    webhook: orders-api
`;
  assert.deepEqual(problemsOf(text), [
    { path: 'webhooks', message: 'required key is missing' },
    { path: 'triggers[0].webhook', message: "no webhook named 'orders-api'; the file defines no webhooks" },
  ]);
});

test('config rejects an unset variable with its path', () => {
  assert.deepEqual(problemsOf(MINIMAL, {}), [
    {
      path: 'source.connection',
      message: 'environment variable DATABASE_URL is not set; export it or write ${DATABASE_URL:-value}',
    },
  ]);
});

test('config rejects an empty variable', () => {
  assert.deepEqual(problemsOf(MINIMAL, { DATABASE_URL: '' }), [
    {
      path: 'source.connection',
      message: 'environment variable DATABASE_URL is empty; set a value or write ${DATABASE_URL:-value}',
    },
  ]);
});

test('config uses a variable default', () => {
  const text = MINIMAL.replace('https://example.test/hooks/orders', '${HOOK_URL:-http://127.0.0.1:8787/hooks}');
  assert.equal(parse(text).webhooks[0]?.url, 'http://127.0.0.1:8787/hooks');
  assert.equal(parse(text, { ...ENV, HOOK_URL: '' }).webhooks[0]?.url, 'http://127.0.0.1:8787/hooks');
  assert.equal(
    parse(text, { ...ENV, HOOK_URL: 'https://hooks.test/a' }).webhooks[0]?.url,
    'https://hooks.test/a',
  );
});

test('config keeps YAML syntax in a variable as text', () => {
  const token = 'a: [b, {c: "d"}] # e &f *g';
  const text = withEntries('    url: https://example.test/\n    headers:\n      Authorization: Bearer ${TOKEN}\n');
  const config = parse(text, { ...ENV, TOKEN: token });
  assert.equal(config.webhooks[0]?.headers['Authorization'], `Bearer ${token}`);
});

test('config reads $${ as a literal ${', () => {
  const text = withEntries('    url: https://example.test/\n    headers:\n      X-Template: "$${id}"\n');
  assert.equal(parse(text).webhooks[0]?.headers['X-Template'], '${id}');
});

test('config reports only the variable for an unresolved value', () => {
  const text = MINIMAL.replace('https://example.test/hooks/orders', '${HOOK_URL}')
    .replace('webhook: orders-api', 'webhook: ${HOOK_NAME}');
  assert.deepEqual(
    problemsOf(text).map((problem) => problem.path),
    ['webhooks[0].url', 'triggers[0].webhook'],
  );
});

test('config rejects bad durations', () => {
  const cases: Array<[string, string]> = [
    ['10', "a bare number has no unit; write a duration such as '10s' or '10ms'"],
    ['"10"', "invalid duration '10': a bare number has no unit; write it with one, such as '10s' or '10ms'"],
    ['10sec', "invalid duration '10sec': expected a number followed by ms, s, m or h, such as '250ms', '10s', '1.5m' or '1h'"],
    ['0s', "must be greater than 0, got '0s'"],
    ['597h', "must be at most 2147483647ms (about 596h), the maximum Node.js timer delay, got '597h'"],
    ['', "expected a duration such as '10s', got an empty value"],
    ['[10s]', "expected a duration such as '10s', got a list"],
  ];
  for (const [value, message] of cases) {
    const text = withEntries(`    url: https://example.test/\n    timeout: ${value}\n`);
    assert.deepEqual(problemsOf(text), [{ path: 'webhooks[0].timeout', message }], `timeout: ${value}`);
  }
});

test('config rejects max_delay below initial_delay', () => {
  const text = withEntries('    url: https://example.test/\n    retry: { initial_delay: 2s, max_delay: 1500ms }\n');
  assert.deepEqual(problemsOf(text), [
    { path: 'webhooks[0].retry.max_delay', message: 'must be at least initial_delay (2s), got 1500ms' },
  ]);
});

test('config applies retry defaults per key', () => {
  const text = withEntries('    url: https://example.test/\n    retry: { initial_delay: 2s }\n');
  assert.deepEqual(parse(text).webhooks[0]?.retry, { initialDelayMs: 2000, maxDelayMs: 300_000, maxAttempts: null, multiplier: 2, onStatus: [408, 425, 429, '5xx'] });
});

test('config rejects unknown keys with their path', () => {
  const text = `${MINIMAL.replace('    url:', '    timout: 5s\n    url:')}logs: {}\n`;
  assert.deepEqual(problemsOf(text), [
    { path: 'webhooks[0].timout', message: "unknown key; did you mean 'timeout'?" },
    { path: 'logs', message: "unknown key; did you mean 'log'?" },
  ]);
});

test('config lists valid keys when no key is close', () => {
  const text = MINIMAL.replace('source:\n', 'source:\n  database: app\n');
  assert.deepEqual(problemsOf(text), [
    { path: 'source.database', message: 'unknown key; valid keys are connection, slot, publication, plugin, max_lag_bytes, replica_identity_full' },
  ]);
});

test('config suggests snake_case for camelCase keys', () => {
  const text = withEntries('    url: https://example.test/\n    retry: { initialDelay: 2s }\n');
  assert.deepEqual(problemsOf(text), [
    { path: 'webhooks[0].retry.initialDelay', message: "unknown key; did you mean 'initial_delay'?" },
  ]);
});

test('config reports several problems at once in file order', () => {
  const text = `
source:
  connection: \${DATABASE_URL}
  plugin: pgouput
webhooks:
  - name: orders-api
    url: ftp://example.test/
    timeout: 10
  - name: orders-api
    url: https://example.test/b
triggers:
  - name: order_events
    table: public..orders
    operations: [insret, update, update]
    webhook: ordres-api
log:
  level: warning
shutdown_timeout: -1s
`;
  const problems = problemsOf(text);
  assert.deepEqual(
    problems.map((problem) => problem.path),
    [
      'source.plugin',
      'webhooks[0].url',
      'webhooks[0].timeout',
      'webhooks[1].name',
      'triggers[0].table',
      'triggers[0].operations[0]',
      'triggers[0].operations[2]',
      'triggers[0].webhook',
      'log.level',
      'shutdown_timeout',
    ],
  );
  assert.match(problems[0]?.message ?? '', /did you mean 'pgoutput'\?$/);
  assert.equal(problems[1]?.message, "must be an http(s) URL, got 'ftp://example.test/'");
  assert.match(problems[3]?.message ?? '', /duplicate webhook name 'orders-api', already used by webhooks\[0\]/);
  assert.match(problems[5]?.message ?? '', /got 'insret'; did you mean 'insert'\?$/);
  assert.equal(problems[6]?.message, "duplicate operation 'update'");
  assert.match(problems[8]?.message ?? '', /got 'warning'; did you mean 'warn'\?$/);
});

test('config error message lists every problem', () => {
  const text = MINIMAL.replace('webhook: orders-api', 'webhook: nope').replace('public.orders', 'a.b.c');
  assert.throws(() => parse(text), {
    name: 'ConfigError',
    message:
      'invalid configuration in test.yaml:\n' +
      "  triggers[0].table: invalid table name 'a.b.c': expected table or schema.table, got 3 dot-separated parts; put a part in double quotes if its name contains a dot\n" +
      "  triggers[0].webhook: no webhook named 'nope'; defined webhooks: orders-api",
  });
});

test('config rejects duplicate trigger names', () => {
  const text = `${MINIMAL}  - name: order_events\n    table: public.customers\n    webhook: orders-api\n`;
  assert.deepEqual(problemsOf(text), [
    {
      path: 'triggers[1].name',
      message:
        "duplicate trigger name 'order_events', already used by triggers[0]; give each trigger a unique name",
    },
  ]);
});

test('config rejects missing required keys', () => {
  const problems = problemsOf('source: {}\nwebhooks: [{}]\ntriggers: []\n');
  assert.deepEqual(problems, [
    { path: 'source.connection', message: 'required key is missing' },
    { path: 'webhooks[0].name', message: 'required key is missing' },
    { path: 'webhooks[0].url', message: 'required key is missing' },
    { path: 'triggers', message: 'define at least one trigger' },
  ]);
});

test('config rejects values of the wrong type', () => {
  const text = withEntries(
    '    url: https://example.test/\n',
    '    table: 42\n    operations: insert\n    webhook: [orders-api]\n',
  );
  assert.deepEqual(problemsOf(text), [
    { path: 'triggers[0].table', message: 'expected a string, got number 42; put the value in quotes' },
    {
      path: 'triggers[0].operations',
      message: "expected a list, got a string; write a list, such as [a, b] or one '- item' per line",
    },
    { path: 'triggers[0].webhook', message: 'expected a string, got a list' },
  ]);
});

test('config rejects invalid URLs', () => {
  for (const url of ['example.test/hooks', 'ftp://example.test/', 'http://', 'mailto:a@example.test']) {
    const problems = problemsOf(withEntries(`    url: "${url}"\n`));
    assert.deepEqual(problems, [{ path: 'webhooks[0].url', message: `must be an http(s) URL, got '${url}'` }]);
  }
});

test('config rejects operations lists it cannot use', () => {
  const empty = problemsOf(withEntries('    url: https://example.test/\n', '    table: t\n    operations: []\n    webhook: orders-api\n'));
  assert.deepEqual(empty, [
    { path: 'triggers[0].operations', message: 'list at least one operation, or remove the key to get all four' },
  ]);

  const duplicate = problemsOf(
    withEntries('    url: https://example.test/\n', '    table: t\n    operations: [insert, insert]\n    webhook: orders-api\n'),
  );
  assert.deepEqual(duplicate, [{ path: 'triggers[0].operations[1]', message: "duplicate operation 'insert'" }]);
});

test('config rejects headers it cannot send', () => {
  const text = withEntries(
    '    url: https://example.test/\n' +
      '    headers:\n' +
      '      Authorization: Bearer ${TOKEN}\n' +
      '      authorization: Basic x\n' +
      '      X-Count: 5\n' +
      '      x-count: "6"\n' +
      '      Content-Length: "3"\n' +
      '      Bad Name: x\n' +
      '      X-Injected: ${INJECTED}\n',
  );
  const problems = problemsOf(text, { ...ENV, TOKEN: 'secret-token', INJECTED: 'a\r\nX-Evil: 1' });
  assert.deepEqual(
    problems.map((problem) => problem.path),
    [
      'webhooks[0].headers.authorization',
      'webhooks[0].headers.X-Count',
      'webhooks[0].headers.x-count',
      'webhooks[0].headers.Content-Length',
      'webhooks[0].headers["Bad Name"]',
      'webhooks[0].headers.X-Injected',
    ],
  );
  assert.match(problems[0]?.message ?? '', /duplicate header; 'Authorization' is the same header/);
  assert.equal(problems[1]?.message, 'expected a string value, got a number; put the value in quotes');
  assert.match(problems[2]?.message ?? '', /duplicate header; 'X-Count' is the same header/);
  assert.match(problems[3]?.message ?? '', /cannot send a Content-Length header/);
  assert.match(problems[4]?.message ?? '', /invalid header name/);
  assert.match(problems[5]?.message ?? '', /contains a line break/);
  for (const problem of problems) {
    assert.ok(!problem.message.includes('X-Evil'), `${problem.path} repeats the header value`);
    assert.ok(!problem.message.includes('secret-token'), `${problem.path} repeats the token`);
  }
});

test('config keeps the connection string out of messages', () => {
  const keyValue = problemsOf(MINIMAL, { DATABASE_URL: "host=127.0.0.1 password='hunter2" });
  assert.equal(keyValue.length, 1);
  assert.ok(!keyValue[0]?.message.includes('hunter2'));

  const problems = problemsOf(MINIMAL, { DATABASE_URL: 'mysql://walhook:hunter2@127.0.0.1/app' });
  assert.deepEqual(problems, [
    {
      path: 'source.connection',
      message: 'expected a postgres:// or postgresql:// URL or a key=value string, got a mysql:// URL',
    },
  ]);
  const misplaced = problemsOf(MINIMAL.replace('source:\n  connection: ${DATABASE_URL}', 'source: ${DATABASE_URL}'));
  assert.deepEqual(misplaced, [{ path: 'source', message: 'expected a mapping, got a string' }]);
});

test('config rejects invalid slot and publication names', () => {
  const text = MINIMAL.replace('source:\n', `source:\n  slot: Walhook-Slot\n  publication: ${'p'.repeat(64)}\n`);
  assert.deepEqual(problemsOf(text), [
    {
      path: 'source.slot',
      message: "invalid slot name 'Walhook-Slot'; use 1 to 63 lower-case letters, digits or '_'",
    },
    {
      path: 'source.publication',
      message: `invalid publication name '${'p'.repeat(64)}'; use 1 to 63 bytes without the NUL character`,
    },
  ]);
});

test('config keeps publication names as written', () => {
  const text = MINIMAL.replace('source:\n', 'source:\n  publication: "Orders Pub"\n');
  assert.equal(parse(text).source.publication, 'Orders Pub');
});

test('config rejects invalid webhook names', () => {
  const text = MINIMAL.replace('name: orders-api', 'name: "orders api"').replace('webhook: orders-api', 'webhook: "orders api"');
  assert.deepEqual(problemsOf(text), [
    {
      path: 'webhooks[0].name',
      message:
        "invalid webhook name 'orders api'; use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    },
  ]);
});

test('config parses quoted table names', () => {
  const tables: Array<[string, { schema: string; name: string }]> = [
    [`'"Sales.EU"."Order Items"'`, { schema: 'Sales.EU', name: 'Order Items' }],
    ['Public.Orders', { schema: 'public', name: 'orders' }],
    [`'"quote""d"'`, { schema: 'public', name: 'quote"d' }],
  ];
  for (const [yamlValue, expected] of tables) {
    const text = MINIMAL.replace('table: public.orders', `table: ${yamlValue}`);
    assert.deepEqual(parse(text).triggers[0]?.table, expected, yamlValue);
  }
});

test('config reports YAML syntax errors with line and column', () => {
  const problems = problemsOf('source:\n  connection: [a, b\nwebhooks: []\n');
  assert.equal(problems.length, 1);
  assert.equal(problems[0]?.path, '');
  assert.match(problems[0]?.message ?? '', /^invalid YAML at line 3, column 1: /);

  const duplicateKey = problemsOf('source: {}\nsource: {}\n');
  assert.deepEqual(duplicateKey, [{ path: '', message: 'invalid YAML at line 2, column 1: Map keys must be unique' }]);

  const twoDocuments = problemsOf(`${MINIMAL}---\n${MINIMAL}`);
  assert.match(twoDocuments[0]?.message ?? '', /more than one YAML document/);
});

test('config rejects an empty file and a non-mapping', () => {
  assert.deepEqual(problemsOf(''), [
    { path: '', message: 'the file is empty; define at least source, webhooks and triggers' },
  ]);
  assert.deepEqual(problemsOf('# only a comment\n'), [
    { path: '', message: 'the file is empty; define at least source, webhooks and triggers' },
  ]);
  assert.deepEqual(problemsOf('- source\n'), [{ path: '', message: 'expected a mapping, got a list' }]);
});

test('config rejects unknown YAML tags', () => {
  const problems = problemsOf(MINIMAL.replace('table: public.orders', 'table: !table public.orders'));
  assert.match(problems[0]?.message ?? '', /^invalid YAML at line \d+, column \d+: Unresolved tag: !table/);
});

test('config supports YAML anchors and merge keys', () => {
  const text = `
source:
  connection: \${DATABASE_URL}
webhooks:
  - &base
    name: orders-api
    url: https://example.test/orders
    retry: { initial_delay: 2s, max_delay: 1m }
  - <<: *base
    name: customers-api
    url: https://example.test/customers
triggers:
  - name: order_events
    table: orders
    webhook: customers-api
`;
  const config = parse(text);
  assert.equal(config.webhooks[1]?.name, 'customers-api');
  assert.deepEqual(config.webhooks[1]?.retry, { initialDelayMs: 2000, maxDelayMs: 60_000, maxAttempts: null, multiplier: 2, onStatus: [408, 425, 429, '5xx'] });
});

test('load config uses the given environment', (context) => {
  const directory = mkdtempSync(join(tmpdir(), 'walhook-config-'));
  context.after(() => rmSync(directory, { recursive: true, force: true }));
  const file = join(directory, 'walhook.yaml');
  writeFileSync(file, MINIMAL);

  const config = loadConfig(file, { DATABASE_URL: 'postgres://127.0.0.1/other' });
  assert.equal(config.source.connection, 'postgres://127.0.0.1/other');
});

test('load config reports a missing file with its path', () => {
  const file = join(tmpdir(), 'walhook-no-such-dir', 'missing.yaml');
  assert.throws(() => loadConfig(file, ENV), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.message, `invalid configuration in ${file}:\n  cannot read the configuration file: file not found`);
    return true;
  });
});

test('load config reports a directory', (context) => {
  const directory = mkdtempSync(join(tmpdir(), 'walhook-config-'));
  context.after(() => rmSync(directory, { recursive: true, force: true }));
  assert.throws(() => loadConfig(directory, ENV), /it is a directory; expected a YAML file/);
});

test('config example file parses', () => {
  const config = loadConfig(join(CONFIG_DIR, 'example.yaml'), { ...ENV, ORDERS_TOKEN: 'token' });
  assert.deepEqual(
    config.webhooks.map((webhook) => webhook.name),
    ['orders-api', 'audit-log'],
  );
  assert.equal(config.webhooks[0]?.headers['Authorization'], 'Bearer token');
  assert.equal(config.webhooks[1]?.url, 'http://127.0.0.1:9000/audit');
  assert.deepEqual(config.triggers[1]?.table, { schema: 'Sales.EU', name: 'Order Items' });
  assert.deepEqual(config.deadLetters, { schema: 'walhook' });
});

test('config demo file parses', () => {
  const config = loadConfig(join(CONFIG_DIR, 'demo.yaml'), ENV);
  assert.equal(config.source.connection, ENV.DATABASE_URL);
  assert.equal(config.webhooks.length, 1);
  assert.equal(config.webhooks[0]?.name, 'demo-receiver');
  assert.equal(config.webhooks[0]?.url, 'http://127.0.0.1:8787/hooks');
  assert.equal(config.webhooks[0]?.retry.initialDelayMs, 250);
  assert.equal(config.webhooks[0]?.retry.maxDelayMs, 5000);
  assert.deepEqual(
    config.triggers.map((trigger) => [trigger.table.name, trigger.operations, trigger.webhook]),
    [
      ['orders', ['insert', 'update', 'delete', 'truncate'], 'demo-receiver'],
      ['customers', ['insert'], 'demo-receiver'],
    ],
  );
});

test('config keeps the dead-letter schema as written', () => {
  const config = parse(`${MINIMAL}dead_letters:\n  schema: Ops Failures\n`);
  assert.deepEqual(config.deadLetters, { schema: 'Ops Failures' });
});

test('config rejects a pg_ dead-letter schema', () => {
  assert.deepEqual(problemsOf(`${MINIMAL}dead_letters:\n  schema: pg_walhook\n`), [
    {
      path: 'dead_letters.schema',
      message: "invalid schema name 'pg_walhook'; PostgreSQL reserves names that start with 'pg_' for system schemas",
    },
  ]);
});

test('config rejects a too long dead-letter schema', () => {
  const name = 'a'.repeat(64);
  assert.deepEqual(problemsOf(`${MINIMAL}dead_letters:\n  schema: ${name}\n`), [
    {
      path: 'dead_letters.schema',
      message: `invalid schema name '${name}'; use 1 to 63 bytes without the NUL character`,
    },
  ]);
});

test('config suggests a dead_letters key', () => {
  assert.deepEqual(problemsOf(`${MINIMAL}dead_letters:\n  schemas: ops\n`), [
    { path: 'dead_letters.schemas', message: "unknown key; did you mean 'schema'?" },
  ]);
});

test('config rejects a trigger in the default dead-letter schema', () => {
  const text = MINIMAL.replace('table: public.orders', 'table: Walhook.orders');
  assert.deepEqual(problemsOf(text), [
    {
      path: 'triggers[0].table',
      message:
        "table walhook.orders is in the dead-letter schema 'walhook', which belongs to walhook; " +
        'choose a table in another schema, or set dead_letters.schema to a schema without streamed tables',
    },
  ]);
});

test('config rejects a trigger in a custom dead-letter schema', () => {
  const text = `${MINIMAL}dead_letters:\n  schema: public\n`;
  const problems = problemsOf(text);
  assert.equal(problems.length, 1);
  assert.equal(problems[0]?.path, 'triggers[0].table');
  assert.match(problems[0]?.message ?? '', /^table public\.orders is in the dead-letter schema 'public'/);
});

test('config compares the dead-letter schema case-sensitively', () => {
  const config = parse(`${MINIMAL}dead_letters:\n  schema: Public\n`);
  assert.equal(config.deadLetters.schema, 'Public');
  assert.deepEqual(config.triggers[0]?.table, { schema: 'public', name: 'orders' });
});

test('config reports a trigger schema problem with others', () => {
  const text = MINIMAL.replace('table: public.orders', 'table: walhook.orders').replace(
    'webhook: orders-api\n',
    'webhook: orders-api\n    operations: []\n',
  );
  assert.deepEqual(
    problemsOf(text).map((problem) => problem.path),
    ['triggers[0].table', 'triggers[0].operations'],
  );
});
