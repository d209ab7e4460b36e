// `walhook status` and `walhook teardown` against a real PostgreSQL, with and without a
// running walhook replica that leads.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import YAML from 'yaml';

import { type TestPostgres, startPostgres } from '../helpers/postgres.js';
import { type Receiver, startReceiver } from '../helpers/receiver.js';
import { waitFor } from '../helpers/wait.js';
import { runCli } from '../helpers/walhook-cli.js';
import { startWalhook, type WalhookProcess } from '../helpers/walhook-process.js';

interface StatusJson {
  healthy: boolean;
  attention: string[];
  database: { name: string; walLevel: string };
  slot: {
    name: string;
    condition: string;
    exists: boolean;
    active: boolean;
    activePid: number | null;
    plugin: string | null;
    walStatus: string | null;
    confirmedFlushLsn: string | null;
    lagBytes: string | null;
    retainedBytes: string | null;
  };
  publication: { name: string; exists: boolean; tables: string[]; missingTables: string[] };
  leader: { pid: number; applicationName: string | null; clientAddr: string | null; backendStart: string | null } | null;
  deadLetters: { table: string; exists: boolean; byTrigger: { trigger: string; pending: number; total: number; newestAt: string }[] };
  tables: { checked: string[]; findings: { level: string; message: string }[] };
}

let postgres: TestPostgres;
let receiver: Receiver;
let configDir: string;

before(async () => {
  postgres = await startPostgres();
  receiver = await startReceiver();
  configDir = await mkdtemp(join(tmpdir(), 'walhook-status-test-'));
  await postgres.query('CREATE TABLE st_orders (id int PRIMARY KEY, note text)');
  await postgres.query('CREATE TABLE st_keyless (id int)');
});

after(async () => {
  await receiver?.close();
  await postgres?.close();
  if (configDir !== undefined) await rm(configDir, { recursive: true, force: true });
});

/** Builds a configuration with its own slot, publication and dead-letter schema. */
function configFor(name: string, tables: readonly string[] = ['st_orders']): Record<string, unknown> {
  return {
    source: { connection: postgres.connectionString, slot: name, publication: name },
    webhooks: [{ name: 'receiver', url: receiver.url, retry: { initial_delay: '50ms', max_delay: '100ms', max_attempts: 2 } }],
    triggers: tables.map((table) => ({ name: `${name}_${table}`, table: `public.${table}`, webhook: 'receiver' })),
    dead_letters: { schema: `${name}_dl` },
    leader: { poll_interval: '1s' },
    server: { host: '127.0.0.1', port: 0 },
  };
}

async function writeConfig(name: string, config: object): Promise<string> {
  const path = join(configDir, `${name}.yaml`);
  await writeFile(path, YAML.stringify(config));
  return path;
}

async function statusJson(configPath: string): Promise<{ code: number | null; report: StatusJson; stderr: string }> {
  const result = await runCli(['status', '--config', configPath, '--json']);
  let report: StatusJson;
  try {
    report = JSON.parse(result.stdout) as StatusJson;
  } catch (error) {
    throw new Error(`status --json printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`, { cause: error });
  }
  return { code: result.code, report, stderr: result.stderr };
}

async function slotExists(slot: string): Promise<boolean> {
  const rows = await postgres.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  return rows.length === 1;
}

async function publicationExists(publication: string): Promise<boolean> {
  const rows = await postgres.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  return rows.length === 1;
}

async function schemaExists(schema: string): Promise<boolean> {
  const rows = await postgres.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return rows.length === 1;
}

async function startLeader(config: object, t: { after(fn: () => unknown): void }): Promise<WalhookProcess> {
  const walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });
  return walhook;
}

