// Tests of the integration-test helpers themselves, against real PostgreSQL servers,
// real HTTP requests and real child processes.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';

import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { startReceiver } from '../helpers/receiver.js';
import type { Receiver } from '../helpers/receiver.js';
import { compareLsn, currentWalLsn, formatLsn, parseLsn, slotState } from '../helpers/replication.js';
import { skipOrFail } from '../helpers/skip.js';
import { waitFor } from '../helpers/wait.js';
import { LOG_LEVEL, parseLogLine, startWalhook } from '../helpers/walhook-process.js';

const FAKE_CLI = 'test/fixtures/fake-walhook-cli.ts';

async function connectionFails(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.end();
    return false;
  } catch {
    return true;
  }
}

describe('postgres helper', () => {
  let server: TestPostgres;

  before(async () => {
    server = await startPostgres({ settings: { wal_sender_timeout: '5s' } });
  });

  after(async () => {
    await server.close();
  });

  test('server runs with logical replication settings', async () => {
    const settings = await server.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings
        WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders',
                       'wal_sender_timeout', 'listen_addresses')
        ORDER BY name`,
    );
    const byName = Object.fromEntries(settings.map((row) => [row.name, row.setting]));

    assert.equal(byName.wal_level, 'logical');
    assert.equal(byName.max_replication_slots, '20');
    assert.equal(byName.max_wal_senders, '20');
    assert.equal(byName.wal_sender_timeout, '5000');
    assert.equal(byName.listen_addresses, '127.0.0.1');
    assert.match(server.connectionString, /^postgres:\/\/postgres:[0-9a-f]+@127\.0\.0\.1:\d+\/postgres$/);
    assert.ok(server.serverVersionNum >= 150000, `server_version_num ${server.serverVersionNum}`);
  });

  test('createDatabase returns a working connection string', async () => {
    const connectionString = await server.createDatabase('harness_app');
    const client = new pg.Client({ connectionString });
    await client.connect();
    try {
      const result = await client.query<{ name: string }>('SELECT current_database() AS name');
      assert.equal(result.rows[0]?.name, 'harness_app');
    } finally {
      await client.end();
    }
  });

  test('restart keeps data and port', async () => {
    await server.query('CREATE TABLE restart_check (id int PRIMARY KEY, note text)');
    await server.query('INSERT INTO restart_check VALUES ($1, $2)', [1, 'before restart']);
    const portBefore = server.port;

    await server.restart();

    assert.equal(server.port, portBefore);
    const rows = await server.query('SELECT id, note FROM restart_check');
    assert.deepEqual(rows, [{ id: 1, note: 'before restart' }]);
  });

  test('stopServer and startServer simulate an outage', async () => {
    await server.stopServer();

    assert.equal(server.isRunning, false);
    assert.equal(await connectionFails(server.connectionString), true);
    await assert.rejects(server.query('SELECT 1'), /is not running/);

    await server.startServer();

    assert.equal(server.isRunning, true);
    assert.deepEqual(await server.query('SELECT 1 AS one'), [{ one: 1 }]);
  });

  test('immediate stop recovers committed data', async () => {
    await server.query('CREATE TABLE crash_check (id int)');
    await server.query('INSERT INTO crash_check VALUES (7)');

    await server.stopServer('immediate');
    await server.startServer();

    assert.deepEqual(await server.query('SELECT id FROM crash_check'), [{ id: 7 }]);
  });

  test('slotState reports a pgoutput slot and its lag', async () => {
    await server.query("SELECT pg_create_logical_replication_slot('harness_slot', 'pgoutput')");
    try {
      const created = await slotState(server, 'harness_slot');
      assert.ok(created !== undefined);
      assert.equal(created.active, false);
      assert.equal(created.walStatus, 'reserved');
      const createdLsn = created.confirmedFlushLsn;
      const createdLag = created.lagBytes;
      assert.ok(createdLsn !== null);
      assert.ok(createdLag !== null);
      assert.ok(createdLag >= 0n, `lag ${createdLag}`);

      await server.query('CREATE TABLE lag_check (id int)');
      await server.query('INSERT INTO lag_check SELECT generate_series(1, 1000)');

      const grown = await waitFor(
        async () => {
          const state = await slotState(server, 'harness_slot');
          const lag = state?.lagBytes ?? null;
          return lag !== null && lag > createdLag ? state : undefined;
        },
        { timeoutMs: 5_000, message: 'slot lag to grow after an insert' },
      );
      assert.equal(grown.confirmedFlushLsn, createdLsn);
      assert.ok(compareLsn(await currentWalLsn(server), createdLsn) > 0);
    } finally {
      await server.query("SELECT pg_drop_replication_slot('harness_slot')");
    }
    assert.equal(await slotState(server, 'harness_slot'), undefined);
  });

  test('hasPlugin finds pgoutput and not an unknown plugin', async () => {
    assert.equal(await server.hasPlugin('pgoutput'), true);
    assert.equal(await server.hasPlugin('no_such_plugin'), false);
    await assert.rejects(server.hasExtensionLib('../etc/passwd'), /invalid library name/);
  });

  test('wal2json slot decodes an insert', async (t) => {
    if (!(await server.hasPlugin('wal2json'))) {
      return skipOrFail(
        t,
        `wal2json is not installed for the ${server.binaries.kind} binaries in ` +
          `${server.binaries.binDir} (Debian: postgresql-15-wal2json, then ` +
          `WALHOOK_TEST_PG_BINDIR=/usr/lib/postgresql/15/bin)`,
      );
    }
    await server.query('CREATE TABLE wal2json_check (id int PRIMARY KEY, name text)');
    await server.query("SELECT pg_create_logical_replication_slot('harness_wal2json', 'wal2json')");
    try {
      await server.query("INSERT INTO wal2json_check VALUES (1, 'one')");
      const changes = await server.query<{ data: string }>(
        "SELECT data FROM pg_logical_slot_get_changes('harness_wal2json', NULL, NULL, 'format-version', '2')",
      );
      const actions = changes.map((row) => JSON.parse(row.data) as { action: string; table?: string });
      const insert = actions.find((action) => action.action === 'I');

      assert.ok(insert !== undefined, `no insert among ${JSON.stringify(actions)}`);
      assert.equal(insert.table, 'wal2json_check');
    } finally {
      await server.query("SELECT pg_drop_replication_slot('harness_wal2json')");
    }
  });
});

describe('postgres helper lifecycle', () => {
  test('close removes the data directory and is idempotent', async () => {
    const server = await startPostgres();
    const { rootDir, connectionString } = server;
    assert.equal(existsSync(server.dataDir), true);

    await server.close();
    await server.close();

    assert.equal(existsSync(rootDir), false);
    assert.equal(await connectionFails(connectionString), true);
  });

  test('reserved setting is rejected', async () => {
    await assert.rejects(startPostgres({ settings: { port: '5432' } }), /setting 'port' is reserved/);
  });

  test('failed start reports the server log', async () => {
    await assert.rejects(
      startPostgres({ settings: { shared_buffers: 'not-a-size' } }),
      (error: Error) => {
        assert.match(error.message, /PostgreSQL failed to start/);
        assert.match(error.message, /last lines of .*server\.log/);
        assert.match(error.message, /shared_buffers/);
        return true;
      },
    );
  });
});

describe('receiver helper', () => {
  let receiver: Receiver;

  before(async () => {
    receiver = await startReceiver();
  });

  after(async () => {
    await receiver.close();
  });

  test('records method, url, headers and body', async () => {
    const first = receiver.requests.length;
    const response = await fetch(`${receiver.url}?attempt=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-walhook-event': 'e1' },
      body: JSON.stringify({ id: 1 }),
    });

    assert.equal(response.status, 200);
    assert.equal(await response.text(), '');
    const request = receiver.requests[first];
    assert.ok(request !== undefined);
    assert.equal(request.index, first);
    assert.equal(request.method, 'POST');
    assert.equal(request.url, '/hooks?attempt=1');
    assert.equal(request.headers['x-walhook-event'], 'e1');
    assert.equal(request.body, '{"id":1}');
    assert.deepEqual(request.json, { id: 1 });
    assert.ok(request.receivedAt <= Date.now());
  });

  test('body that is not JSON leaves json undefined', async () => {
    await fetch(receiver.url, { method: 'POST', body: 'plain text' });

    const request = receiver.requests.at(-1);
    assert.equal(request?.body, 'plain text');
    assert.equal(request?.json, undefined);
  });

  test('responder sets status, headers and body', async (t) => {
    t.after(() => receiver.respond(() => undefined));
    receiver.respond((_request, index) => ({
      status: 503,
      headers: { 'retry-after': '1' },
      body: `busy ${index}`,
    }));

    const response = await fetch(receiver.url, { method: 'POST', body: '{}' });

    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '1');
    assert.equal(await response.text(), `busy ${receiver.requests.length - 1}`);
  });

  test('delayed response counts as in flight', async (t) => {
    t.after(() => receiver.respond(() => undefined));
    receiver.respond(() => ({ delayMs: 300 }));
    const startedAt = performance.now();

    const pending = fetch(receiver.url, { method: 'POST', body: '{}' });
    await receiver.waitForRequests(receiver.requests.length + 1);
    assert.equal(receiver.inFlight, 1);
    const response = await pending;

    assert.equal(response.status, 200);
    assert.ok(performance.now() - startedAt >= 290, 'response arrived before the delay');
    await waitFor(() => receiver.inFlight === 0, { timeoutMs: 2_000, message: 'inFlight to reach 0' });
    assert.ok(receiver.maxInFlight >= 1);
  });

  test('responder error answers 500 and is recorded', async (t) => {
    t.after(() => receiver.respond(() => undefined));
    receiver.respond(() => {
      throw new Error('boom');
    });

    const response = await fetch(receiver.url, { method: 'POST', body: '{}' });

    assert.equal(response.status, 500);
    assert.match(await response.text(), /boom/);
    assert.equal(receiver.responderErrors.at(-1)?.message, 'boom');
  });

  test('waitForRequests resolves when requests arrive', async () => {
    const target = receiver.requests.length + 2;
    const waiting = receiver.waitForRequests(target, { timeoutMs: 5_000 });

    await fetch(receiver.url, { method: 'POST', body: '{"n":1}' });
    await fetch(receiver.url, { method: 'POST', body: '{"n":2}' });
    const requests = await waiting;

    assert.equal(requests.length, target);
    assert.deepEqual(requests.at(-1)?.json, { n: 2 });
  });

  test('waitForRequest finds a request by predicate', async () => {
    const waiting = receiver.waitForRequest(
      (request) => (request.json as { n?: number } | undefined)?.n === 42,
      { timeoutMs: 5_000 },
    );

    await fetch(receiver.url, { method: 'POST', body: '{"n":41}' });
    await fetch(receiver.url, { method: 'POST', body: '{"n":42}' });

    assert.equal((await waiting).body, '{"n":42}');
  });

  test('waitForRequests timeout lists what arrived', async () => {
    const own = await startReceiver();
    try {
      await fetch(own.url, { method: 'POST', body: '{"id":"only-one"}' });

      await assert.rejects(own.waitForRequests(2, { timeoutMs: 100 }), (error: Error) => {
        assert.match(error.message, /timed out after 100 ms waiting for 2 request\(s\)/);
        assert.match(error.message, /1 arrived/);
        assert.match(error.message, /#0 POST \/hooks \{"id":"only-one"\}/);
        return true;
      });
    } finally {
      await own.close();
    }
  });

  test('close cancels a pending delay promptly', async () => {
    const own = await startReceiver();
    own.respond(() => ({ delayMs: 60_000 }));
    const pending = fetch(own.url, { method: 'POST', body: '{}' }).then(
      () => 'responded',
      () => 'failed',
    );
    await own.waitForRequests(1);
    const waitRejected = assert.rejects(
      own.waitForRequests(5, { timeoutMs: 60_000 }),
      /closed during a wait/,
    );
    const startedAt = performance.now();

    await own.close();

    assert.ok(performance.now() - startedAt < 1_000, 'close waited for the delayed response');
    assert.equal(await pending, 'failed');
    await waitRejected;
    assert.equal(own.inFlight, 0);
  });
});

