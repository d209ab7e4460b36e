// deploy/kubernetes/sql/least-privilege.sql against a real server: the role it creates
// passes `validate --connect`, streams and writes dead letters without owning any table
// of the application. The other tests pin down PostgreSQL's rule that adding a table to
// a publication needs ownership of the table, which is why the script creates the
// publication as the administrator.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import YAML from 'yaml';

import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { skipOrFail } from '../helpers/skip.js';
import { waitFor } from '../helpers/wait.js';
import { runCli } from '../helpers/walhook-cli.js';
import { LOG_LEVEL, REPO_ROOT, startWalhook } from '../helpers/walhook-process.js';

const SCRIPT = join(REPO_ROOT, 'deploy/kubernetes/sql/least-privilege.sql');
const DATABASE = 'app';
const TABLES = 'public.orders, sales."Order Items"';
/** SQLSTATE insufficient_privilege. */
const INSUFFICIENT_PRIVILEGE = '42501';

interface PsqlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the script with psql as the superuser, with `variables` as -v NAME=VALUE. */
function runScript(postgres: TestPostgres, variables: Record<string, string>): Promise<PsqlResult> {
  const args = ['--no-psqlrc', '--quiet', '-v', 'ON_ERROR_STOP=1', '--file', SCRIPT];
  for (const [name, value] of Object.entries(variables)) {
    args.push('-v', `${name}=${value}`);
  }
  args.push(postgres.connectionStringFor(DATABASE));
  const child = spawn('psql', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** True when a psql binary is on PATH. */
function hasPsql(): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('psql', ['--version'], { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('close', (code) => resolve(code === 0));
  });
}

/** Returns `connection` with another user and password. */
function connectionAs(connection: string, user: string, password: string): string {
  const url = new URL(connection);
  url.username = user;
  url.password = password;
  return url.toString();
}

/** Runs `sql` in `connection` and returns the rows. */
async function queryAs<Row extends pg.QueryResultRow>(connection: string, sql: string, params: unknown[] = []): Promise<Row[]> {
  const client = new pg.Client({ connectionString: connection });
  await client.connect();
  try {
    return (await client.query<Row>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Returns the error that `sql` raises in `connection`. Fails when it succeeds. */
async function rejectionOf(connection: string, sql: string): Promise<{ code?: string; message: string }> {
  try {
    await queryAs(connection, sql);
  } catch (error) {
    return error as { code?: string; message: string };
  }
  assert.fail(`expected an error from: ${sql}`);
}

function walhookConfig(connection: string, receiver: Receiver, tables: readonly string[]): object {
  return {
    source: { connection, slot: 'walhook', publication: 'walhook' },
    webhooks: [{ name: 'receiver', url: receiver.url, retry: { initial_delay: '100ms', max_delay: '1s' } }],
    triggers: tables.map((table, index) => ({ name: `trigger_${index}`, table, webhook: 'receiver' })),
    dead_letters: { schema: 'walhook' },
    server: { host: '127.0.0.1', port: 0 },
    shutdown_timeout: '5s',
  };
}

let postgres: TestPostgres;
let receiver: Receiver;
let adminConnection: string;
let configDir: string;
let missingPsql = false;

before(async () => {
  missingPsql = !(await hasPsql());
  postgres = await startPostgres();
  receiver = await startReceiver();
  configDir = await mkdtemp(join(tmpdir(), 'walhook-least-privilege-'));
  adminConnection = await postgres.createDatabase(DATABASE);
  // The application's tables belong to their own role, as in production, and the
  // database and schema privileges of PUBLIC are revoked, so that each grant of the
  // script is needed.
  await queryAs(
    adminConnection,
    `CREATE ROLE app_owner NOLOGIN;
     REVOKE ALL ON DATABASE ${DATABASE} FROM PUBLIC;
     REVOKE ALL ON SCHEMA public FROM PUBLIC;
     CREATE SCHEMA sales AUTHORIZATION app_owner;
     CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);
     CREATE TABLE sales."Order Items" (id bigint PRIMARY KEY, sku text NOT NULL);
     CREATE TABLE public.customers (id bigint PRIMARY KEY, name text NOT NULL);
     ALTER TABLE public.orders OWNER TO app_owner;
     ALTER TABLE sales."Order Items" OWNER TO app_owner;
     ALTER TABLE public.customers OWNER TO app_owner;`,
  );
});

after(async () => {
  await receiver?.close();
  await postgres?.close();
  await rm(configDir, { recursive: true, force: true });
});

describe('least-privilege.sql', () => {
  const password = randomBytes(12).toString('hex');
  let roleConnection: string;

  before(() => {
    roleConnection = connectionAs(adminConnection, 'walhook', password);
  });

  test('script rejects a run without tables', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    const result = await runScript(postgres, { walhook_password: password });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /psql variable "tables" is not set/);
  });

  test('script rejects a run without a password', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    const result = await runScript(postgres, { tables: TABLES });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /psql variable "walhook_password" is not set/);
  });

  test('script creates role, publication and schema', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    const result = await runScript(postgres, { tables: TABLES, walhook_password: password });
    assert.equal(result.code, 0, result.stderr);

    const [role] = await queryAs<{ rolreplication: boolean; rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>(
      adminConnection,
      "SELECT rolreplication, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'walhook'",
    );
    assert.deepEqual(role, { rolreplication: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false });
    const published = await queryAs<{ table: string }>(
      adminConnection,
      "SELECT schemaname || '.' || tablename AS table FROM pg_publication_tables WHERE pubname = 'walhook' ORDER BY 1",
    );
    assert.deepEqual(published.map((row) => row.table), ['public.orders', 'sales.Order Items']);
    const [schema] = await queryAs<{ owner: string }>(
      adminConnection,
      "SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'walhook'",
    );
    assert.equal(schema?.owner, 'walhook');
    const [database] = await queryAs<{ can_create: boolean }>(
      adminConnection,
      "SELECT has_database_privilege('walhook', current_database(), 'CREATE') AS can_create",
    );
    assert.equal(database?.can_create, false, 'the role must not need CREATE on the database');
  });

  test('role passes validate --connect', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    const configPath = join(configDir, 'validate.yaml');
    await writeFile(configPath, YAML.stringify(walhookConfig(roleConnection, receiver, ['public.orders', 'sales."Order Items"'])));
    const result = await runCli(['validate', '--config', configPath, '--connect']);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /database ready/);
    assert.doesNotMatch(result.stderr, /error:/);
  });

  test('role streams and writes dead letters', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    // Row 2 is rejected for good, so it goes to the dead-letter table.
    receiver.respond((request) => {
      const row = (request.json as { event?: { data?: { new?: { id?: number } } } }).event?.data?.new;
      return { status: row?.id === 2 ? 400 : 200 };
    });
    t.after(() => receiver.respond(() => undefined));
    const walhook = await startWalhook({
      config: walhookConfig(roleConnection, receiver, ['public.orders', 'sales."Order Items"']),
      t,
    });
    await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 30_000 });

    await queryAs(adminConnection, "INSERT INTO public.orders VALUES (1, 'one'), (2, 'two')");
    await queryAs(adminConnection, `INSERT INTO sales."Order Items" VALUES (3, 'sku-3')`);
    await receiver.waitForRequests(3, { timeoutMs: 20_000 });

    const [table] = await queryAs<{ owner: string }>(
      adminConnection,
      "SELECT tableowner AS owner FROM pg_tables WHERE schemaname = 'walhook' AND tablename = 'dead_letters'",
    );
    assert.equal(table?.owner, 'walhook');
    const deadLetters = await waitFor(
      async () => {
        const rows = await queryAs<{ op: string; table_name: string }>(
          adminConnection,
          'SELECT op, table_name FROM walhook.dead_letters',
        );
        return rows.length > 0 ? rows : undefined;
      },
      { timeoutMs: 20_000, message: 'a row in walhook.dead_letters' },
    );
    assert.deepEqual(deadLetters, [{ op: 'INSERT', table_name: 'orders' }]);
    const [slot] = await queryAs<{ plugin: string }>(
      adminConnection,
      "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'walhook'",
    );
    assert.equal(slot?.plugin, 'pgoutput');

    const status = await walhook.stop({ timeoutMs: 15_000 });
    assert.deepEqual(status, { code: 0, signal: null });
  });

  test('role cannot add a table itself', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    const error = await rejectionOf(roleConnection, 'ALTER PUBLICATION walhook ADD TABLE public.customers');
    assert.equal(error.code, INSUFFICIENT_PRIVILEGE);
    assert.match(error.message, /must be owner of publication walhook/);

    // walhook's start tries the same statement for a trigger table missing from the
    // publication, and logs PostgreSQL's message as an error.
    const walhook = await startWalhook({ config: walhookConfig(roleConnection, receiver, ['public.customers']), t });
    const entry = await walhook.waitForLog(
      (candidate) =>
        candidate.level >= LOG_LEVEL.error &&
        /must be owner of publication walhook/.test(`${candidate.msg} ${(candidate.err as { message?: string })?.message}`),
      { timeoutMs: 30_000 },
    );
    assert.ok(entry !== undefined);
    await walhook.close();
  });

  test('second run adds new tables only', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    const result = await runScript(postgres, { tables: `${TABLES}, public.customers`, walhook_password: password });
    assert.equal(result.code, 0, result.stderr);
    const published = await queryAs<{ table: string }>(
      adminConnection,
      "SELECT schemaname || '.' || tablename AS table FROM pg_publication_tables WHERE pubname = 'walhook' ORDER BY 1",
    );
    assert.deepEqual(published.map((row) => row.table), ['public.customers', 'public.orders', 'sales.Order Items']);

    const again = await runScript(postgres, { tables: 'public.orders', walhook_password: password });
    assert.equal(again.code, 0, again.stderr);
    const [count] = await queryAs<{ count: number }>(
      adminConnection,
      "SELECT count(*)::int AS count FROM pg_publication_tables WHERE pubname = 'walhook'",
    );
    assert.equal(count?.count, 3, 'a run with fewer tables must not remove any');
  });
});

