// The walhook command line as a child process: help, `validate` with and without
// --connect, and `run` against a server that cannot stream.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import YAML from 'yaml';

import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { LOG_LEVEL, REPO_ROOT, startWalhook } from '../helpers/walhook-process.js';

/** Deadline for one CLI command. validate and help take about a second. */
const CLI_DEADLINE_MS = 20_000;

/** A loopback URL for webhooks that these tests never call. */
const UNUSED_WEBHOOK_URL = 'http://127.0.0.1:9/hooks';

interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx src/cli/main.ts ARGS` in the repository root. */
function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  // node --test sets this in test files, and the CLI must not act as a test child.
  delete childEnv.NODE_TEST_CONTEXT;
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[name];
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: REPO_ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`walhook ${args.join(' ')} did not exit within ${CLI_DEADLINE_MS} ms\n${stdout}\n${stderr}`));
    }, CLI_DEADLINE_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

describe('walhook command line', () => {
  let configDir: string;

  before(async () => {
    configDir = await mkdtemp(join(tmpdir(), 'walhook-cli-test-'));
  });

  after(async () => {
    await rm(configDir, { recursive: true, force: true });
  });

  async function writeConfig(name: string, config: object | string): Promise<string> {
    const path = join(configDir, name);
    await writeFile(path, typeof config === 'string' ? config : YAML.stringify(config));
    return path;
  }

  function tableConfig(connection: string, table: string): object {
    return {
      source: { connection },
      webhooks: [{ name: 'unused', url: UNUSED_WEBHOOK_URL }],
      triggers: [{ name: 'events', table, webhook: 'unused' }],
    };
  }

  // These commands need no server and do not depend on each other, so they run at
  // the same time: each spends most of its second starting Node.js with tsx.
  describe('without a database', { concurrency: true }, () => {
    test('help lists commands and exit codes', async () => {
      const result = await runCli(['--help']);

      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Usage: walhook/m);
      assert.match(result.stdout, /^\s+run \[options\]\s+stream changes/m);
      assert.match(result.stdout, /^\s+validate \[options\]\s+check a configuration file/m);
      assert.match(result.stdout, /^Exit codes:/m);
      assert.match(result.stdout, /^\s+0\s+success/m);
      assert.match(result.stdout, /^\s+1\s+runtime failure/m);
      assert.match(result.stdout, /^\s+2\s+invalid configuration or usage/m);
    });

    test('missing command exits with the usage code', async () => {
      const result = await runCli([]);

      assert.equal(result.code, 2);
      assert.match(result.stderr, /Usage: walhook/);
    });

    test('validate accepts the example configuration', async () => {
      const result = await runCli(['validate', '--config', 'config/example.yaml'], {
        DATABASE_URL: 'postgres://walhook:secret@127.0.0.1:5432/shop',
        ORDERS_TOKEN: 'example-token',
        AUDIT_URL: undefined,
      });

      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'config/example.yaml: valid\n');
      assert.equal(result.stderr, '');
    });

    test('validate reports all problems at once', async () => {
      const path = await writeConfig(
        'broken.yaml',
        [
          'source:',
          '  connection: ${WALHOOK_TEST_UNSET_URL}',
          '  slott: walhook',
          'webhooks:',
          '  - name: orders-api',
          `    url: ${UNUSED_WEBHOOK_URL}`,
          '    timeout: 10 seconds',
          'triggers:',
          '  - name: order_events',
          '    table: public.orders',
          '    webhook: order-api',
          '',
        ].join('\n'),
      );

      const result = await runCli(['validate', '--config', path], { WALHOOK_TEST_UNSET_URL: undefined });

      assert.equal(result.code, 2);
      assert.equal(result.stdout, '');
      const lines = result.stderr.trimEnd().split('\n');
      assert.equal(lines[0], `invalid configuration in ${path}:`);
      assert.equal(lines.length, 5, result.stderr);
      assert.match(result.stderr, /^ {2}source\.connection: environment variable WALHOOK_TEST_UNSET_URL is not set/m);
      assert.match(result.stderr, /^ {2}source\.slott: unknown key; did you mean 'slot'\?/m);
      assert.match(result.stderr, /^ {2}webhooks\[0\]\.timeout: invalid duration '10 seconds'/m);
      assert.match(
        result.stderr,
        /^ {2}triggers\[0\]\.webhook: no webhook named 'order-api'; did you mean 'orders-api'\?/m,
      );
    });

    test('validate rejects a missing file', async () => {
      const result = await runCli(['validate', '--config', join(configDir, 'absent.yaml')]);

      assert.equal(result.code, 2);
      assert.match(result.stderr, /cannot read the configuration file: file not found/);
    });
  });

  describe('against a logical server', () => {
    let server: TestPostgres;
    let connection: string;

    before(async () => {
      server = await startPostgres();
      connection = await server.createDatabase('cli_shop');
      const client = new pg.Client({ connectionString: connection });
      await client.connect();
      try {
        await client.query('CREATE TABLE orders (id int PRIMARY KEY, note text)');
        await client.query('CREATE TABLE events_without_key (happened_at timestamptz, note text)');
      } finally {
        await client.end();
      }
    });

    after(async () => {
      await server?.close();
    });

    test('validate --connect accepts a ready database', async () => {
      const path = await writeConfig('ready.yaml', tableConfig('${DATABASE_URL}', 'public.orders'));

      const result = await runCli(['validate', '--config', path, '--connect'], { DATABASE_URL: connection });

      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, '');
      assert.match(result.stdout, /^note: publication 'walhook' does not exist; walhook creates it at start$/m);
      assert.match(result.stdout, /^note: replication slot 'walhook' does not exist; walhook creates it at start$/m);
      assert.ok(result.stdout.endsWith(`${path}: valid, database ready\n`), result.stdout);
    });

    test('validate --connect reports keyless table', async () => {
      const path = await writeConfig('no-key.yaml', tableConfig(connection, 'events_without_key'));

      const result = await runCli(['validate', '--config', path, '--connect']);

      assert.equal(result.code, 1);
      assert.match(result.stderr, /^error: table public\.events_without_key has no primary key or replica identity/m);
      assert.match(
        result.stderr,
        /add a primary key or run ALTER TABLE public\.events_without_key REPLICA IDENTITY FULL$/m,
      );
      assert.match(result.stderr, /: 1 database problem\(s\) found$/m);
    });
  });

  describe('against a server with wal_level replica', () => {
    let server: TestPostgres;

    before(async () => {
      server = await startPostgres({ settings: { wal_level: 'replica' } });
      await server.query('CREATE TABLE orders (id int PRIMARY KEY, note text)');
    });

    after(async () => {
      await server?.close();
    });

    test('validate --connect names wal_level fix', async () => {
      const path = await writeConfig('replica.yaml', tableConfig(server.connectionString, 'orders'));

      const result = await runCli(['validate', '--config', path, '--connect']);

      assert.equal(result.code, 1);
      assert.match(result.stderr, /^error: wal_level is 'replica'/m);
      assert.match(result.stderr, /ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL/);
    });

    test('run fails with the wal_level fix', async (t) => {
      const walhook = await startWalhook({ config: tableConfig(server.connectionString, 'orders'), t });

      const status = await walhook.waitForExit({ timeoutMs: CLI_DEADLINE_MS });

      assert.deepEqual(status, { code: 1, signal: null });
      const fatal = walhook.logs.filter((entry) => entry.level === LOG_LEVEL.fatal);
      assert.equal(fatal.length, 1, JSON.stringify(walhook.logs));
      assert.match(fatal[0]?.msg ?? '', /wal_level is 'replica', but logical decoding needs 'logical'/);
      assert.match(fatal[0]?.msg ?? '', /ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL/);
      assert.equal(fatal[0]?.code, 'WALHOOK_WAL_LEVEL');
      const publications = await server.query('SELECT pubname FROM pg_publication');
      assert.deepEqual(publications, [], 'walhook created a publication on a server it cannot stream from');
    });
  });
});