describe('walhook status', () => {
  test('status reports a healthy leader', async (t) => {
    const name = 'st_healthy';
    const config = configFor(name);
    const configPath = await writeConfig(name, config);
    const walhook = await startLeader(config, t);
    await postgres.query('INSERT INTO st_orders VALUES (1, $1)', ['healthy']);
    await receiver.waitForRequest((request) => request.body.includes('"healthy"'), { timeoutMs: 15_000 });

    const { code, report, stderr } = await statusJson(configPath);
    assert.equal(code, 0, `exit code; attention: ${report.attention.join(' | ')} ${stderr}`);
    assert.equal(report.healthy, true);
    assert.deepEqual(report.attention, []);
    assert.equal(report.database.walLevel, 'logical');
    assert.equal(report.slot.exists, true);
    assert.equal(report.slot.active, true);
    assert.equal(report.slot.plugin, 'pgoutput');
    assert.equal(report.slot.condition, 'ok');
    assert.match(report.slot.confirmedFlushLsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.match(report.slot.lagBytes ?? '', /^\d+$/);
    assert.match(report.slot.retainedBytes ?? '', /^\d+$/);
    assert.equal(report.publication.exists, true);
    assert.deepEqual(report.publication.tables, ['public.st_orders']);
    assert.deepEqual(report.publication.missingTables, []);
    assert.ok(report.leader !== null, 'a leader is reported');
    assert.equal(report.leader.applicationName, 'walhook-leader');
    assert.equal(report.leader.clientAddr, '127.0.0.1');
    assert.ok(report.leader.backendStart !== null);

    const won = await walhook.waitForLog('won the leader lock');
    assert.equal(report.leader.pid, won.sessionPid, 'the leader is the lock session of the running replica');
    assert.equal(report.deadLetters.exists, true, 'walhook created the dead-letter table at start');
    assert.deepEqual(report.deadLetters.byTrigger, []);
    assert.deepEqual(report.tables.checked, ['public.st_orders']);

    const text = await runCli(['status', '--config', configPath]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^replication slot$/m);
    assert.match(text.stdout, /lock session pid\s+\d+/);
    assert.match(text.stdout, /healthy: nothing needs attention/);
    assert.ok(!text.stdout.includes(postgres.password), 'the output contains no password');
  });

  test('status lists pending dead letters', async (t) => {
    const name = 'st_dead';
    const config = configFor(name);
    const configPath = await writeConfig(name, config);
    receiver.respond((request) => (request.body.includes('"rejected"') ? { status: 404 } : undefined));
    t.after(() => receiver.respond(() => undefined));
    const walhook = await startLeader(config, t);
    await postgres.query('INSERT INTO st_orders VALUES (2, $1)', ['rejected']);
    await walhook.waitForLog('delivery failed for good, writing a dead letter', { timeoutMs: 15_000 });

    const { report } = await waitFor(
      async () => {
        const result = await statusJson(configPath);
        return result.report.deadLetters.byTrigger.length > 0 ? result : undefined;
      },
      { timeoutMs: 15_000, message: 'the dead letter to show in status' },
    );
    assert.equal(report.healthy, false);
    const [entry] = report.deadLetters.byTrigger;
    assert.equal(entry?.trigger, `${name}_st_orders`);
    assert.equal(entry?.pending, 1);
    assert.equal(entry?.total, 1);
    assert.ok(report.attention.some((message) => /1 dead letters are pending/.test(message)), report.attention.join(' | '));

    const text = await runCli(['status', '--config', configPath]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /needs attention:\n {2}- 1 dead letters are pending/);
  });

  test('status reports problems without walhook', async () => {
    const name = 'st_problems';
    const configPath = await writeConfig(name, configFor(name, ['st_orders', 'st_keyless', 'st_absent']));
    await postgres.query(`CREATE PUBLICATION ${name} FOR TABLE st_orders`);

    const { code, report } = await statusJson(configPath);
    assert.equal(code, 1);
    assert.equal(report.healthy, false);
    assert.equal(report.slot.exists, false);
    assert.equal(report.slot.condition, 'missing');
    assert.equal(report.leader, null);
    assert.deepEqual(report.publication.missingTables, ['public.st_keyless', 'public.st_absent']);
    assert.equal(report.deadLetters.exists, false);
    const attention = report.attention.join('\n');
    assert.match(attention, /replication slot 'st_problems' does not exist/);
    assert.match(attention, /table public\.st_keyless is not in publication 'st_problems'/);
    assert.match(attention, /no walhook replica holds the leader lock/);
    assert.match(attention, /table public\.st_absent not found/);
    assert.match(attention, /table public\.st_keyless has no primary key or replica identity/);
  });

  test('status reports an unreachable database', async () => {
    const config = configFor('st_unreachable');
    (config.source as Record<string, unknown>).connection = `postgres://postgres:wrong-password-123@127.0.0.1:${postgres.port}/postgres`;
    const configPath = await writeConfig('st_unreachable', config);
    const result = await runCli(['status', '--config', configPath]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /reading the status failed: password authentication failed/);
    assert.ok(!result.stderr.includes('wrong-password-123'));
    assert.equal(result.stdout, '');
  });

  test('status rejects an invalid configuration', async () => {
    const configPath = await writeConfig('st_invalid', { source: { connection: postgres.connectionString } });
    const result = await runCli(['status', '--config', configPath]);
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
  });

  test('help documents the exit codes', async () => {
    const main = await runCli(['--help']);
    assert.match(main.stdout, /status \[options\]\s+print the state/);
    assert.match(main.stdout, /teardown \[options\]\s+drop the replication slot/);
    assert.match(main.stdout, /for status: something\n\s+needs attention/);
    const status = await runCli(['status', '--help']);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /0 {2}everything is healthy/);
    const teardown = await runCli(['teardown', '--help']);
    assert.equal(teardown.code, 0);
    assert.match(teardown.stdout, /1 {2}rejected/);
    assert.match(teardown.stdout, /--dead-letters/);
  });
});