describe('least-privilege.sql for a second instance', () => {
  const password = randomBytes(12).toString('hex');

  test('name variables give separate objects', async (t) => {
    if (missingPsql) return skipOrFail(t, 'psql is not installed');
    // The variables that docs/scaling.md passes for deploy/examples/billing.
    const result = await runScript(postgres, {
      walhook_role: 'walhook_billing',
      publication: 'walhook_billing',
      dead_letter_schema: 'walhook_billing',
      tables: 'public.customers',
      walhook_password: password,
    });
    assert.equal(result.code, 0, result.stderr);

    const published = await queryAs<{ table: string }>(
      adminConnection,
      "SELECT schemaname || '.' || tablename AS table FROM pg_publication_tables WHERE pubname = 'walhook_billing'",
    );
    assert.deepEqual(published.map((row) => row.table), ['public.customers']);
    const [schema] = await queryAs<{ owner: string }>(
      adminConnection,
      "SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'walhook_billing'",
    );
    assert.equal(schema?.owner, 'walhook_billing');

    const connection = connectionAs(adminConnection, 'walhook_billing', password);
    const config = {
      ...walhookConfig(connection, receiver, ['public.customers']),
      source: { connection, slot: 'walhook_billing', publication: 'walhook_billing' },
      dead_letters: { schema: 'walhook_billing' },
    };
    const configPath = join(configDir, 'billing.yaml');
    await writeFile(configPath, YAML.stringify(config));
    const validation = await runCli(['validate', '--config', configPath, '--connect']);
    assert.equal(validation.code, 0, `${validation.stdout}\n${validation.stderr}`);
  });
});

