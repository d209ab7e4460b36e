// The slot guardrail against a real PostgreSQL: slot figures and metrics, the warning
// above max_lag_bytes, a slot lost to max_slot_wal_keep_size, and an unreachable server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Metrics } from '../../src/ops/metrics.js';
import { SlotMonitor, type SlotMonitorDeps, type SlotMonitorOptions } from '../../src/ops/slot-monitor.js';
import type { SlotCondition, SlotSnapshot } from '../../src/ops/slot-status.js';
import type { SourceStateError } from '../../src/core/errors.js';
import { captureLogs } from '../helpers/log-capture.js';
import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { LOG_LEVEL } from '../helpers/walhook-process.js';

describe('slot monitor', () => {
  let server: TestPostgres;
  const monitors: SlotMonitor[] = [];

  before(async () => {
    // A small max_slot_wal_keep_size lets a test lose a slot in a few WAL switches.
    server = await startPostgres({ settings: { max_slot_wal_keep_size: '1MB' } });
    await server.query('CREATE TABLE readings (id int PRIMARY KEY, note text)');
    await server.query('CREATE PUBLICATION readings_pub FOR TABLE readings');
  });

  after(async () => {
    await Promise.all(monitors.map((monitor) => monitor.close()));
    await server?.close();
  });

  function monitor(
    slot: string,
    options: Partial<SlotMonitorOptions> = {},
    deps: Partial<SlotMonitorDeps> = {},
  ): { monitor: SlotMonitor; logs: ReturnType<typeof captureLogs>; metrics: Metrics } {
    const logs = captureLogs();
    const metrics = new Metrics({ defaultMetrics: false });
    const created = new SlotMonitor(
      { connection: server.connectionString, slot, maxRetainedBytes: 1024n ** 3n, ...options },
      { logger: logs.logger, metrics, ...deps },
    );
    monitors.push(created);
    return { monitor: created, logs, metrics };
  }

  async function createSlot(slot: string): Promise<void> {
    await server.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
  }

  /** Writes `count` rows, inserting or updating them, so that the WAL grows. */
  async function writeRows(count: number): Promise<void> {
    await server.query(
      `INSERT INTO readings SELECT g, repeat('x', 100) FROM generate_series(1, $1::int) g
       ON CONFLICT (id) DO UPDATE SET note = excluded.note`,
      [count],
    );
  }

  test('slot figures reach the metrics', async () => {
    await createSlot('figures');
    await writeRows(200);
    const { monitor: figures, metrics } = monitor('figures');

    const snapshot = await figures.check();
    assert.ok(snapshot !== null, 'the check reached the database');
    assert.equal(snapshot.exists, true);
    assert.equal(snapshot.active, false);
    assert.equal(snapshot.walStatus, 'reserved');
    assert.ok((snapshot.retainedBytes ?? 0n) > 0n, `retainedBytes ${snapshot.retainedBytes}`);
    assert.ok((snapshot.lagBytes ?? 0n) > 0n, `lagBytes ${snapshot.lagBytes}`);
    assert.ok((snapshot.retainedBytes ?? 0n) >= (snapshot.lagBytes ?? 0n), 'restart_lsn is at or before confirmed_flush_lsn');
    assert.equal(snapshot.invalidationReason, null);
    assert.equal(figures.condition, 'ok');

    const text = await metrics.render();
    assert.match(text, new RegExp(`^walhook_slot_retained_wal_bytes ${snapshot.retainedBytes}$`, 'm'));
    assert.match(text, new RegExp(`^walhook_replication_lag_bytes ${snapshot.lagBytes}$`, 'm'));
    assert.match(text, /^walhook_slot_wal_status\{status="reserved"\} 1$/m);
    assert.match(text, /^walhook_slot_retained_wal_over_limit 0$/m);
    assert.match(text, /^walhook_slot_retained_wal_limit_bytes 1073741824$/m);
    await server.query('SELECT pg_drop_replication_slot($1)', ['figures']);
  });

  test('retained WAL over limit warns', async () => {
    await createSlot('over_limit');
    await writeRows(50);
    const { monitor: overLimit, logs, metrics } = monitor('over_limit', { maxRetainedBytes: 1n, warnIntervalMs: 60_000 });

    await overLimit.check();
    await overLimit.check();
    await overLimit.check();

    assert.equal(overLimit.condition, 'over_limit');
    const warnings = logs.find(LOG_LEVEL.warn, /above source\.max_lag_bytes/);
    assert.equal(warnings.length, 1, 'one warning for three checks');
    assert.match(warnings[0]?.msg ?? '', /replication slot 'over_limit' retains .* of WAL \(\d+ bytes\)/);
    assert.match(warnings[0]?.msg ?? '', /Check that the webhooks are reachable/);
    assert.equal(warnings[0]?.['maxRetainedBytes'], '1');
    assert.match(String(warnings[0]?.['retainedBytes']), /^\d+$/);
    assert.match(await metrics.render(), /^walhook_slot_retained_wal_over_limit 1$/m);

    // Once the interval passed, the warning repeats with the number of checks in between.
    const { monitor: repeating, logs: repeatingLogs } = monitor('over_limit', { maxRetainedBytes: 1n, warnIntervalMs: 1 });
    await repeating.check();
    await waitFor(async () => {
      await repeating.check();
      return repeatingLogs.find(LOG_LEVEL.warn, /above source\.max_lag_bytes/).length >= 2;
    }, { message: 'a repeated warning' });
    await server.query('SELECT pg_drop_replication_slot($1)', ['over_limit']);
  });

  test('lost slot is reported once', async () => {
    await createSlot('lost');
    const lost: { error: SourceStateError; snapshot: SlotSnapshot }[] = [];
    const conditions: SlotCondition[] = [];
    const { monitor: lostMonitor, metrics, logs } = monitor(
      'lost',
      {},
      {
        onLost: (error, snapshot) => lost.push({ error, snapshot }),
        onCheck: (_snapshot, condition) => conditions.push(condition),
      },
    );
    await lostMonitor.check();
    assert.deepEqual(conditions, ['ok']);

    // Each switch starts a new 16 MB segment, far past max_slot_wal_keep_size (1 MB),
    // and the checkpoint invalidates the slot.
    for (let i = 0; i < 3; i++) {
      await writeRows(1);
      await server.query('SELECT pg_switch_wal()');
    }
    await server.query('CHECKPOINT');

    await lostMonitor.check();
    await lostMonitor.check();
    assert.deepEqual(conditions, ['ok', 'lost', 'lost']);
    assert.equal(lost.length, 1, 'onLost is called once');
    assert.equal(lost[0]?.error.code, 'WALHOOK_SLOT_LOST');
    assert.match(lost[0]?.error.message ?? '', /replication slot 'lost' is lost/);
    assert.match(lost[0]?.error.message ?? '', /pg_drop_replication_slot\('lost'\)/);
    assert.equal(lost[0]?.snapshot.walStatus, 'lost');
    assert.equal(lostMonitor.lostError, lost[0]?.error);
    // The handler reports the error; the monitor logs nothing at error level itself.
    assert.equal(logs.find(LOG_LEVEL.error, /./).length, 0);

    const rows = await server.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', ['lost']);
    assert.equal(rows.length, 1, 'the monitor never drops the slot');
    assert.match(await metrics.render(), /^walhook_slot_wal_status\{status="lost"\} 1$/m);
  });

  test('missing slot warns and is not lost', async () => {
    const { monitor: missing, logs } = monitor('never_created');
    const snapshot = await missing.check();
    assert.equal(snapshot?.exists, false);
    assert.equal(missing.condition, 'missing');
    assert.equal(missing.lostError, null);
    assert.equal(logs.find(LOG_LEVEL.warn, /does not exist/).length, 1);
  });

  test('unreachable database is reported and retried', async () => {
    const closedPort = server.connectionString.replace(`:${server.port}/`, ':1/');
    const logs = captureLogs();
    const unreachable = new SlotMonitor(
      { connection: closedPort, slot: 'figures', maxRetainedBytes: 1n, queryTimeoutMs: 2_000 },
      { logger: logs.logger },
    );
    monitors.push(unreachable);

    assert.equal(await unreachable.check(), null);
    assert.equal(await unreachable.check(), null);
    assert.equal(unreachable.reachable, false);
    assert.match(unreachable.lastError ?? '', /ECONNREFUSED/);
    assert.equal(logs.find(LOG_LEVEL.warn, /reading the replication slot failed/).length, 1, 'one warning for two failures');
  });

  test('monitor checks at its interval until closed', async () => {
    await createSlot('interval');
    const checks: SlotCondition[] = [];
    const { monitor: periodic } = monitor('interval', { intervalMs: 50 }, { onCheck: (_s, condition) => checks.push(condition) });
    await periodic.start();
    assert.equal(checks.length, 1, 'start() runs the first check');
    await waitFor(() => checks.length >= 3, { message: 'two more checks' });
    await periodic.close();
    const afterClose = checks.length;
    await server.query('SELECT pg_drop_replication_slot($1)', ['interval']);
    // close() waits for the check loop to end, and a closed monitor checks nothing.
    assert.equal(await periodic.check(), null);
    assert.equal(checks.length, afterClose);
  });
});