describe('walhook teardown', () => {
  test('teardown rejects a running leader', async (t) => {
    const name = 'td_running';
    const config = configFor(name);
    const configPath = await writeConfig(name, config);
    const walhook = await startLeader(config, t);

    for (const args of [[], ['--yes']]) {
      const result = await runCli(['teardown', '--config', configPath, ...args]);
      assert.equal(result.code, 1, `teardown ${args.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr, /a walhook replica leads \(lock session pid \d+ from 127\.0\.0\.1\)/);
      assert.match(result.stderr, /Stop every walhook replica of this slot first/);
    }
    assert.equal(await slotExists(name), true);
    assert.equal(await publicationExists(name), true);
    assert.equal(walhook.exitStatus, undefined, 'walhook still runs');
  });

  test('teardown rejects an active slot', async (t) => {
    const name = 'td_active';
    await postgres.query(`CREATE PUBLICATION ${name} FOR TABLE st_orders`);
    await postgres.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [name]);
    const stream = new pg.Client({ connectionString: postgres.connectionString, replication: 'database' } as pg.ClientConfig);
    stream.on('error', () => undefined);
    await stream.connect();
    t.after(() => stream.end().catch(() => undefined));
    void stream
      .query(`START_REPLICATION SLOT ${name} LOGICAL 0/0 (proto_version '1', publication_names '${name}')`)
      .catch(() => undefined);
    await waitFor(
      async () => (await postgres.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [name]))[0]?.active,
      { message: 'the walsender to attach to the slot' },
    );

    const configPath = await writeConfig(name, configFor(name));
    const result = await runCli(['teardown', '--config', configPath, '--yes']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /replication slot 'td_active' is active \(walsender pid \d+\)/);
    assert.match(result.stderr, /Stop every walhook replica/);
    assert.equal(await slotExists(name), true);
    assert.equal(await publicationExists(name), true);
  });

  test('teardown plans, then drops everything', async (t) => {
    const name = 'td_full';
    const config = configFor(name);
    const configPath = await writeConfig(name, config);
    receiver.respond((request) => (request.body.includes('"teardown-dead"') ? { status: 410 } : undefined));
    t.after(() => receiver.respond(() => undefined));
    const walhook = await startLeader(config, t);
    await postgres.query('INSERT INTO st_orders VALUES (3, $1)', ['teardown-dead']);
    await walhook.waitForLog('delivery failed for good, writing a dead letter', { timeoutMs: 15_000 });
    await waitFor(
      async () => (await postgres.query(`SELECT 1 FROM ${name}_dl.dead_letters`)).length === 1,
      { message: 'the dead letter to be written' },
    );
    const exit = await walhook.stop({ timeoutMs: 15_000 });
    assert.equal(exit.code, 0);

    const stopped = await statusJson(configPath);
    assert.equal(stopped.code, 1);
    assert.match(stopped.report.attention.join('\n'), /replication slot 'td_full' is not active/);

    const plan = await runCli(['teardown', '--config', configPath, '--dead-letters']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /^would:$/m);
    assert.match(plan.stdout, /- drop replication slot 'td_full' \(plugin pgoutput, confirmed_flush_lsn [0-9A-F]+\/[0-9A-F]+/);
    assert.match(plan.stdout, /- drop publication 'td_full' \(1 table\(s\)\)/);
    assert.match(plan.stdout, /- drop table "td_full_dl"\."dead_letters" \(1 row\(s\), 1 pending\)/);
    assert.match(plan.stdout, /- drop schema "td_full_dl" if it is then empty/);
    assert.match(plan.stdout, /nothing was changed; run again with --yes/);
    assert.equal(await slotExists(name), true, 'the plan drops nothing');
    assert.equal(await publicationExists(name), true);
    assert.equal(await schemaExists(`${name}_dl`), true);

    const done = await runCli(['teardown', '--config', configPath, '--dead-letters', '--yes']);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /^dropped replication slot 'td_full'$/m);
    assert.match(done.stdout, /^dropped publication 'td_full'$/m);
    assert.match(done.stdout, /^dropped table "td_full_dl"\."dead_letters"$/m);
    assert.match(done.stdout, /^dropped schema "td_full_dl"$/m);
    assert.equal(await slotExists(name), false);
    assert.equal(await publicationExists(name), false);
    assert.equal(await schemaExists(`${name}_dl`), false);
    const tables = await postgres.query("SELECT 1 FROM pg_class WHERE relname = 'st_orders'");
    assert.equal(tables.length, 1, 'the streamed table stays');

    const after = await statusJson(configPath);
    assert.equal(after.code, 1);
    assert.equal(after.report.slot.exists, false);
    assert.equal(after.report.publication.exists, false);

    const again = await runCli(['teardown', '--config', configPath, '--dead-letters', '--yes']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^nothing to drop$/m);
  });

  test('teardown keeps a schema with other objects', async () => {
    const name = 'td_keep';
    const schema = `${name}_dl`;
    await postgres.query(`CREATE PUBLICATION ${name} FOR TABLE st_orders`);
    await postgres.query(`CREATE SCHEMA ${schema}`);
    await postgres.query(`CREATE TABLE ${schema}.other (id int)`);
    await postgres.query(
      `CREATE TABLE ${schema}.dead_letters (id bigserial PRIMARY KEY, event_id text, envelope text, reason text,
         redelivered_at timestamptz, redelivery_attempts int)`,
    );
    const configPath = await writeConfig(name, configFor(name));

    const result = await runCli(['teardown', '--config', configPath, '--dead-letters', '--yes']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^dropped publication 'td_keep'$/m);
    assert.match(result.stdout, /^dropped table "td_keep_dl"\."dead_letters"$/m);
    assert.match(result.stdout, /^kept schema "td_keep_dl": it contains other objects$/m);
    assert.equal(await schemaExists(schema), true);
    const other = await postgres.query(`SELECT to_regclass('${schema}.other') IS NOT NULL AS exists`);
    assert.deepEqual(other, [{ exists: true }]);
  });

  test('teardown rejects a foreign dead_letters table', async () => {
    const name = 'td_foreign';
    const schema = `${name}_dl`;
    await postgres.query(`CREATE SCHEMA ${schema}`);
    await postgres.query(`CREATE TABLE ${schema}.dead_letters (id int, payload text)`);
    const configPath = await writeConfig(name, configFor(name));

    const result = await runCli(['teardown', '--config', configPath, '--dead-letters', '--yes']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /does not have the columns of walhook's dead-letter table/);
    const rows = await postgres.query(`SELECT to_regclass('${schema}.dead_letters') IS NOT NULL AS exists`);
    assert.deepEqual(rows, [{ exists: true }]);
  });
});