describe('publication ownership rule', () => {
  const password = randomBytes(12).toString('hex');
  let creatorConnection: string;

  before(async () => {
    await queryAs(
      adminConnection,
      `CREATE ROLE creator LOGIN REPLICATION PASSWORD '${password}';
       GRANT CONNECT, CREATE ON DATABASE ${DATABASE} TO creator;
       GRANT USAGE ON SCHEMA public TO creator;
       GRANT SELECT ON public.orders, public.customers TO creator;`,
    );
    creatorConnection = connectionAs(adminConnection, 'creator', password);
  });

  test('CREATE on the database is not enough', async () => {
    const error = await rejectionOf(creatorConnection, 'CREATE PUBLICATION by_creator FOR TABLE public.orders');
    assert.equal(error.code, INSUFFICIENT_PRIVILEGE);
    assert.match(error.message, /must be owner of table orders/);
  });

  test('table owner creates and extends it', async () => {
    await queryAs(adminConnection, 'ALTER TABLE public.customers OWNER TO creator');
    await queryAs(creatorConnection, 'CREATE PUBLICATION by_creator FOR TABLE public.customers');
    const error = await rejectionOf(creatorConnection, 'ALTER PUBLICATION by_creator ADD TABLE public.orders');
    assert.equal(error.code, INSUFFICIENT_PRIVILEGE);
    assert.match(error.message, /must be owner of table orders/);
    await queryAs(adminConnection, 'ALTER TABLE public.customers OWNER TO app_owner');
    await queryAs(adminConnection, 'DROP PUBLICATION by_creator');
  });

  test('walhook creates it when the role owns the tables', async (t) => {
    await queryAs(adminConnection, 'ALTER TABLE public.customers OWNER TO creator');
    t.after(() => queryAs(adminConnection, 'ALTER TABLE public.customers OWNER TO app_owner'));
    const config = {
      ...walhookConfig(creatorConnection, receiver, ['public.customers']),
      source: { connection: creatorConnection, slot: 'by_creator', publication: 'by_creator' },
      dead_letters: { schema: 'creator_dead_letters' },
    };
    const walhook = await startWalhook({ config, t });
    await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 30_000 });
    const [publication] = await queryAs<{ owner: string }>(
      adminConnection,
      "SELECT pubowner::regrole::text AS owner FROM pg_publication WHERE pubname = 'by_creator'",
    );
    assert.equal(publication?.owner, 'creator');
    const status = await walhook.stop({ timeoutMs: 15_000 });
    assert.deepEqual(status, { code: 0, signal: null });
  });
});
