// Leader election between replicas through an advisory lock on a real PostgreSQL:
// one leader at a time, fencing when the lock session fails, takeover by a standby,
// and termination of a walsender that a former leader left on the slot.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import pg from 'pg';

import { type LeaderElectionOptions, type LeadershipLoss, LeaderElection } from '../../src/ops/leader.js';
import { advisoryLockFields, leaderLockKey } from '../../src/ops/leader-lock.js';
import { captureLogs } from '../helpers/log-capture.js';
import { startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { slotState } from '../helpers/replication.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';

/** Poll interval of most tests, short so that takeovers are quick. */
const FAST_POLL_MS = 200;

interface Replica {
  readonly election: LeaderElection;
  readonly losses: LeadershipLoss[];
  /** Times at which onElected was called, in Date.now() milliseconds. */
  readonly electedAt: number[];
}

describe('leader election', () => {
  let server: TestPostgres;
  const replicas: LeaderElection[] = [];

  before(async () => {
    server = await startPostgres();
  });

  after(async () => {
    await Promise.all(replicas.map((replica) => replica.close()));
    await server?.close();
  });

  function replica(slot: string, options: Partial<LeaderElectionOptions> = {}): Replica {
    const losses: LeadershipLoss[] = [];
    const electedAt: number[] = [];
    const election = new LeaderElection(
      { connection: server.connectionString, slot, pollIntervalMs: FAST_POLL_MS, ...options },
      {
        logger: captureLogs().logger,
        onElected: () => {
          electedAt.push(Date.now());
        },
        onLost: (loss) => {
          losses.push(loss);
        },
      },
    );
    replicas.push(election);
    return { election, losses, electedAt };
  }

  /** Returns the process ids of the sessions that hold the advisory lock `key`. */
  async function lockHolders(key: bigint): Promise<number[]> {
    const fields = advisoryLockFields(key);
    const rows = await server.query<{ pid: number }>(
      `SELECT pid FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND classid = $1::oid AND objid = $2::oid AND objsubid = 1`,
      [String(fields.classid), String(fields.objid)],
    );
    return rows.map((row) => row.pid);
  }

  test('two replicas elect exactly one leader', async () => {
    const a = replica('one_leader');
    const b = replica('one_leader');
    await a.election.start();
    await b.election.start();

    assert.equal(a.election.state, 'leader');
    assert.equal(b.election.state, 'standby');
    assert.equal(a.electedAt.length, 1);
    assert.equal(b.electedAt.length, 0);

    const key = leaderLockKey('postgres', 'one_leader');
    assert.equal(a.election.lockKey, key);
    assert.deepEqual(await lockHolders(key), [a.election.sessionPid]);

    // The standby keeps polling without ever getting the lock.
    const applicationNames = await server.query<{ count: string }>(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walhook-leader'",
    );
    assert.equal(applicationNames[0]?.count, '2');
    await waitFor(async () => b.election.state === 'standby' && (await lockHolders(key)).length === 1, {
      message: 'the standby to stay a standby',
    });
    assert.equal(b.electedAt.length, 0);
  });

  test('terminated lock session hands over leadership', async () => {
    // Default poll interval, to check the takeover time that operators get.
    const a = replica('terminated_session', { pollIntervalMs: undefined });
    const b = replica('terminated_session', { pollIntervalMs: undefined });
    await a.election.start();
    await b.election.start();
    assert.equal(a.election.isLeader, true);

    const terminatedAt = Date.now();
    await server.query('SELECT pg_terminate_backend($1)', [a.election.sessionPid]);

    await waitFor(() => a.losses.length === 1, { timeoutMs: 1_000, message: 'onLost of the former leader' });
    assert.ok(
      a.losses[0]?.reason === 'session_error' || a.losses[0]?.reason === 'session_ended',
      `loss reason ${a.losses[0]?.reason}`,
    );
    assert.equal(a.election.isLeader, false);

    await waitFor(() => b.election.isLeader, { timeoutMs: 10_000, message: 'the standby to take over' });
    const takeoverMs = (b.electedAt[0] ?? Infinity) - terminatedAt;
    // One poll interval (2 s) plus the time of the queries.
    assert.ok(takeoverMs < 3_000, `takeover took ${takeoverMs} ms`);

    await waitFor(() => a.election.state === 'standby', { timeoutMs: 5_000, message: 'the former leader to rejoin as standby' });
    assert.equal(a.electedAt.length, 1);
  });

  test('closed leader hands over to the standby', async () => {
    const a = replica('closed_leader');
    const b = replica('closed_leader');
    await a.election.start();
    await b.election.start();
    assert.equal(a.election.isLeader, true);

    await a.election.close();
    assert.equal(a.election.state, 'closed');
    assert.equal(a.losses.length, 0, 'close() does not call onLost');
    await waitFor(() => b.election.isLeader, { timeoutMs: 2_000, message: 'the standby to take over' });
    assert.deepEqual(await lockHolders(leaderLockKey('postgres', 'closed_leader')), [b.election.sessionPid]);
  });

  test('new leader terminates stale walsender', async () => {
    const slot = 'stale_walsender';
    await server.query('CREATE TABLE IF NOT EXISTS stale_rows (id int PRIMARY KEY)');
    await server.query('CREATE PUBLICATION stale_pub FOR TABLE stale_rows');
    await server.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);

    // A former leader's stream: a replication connection that keeps the slot active.
    const stream = new pg.Client({ connectionString: server.connectionString, replication: 'database' } as pg.ClientConfig);
    stream.on('error', () => undefined);
    await stream.connect();
    const streamEnded = stream
      .query(`START_REPLICATION SLOT ${slot} LOGICAL 0/0 (proto_version '1', publication_names 'stale_pub')`)
      .then(
        () => 'ended',
        (error: Error) => error.message,
      );
    const walsenderPid = await waitFor(async () => {
      const rows = await server.query<{ pid: number | null }>('SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      return rows[0]?.pid;
    }, { message: 'the walsender to attach to the slot' });

    const slotActiveAtElection: boolean[] = [];
    const election = new LeaderElection(
      { connection: server.connectionString, slot, pollIntervalMs: FAST_POLL_MS },
      {
        logger: captureLogs().logger,
        onElected: async () => {
          slotActiveAtElection.push((await slotState(server, slot))?.active ?? false);
        },
        onLost: () => undefined,
      },
    );
    replicas.push(election);
    await election.start();
    await waitFor(() => slotActiveAtElection.length === 1, { message: 'onElected' });

    assert.deepEqual(slotActiveAtElection, [false]);
    assert.match(await streamEnded, /terminat/i);
    const state = await slotState(server, slot);
    assert.ok(state !== undefined, 'the slot still exists');
    assert.equal(state.active, false);
    const walsenders = await server.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [walsenderPid]);
    assert.equal(walsenders.length, 0);
    await stream.end().catch(() => undefined);
  });

  test('frozen lock session fences leader first', async () => {
    const proxy = await startTcpProxy(server.port);
    const viaProxy = server.connectionString.replace(`:${server.port}/`, `:${proxy.port}/`);
    const a = replica('frozen_session', { connection: viaProxy });
    const b = replica('frozen_session');
    try {
      await a.election.start();
      await b.election.start();
      assert.equal(a.election.isLeader, true);

      const frozenAt = Date.now();
      proxy.freeze();
      await waitFor(() => a.losses.length === 1, { timeoutMs: 3_000, message: 'onLost of the frozen leader' });
      const fencedMs = Date.now() - frozenAt;
      assert.equal(a.losses[0]?.reason, 'health_check_timed_out');
      // One poll interval plus the 500 ms health check timeout, with margin.
      assert.ok(fencedMs < 1_500, `fencing took ${fencedMs} ms`);

      // The server still sees the frozen session, so no other replica may lead yet.
      assert.equal(b.election.isLeader, false);
      assert.equal((await lockHolders(leaderLockKey('postgres', 'frozen_session'))).length, 1);

      // The server drops the session, as its TCP keepalives would: the standby takes over.
      proxy.cut();
      await waitFor(() => b.election.isLeader, { timeoutMs: 2_000, message: 'the standby to take over' });
      assert.equal(a.election.isLeader, false);
    } finally {
      await a.election.close();
      await proxy.close();
    }
  });

  test('rejected password stays out of errors', async () => {
    const wrongPassword = 'not-the-password-4f2a';
    const connection = server.connectionString.replace(`:${server.password}@`, `:${wrongPassword}@`);
    const a = replica('wrong_password', { connection });
    await a.election.start();
    assert.equal(a.election.state, 'unreachable');
    assert.match(a.election.lastError ?? '', /password authentication failed/);
    assert.doesNotMatch(a.election.lastError ?? '', new RegExp(wrongPassword));
    assert.doesNotMatch(a.election.lastError ?? '', new RegExp(server.password));
  });

  test('database outage fences, then elects again', async () => {
    const a = replica('outage');
    const b = replica('outage');
    await a.election.start();
    await b.election.start();
    assert.equal(a.election.isLeader, true);

    await server.stopServer('fast');
    try {
      await waitFor(() => a.losses.length === 1, { timeoutMs: 2_000, message: 'onLost of the leader' });
      await waitFor(() => a.election.state === 'unreachable' && b.election.state === 'unreachable', {
        timeoutMs: 2_000,
        message: 'both replicas to report the database unreachable',
      });
      assert.match(a.election.lastError ?? '', /./);
    } finally {
      await server.startServer();
    }

    await waitFor(() => [a, b].filter((r) => r.election.isLeader).length === 1, {
      timeoutMs: 5_000,
      message: 'one replica to lead again',
    });
    await waitFor(() => a.election.state !== 'unreachable' && b.election.state !== 'unreachable', {
      timeoutMs: 5_000,
      message: 'both replicas to reconnect',
    });
    assert.equal([a, b].filter((r) => r.election.isLeader).length, 1);
    assert.equal(a.election.lastError, null);
  });
});