describe('walhook process helper', () => {
  test('parses pino lines and passes the config file', async (t) => {
    const walhook = await startWalhook({
      config: { source: { slot: 'harness' } },
      args: ['--extra'],
      entryPoint: FAKE_CLI,
      t,
    });

    const ready = await walhook.waitForLog('ready');

    assert.equal(ready.level, LOG_LEVEL.info);
    const loaded = walhook.logs.find((entry) => entry.msg === 'configuration loaded');
    assert.ok(loaded !== undefined);
    assert.match(String(loaded.configText), /slot: harness/);
    assert.deepEqual(loaded.extraArgs, ['--extra']);
    assert.ok(walhook.stdoutLines.includes('a line that is not JSON'));
    assert.equal(walhook.logs.length, 2);
    await waitFor(() => walhook.stderrLines.includes('a line on stderr'), {
      timeoutMs: 2_000,
      message: 'the stderr line',
    });
  });

  test('stop sends SIGTERM and returns the exit status', async (t) => {
    const walhook = await startWalhook({ config: 'source: {}\n', entryPoint: FAKE_CLI, t });
    await walhook.waitForLog('ready');

    const status = await walhook.stop({ timeoutMs: 5_000 });

    assert.deepEqual(status, { code: 0, signal: null });
    assert.ok(walhook.logs.some((entry) => entry.msg === 'shutting down'));
  });

  test('waitForLog rejects when the process exits first', async (t) => {
    const walhook = await startWalhook({
      config: 'source: {}\n',
      env: { FAKE_WALHOOK_EXIT_CODE: '3' },
      entryPoint: FAKE_CLI,
      t,
    });

    await assert.rejects(walhook.waitForLog('ready', { timeoutMs: 10_000 }), (error: Error) => {
      assert.match(error.message, /exited with code 3 before a log entry whose msg contains 'ready'/);
      assert.match(error.message, /startup failed/);
      return true;
    });
    assert.ok(walhook.logs.some((entry) => entry.level === LOG_LEVEL.error));
  });

  test('waitForLog respects fromIndex and times out', async (t) => {
    const walhook = await startWalhook({ config: 'source: {}\n', entryPoint: FAKE_CLI, t });
    await walhook.waitForLog('ready');

    await assert.rejects(
      walhook.waitForLog('configuration loaded', { fromIndex: 1, timeoutMs: 100 }),
      (error: Error) => {
        assert.match(error.message, /timed out after 100 ms/);
        assert.match(error.message, /last \d+ stdout line\(s\):/);
        return true;
      },
    );
  });

  test('stop kills a process that ignores SIGTERM', async (t) => {
    const walhook = await startWalhook({
      config: 'source: {}\n',
      env: { FAKE_WALHOOK_IGNORE_SIGTERM: '1' },
      entryPoint: FAKE_CLI,
      t,
    });
    await walhook.waitForLog('ready');

    await assert.rejects(walhook.stop({ timeoutMs: 300 }), /did not exit within 300 ms of SIGTERM/);
    assert.equal(walhook.exitStatus?.signal, 'SIGKILL');
    assert.ok(walhook.logs.some((entry) => entry.msg === 'ignoring SIGTERM'));
  });

  test('parseLogLine accepts only objects with a numeric level', () => {
    assert.deepEqual(parseLogLine('{"level":40,"msg":"slow","ms":5}'), { level: 40, msg: 'slow', ms: 5 });
    assert.deepEqual(parseLogLine('{"level":30}'), { level: 30, msg: '' });
    assert.equal(parseLogLine('{"msg":"no level"}'), undefined);
    assert.equal(parseLogLine('[1,2]'), undefined);
    assert.equal(parseLogLine('not json'), undefined);
  });
});

describe('lsn helpers', () => {
  test('parseLsn and formatLsn round-trip', () => {
    assert.equal(parseLsn('0/16B3748'), 0x16b3748n);
    assert.equal(parseLsn('1/0'), 0x1_0000_0000n);
    assert.equal(parseLsn('FFFFFFFF/FFFFFFFF'), 0xffff_ffff_ffff_ffffn);
    assert.equal(formatLsn(0x16b3748n), '0/16B3748');
    assert.equal(formatLsn(parseLsn('a/bc')), 'A/BC');
  });

  test('parseLsn rejects malformed text', () => {
    for (const text of ['', '0', '0/', '/1', '0/123456789', 'G/0', '0/1/2']) {
      assert.throws(() => parseLsn(text), /invalid LSN/, `accepted '${text}'`);
    }
  });

  test('compareLsn orders by the full 64-bit position', () => {
    assert.equal(compareLsn('0/FFFFFFFF', '1/0'), -1);
    assert.equal(compareLsn('1/0', '0/FFFFFFFF'), 1);
    assert.equal(compareLsn('0/16B3748', 0x16b3748n), 0);
    assert.equal(compareLsn('0/A', '0/9'), 1);
  });
});

describe('wait helpers', () => {
  test('waitFor resolves with the first truthy value', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? `after ${calls}` : undefined), {
      intervalMs: 1,
    });

    assert.equal(value, 'after 3');
  });

  test('waitFor timeout names the condition and last error', async () => {
    await assert.rejects(
      waitFor(
        () => {
          throw new Error('connection refused');
        },
        { timeoutMs: 50, intervalMs: 10, message: 'the slot to appear' },
      ),
      /timed out after 50 ms waiting for the slot to appear \(\d+ checks, last error: connection refused\)/,
    );
  });

  test('skipOrFail skips normally and throws under WALHOOK_CI=1', (t) => {
    const saved = process.env.WALHOOK_CI;
    t.after(() => {
      if (saved === undefined) {
        delete process.env.WALHOOK_CI;
      } else {
        process.env.WALHOOK_CI = saved;
      }
    });
    const skipped: string[] = [];
    const fakeTest = { skip: (reason?: string) => skipped.push(reason ?? '') };

    delete process.env.WALHOOK_CI;
    skipOrFail(fakeTest, 'no plugin');
    assert.deepEqual(skipped, ['no plugin']);

    process.env.WALHOOK_CI = '1';
    assert.throws(() => skipOrFail(fakeTest, 'no plugin'), /test cannot run: no plugin/);
    assert.equal(skipped.length, 1);
  });
});
