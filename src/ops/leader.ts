/**
 * Leader election between walhook replicas through a PostgreSQL advisory lock, so
 * that no other datastore is needed. The lock lives on a session of its own: the
 * leader is the replica whose session holds it, and PostgreSQL releases it when that
 * session ends, which is also what happens when the leader's process dies.
 *
 * Standbys try the lock every `pollIntervalMs`. The leader runs a health query on its
 * session at the same interval and treats a failed or slow response as lost leadership.
 * Losing the lock session calls `onLost` at once: the caller must stop streaming and
 * stop confirming positions (fencing), because another replica may take over.
 *
 * On a network loss nothing closes the sockets, so both sides need a deadline. The
 * leader fences itself when its health query gets no answer within
 * `healthCheckTimeoutMs`. The server ends the lock session through TCP keepalives and
 * `tcp_user_timeout`, set on the session so that it does so later than the leader
 * fences itself and early enough for a standby to take over within 10 s at the default
 * interval. See `keepaliveSettings()`.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { sleep } from '../core/retry.js';
import { sessionOptions } from '../source/session-settings.js';
import { advisoryLockFields, leaderLockKey } from './leader-lock.js';
import { endSession, QueryTimeoutError, queryWithTimeout, sessionPid } from './pg-session.js';

/**
 * `starting` until the first attempt ends, `unreachable` while the lock session cannot
 * connect or has failed, `standby` while another session holds the lock.
 */
export type LeaderState = 'starting' | 'unreachable' | 'standby' | 'leader' | 'closed';

/** Reason a leader stopped leading. */
export type LeadershipLossReason =
  | 'session_error'
  | 'session_ended'
  | 'health_check_failed'
  | 'health_check_timed_out'
  | 'lock_not_held';

export interface LeadershipLoss {
  readonly reason: LeadershipLossReason;
  readonly message: string;
  readonly error?: unknown;
}

export interface LeaderElectionOptions {
  /** Connection URL of the source database; the lock is taken in that database. */
  readonly connection: string;
  /** Replication slot name; with the database name it determines the lock key. */
  readonly slot: string;
  /** Interval of lock attempts on standbys and of health queries on the leader. Default 2000 ms. */
  readonly pollIntervalMs?: number;
  /** Deadline of one lock attempt or health query. Default half the interval, at least 500 ms. */
  readonly healthCheckTimeoutMs?: number;
  /** How long a new leader waits for a terminated walsender to leave the slot. Default 10 s. */
  readonly staleWalsenderTimeoutMs?: number;
  /** application_name of the lock session, shown in pg_stat_activity. Default `walhook-leader`. */
  readonly applicationName?: string;
}

export interface LeaderElectionDeps {
  readonly logger: Logger;
  /**
   * Called after this replica won the lock and a walsender left on the slot by a former
   * leader was terminated. It may be called again after `onLost`.
   */
  readonly onElected: () => void | Promise<void>;
  /**
   * Called synchronously when the lock session fails while this replica leads. The
   * caller must stop streaming and confirming right away. The election campaigns again
   * only after the returned promise settles, so the caller can finish its shutdown first.
   */
  readonly onLost: (loss: LeadershipLoss) => void | Promise<void>;
  /** Called on every change of `state`. */
  readonly onStateChange?: (state: LeaderState) => void;
}

/** Result of `terminateStaleWalsender`. */
export interface StaleWalsenderResult {
  /** Process ids of the walsenders that were signalled. */
  readonly terminatedPids: readonly number[];
  /** Whether the slot was inactive when the call returned. */
  readonly slotInactive: boolean;
}

const DEFAULT_POLL_INTERVAL_MS = 2_000;
const MIN_HEALTH_CHECK_TIMEOUT_MS = 500;
const DEFAULT_STALE_WALSENDER_TIMEOUT_MS = 10_000;
const SLOT_INACTIVE_POLL_MS = 100;
/**
 * After losing the lock, a replica waits this many poll intervals before it tries
 * again. A standby, which tries every interval, then gets the lock first, because
 * its session is known to work while the former leader's just failed.
 */
const STANDBY_PRIORITY_INTERVALS = 2;
/** Interval of the warning that repeats while the database stays unreachable. */
const UNREACHABLE_LOG_INTERVAL_MS = 60_000;

/**
 * Returns the server settings for the lock session that bound how long the server
 * keeps a lock whose holder went silent. Take the default 2 s interval. Keepalive
 * probes start after 2 s without traffic and repeat every 1 s. Three unanswered probes,
 * or 5 s of unacknowledged data, end the session. So the server drops a silent leader
 * about 5 s after its last packet. The leader fences itself earlier, after at most one
 * interval plus `healthCheckTimeoutMs` (3 s). Settings the server does not know, such
 * as `tcp_user_timeout` before PostgreSQL 12, are skipped.
 *
 * NOTE: no test drops packets between server and client, because loopback cannot, so
 * the server-side timing is derived from the settings, not measured. The tests cover
 * the leader's side with a proxy that stops forwarding.
 */
export function keepaliveSettings(pollIntervalMs: number): Record<string, string> {
  const idleSeconds = Math.max(1, Math.ceil(pollIntervalMs / 1000));
  const probeCount = idleSeconds + 1;
  return {
    tcp_keepalives_idle: String(idleSeconds),
    tcp_keepalives_interval: '1',
    tcp_keepalives_count: String(probeCount),
    tcp_user_timeout: String((idleSeconds + probeCount) * 1000),
  };
}

export class LeaderElection {
  readonly #options: Required<LeaderElectionOptions>;
  readonly #deps: LeaderElectionDeps;
  readonly #logger: Logger;
  readonly #stop = new AbortController();
  /** Resolves when close() begins. */
  readonly #stopped = new Promise<void>((resolve) => {
    this.#stop.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  #state: LeaderState = 'starting';
  #client: pg.Client | null = null;
  #lockKey: bigint | null = null;
  #lastError: string | null = null;
  /** Settles when the caller has handled the last loss; campaigning waits for it. */
  #lossHandled: Promise<void> = Promise.resolve();
  /** Set by a loss: the next attempt waits so that a standby gets the lock first. */
  #yieldToStandbys = false;
  #running: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #unreachableSince: number | null = null;
  #lastUnreachableLog = 0;
  #failedAttempts = 0;

  constructor(options: LeaderElectionOptions, deps: LeaderElectionDeps) {
    const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.#options = {
      connection: options.connection,
      slot: options.slot,
      pollIntervalMs,
      healthCheckTimeoutMs:
        options.healthCheckTimeoutMs ??
        Math.max(MIN_HEALTH_CHECK_TIMEOUT_MS, Math.floor(pollIntervalMs / 2)),
      staleWalsenderTimeoutMs:
        options.staleWalsenderTimeoutMs ?? DEFAULT_STALE_WALSENDER_TIMEOUT_MS,
      applicationName: options.applicationName ?? 'walhook-leader',
    };
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'leader-election', slot: options.slot });
  }

  get state(): LeaderState {
    return this.#state;
  }

  get isLeader(): boolean {
    return this.#state === 'leader';
  }

  /** Message of the last failure to reach the database; null after the next success. */
  get lastError(): string | null {
    return this.#lastError;
  }

  /** Server process id of the lock session, or null while none is connected. */
  get sessionPid(): number | null {
    return sessionPid(this.#client);
  }

  /** The advisory lock key, known once the lock session has connected. */
  get lockKey(): bigint | null {
    return this.#lockKey;
  }

  /**
   * Starts campaigning. Resolves after the first attempt, when `state` is `leader`,
   * `standby` or `unreachable`. An unreachable database is retried every interval.
   */
  start(): Promise<void> {
    if (this.#running !== null) throw new Error('leader election: start() called twice');
    let firstAttemptDone: () => void = () => undefined;
    const firstAttempt = new Promise<void>((resolve) => {
      firstAttemptDone = resolve;
    });
    this.#running = this.#run(firstAttemptDone).catch((err: unknown) => {
      this.#logger.error({ err }, 'leader election stopped on an unexpected error');
      firstAttemptDone();
    });
    return firstAttempt;
  }

  /**
   * Stops campaigning, releases the lock and ends the lock session. Call it after
   * streaming stopped, so that no standby takes over before the last confirmation.
   * Does not call `onLost`. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Terminates the walsender still attached to `slot`, if any, and waits up to
   * `staleWalsenderTimeoutMs` for the slot to become inactive. A leader calls it after
   * winning the lock, because a former leader's walsender keeps the slot busy until
   * `wal_sender_timeout` otherwise. Never drops or changes the slot.
   */
  async terminateStaleWalsender(slot: string = this.#options.slot): Promise<StaleWalsenderResult> {
    const client = this.#client;
    if (client === null) {
      throw new Error('leader election: no lock session to terminate a walsender from');
    }

    const { rows } = await this.#query<{ pid: number; terminated: boolean }>(
      client,
      `SELECT active_pid AS pid, pg_terminate_backend(active_pid) AS terminated
         FROM pg_replication_slots
        WHERE slot_name = $1 AND active AND active_pid <> pg_backend_pid()`,
      [slot],
    );
    const terminatedPids = rows.filter((row) => row.terminated).map((row) => row.pid);
    if (rows.length === 0) return { terminatedPids, slotInactive: true };
    this.#logger.warn(
      { pids: rows.map((row) => row.pid) },
      'terminated the walsender that a former leader left on the slot',
    );

    const deadline = Date.now() + this.#options.staleWalsenderTimeoutMs;
    for (;;) {
      const { rows: slotRows } = await this.#query<{ active: boolean }>(
        client,
        'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      if (slotRows[0]?.active !== true) return { terminatedPids, slotInactive: true };
      if (Date.now() >= deadline) {
        this.#logger.warn(
          { timeoutMs: this.#options.staleWalsenderTimeoutMs },
          'the slot is still active after terminating its walsender; ' +
            'streaming retries until it is free',
        );
        return { terminatedPids, slotInactive: false };
      }
      await sleep(SLOT_INACTIVE_POLL_MS, this.#stop.signal);
    }
  }

  async #run(firstAttemptDone: () => void): Promise<void> {
    while (!this.#stop.signal.aborted) {
      await this.#waitForLossHandled();
      if (this.#yieldToStandbys) {
        this.#yieldToStandbys = false;
        try {
          await sleep(STANDBY_PRIORITY_INTERVALS * this.#options.pollIntervalMs, this.#stop.signal);
        } catch {
          break;
        }
      }
      if (this.#stop.signal.aborted) break;
      try {
        if (this.#state === 'leader') await this.#checkLockHeld();
        else await this.#campaign();
        this.#markReachable();
      } catch (err) {
        if (this.#stop.signal.aborted) break;
        this.#handleFailure(err);
      }
      firstAttemptDone();
      try {
        await sleep(this.#options.pollIntervalMs, this.#stop.signal);
      } catch {
        break;
      }
    }
    firstAttemptDone();
  }

  async #waitForLossHandled(): Promise<void> {
    await Promise.race([this.#lossHandled, this.#stopped]);
  }

  /** Tries the lock once; on success takes over the slot and becomes leader. */
  async #campaign(): Promise<void> {
    const client = await this.#connectedClient();
    const key = this.#lockKey!;
    const { rows } = await this.#query<{ acquired: boolean }>(
      client,
      'SELECT pg_try_advisory_lock($1::bigint) AS acquired',
      [key.toString()],
    );
    if (rows[0]?.acquired !== true) {
      if (this.#state !== 'standby') this.#logger.info('another replica leads; waiting as standby');
      this.#setState('standby');
      return;
    }

    this.#logger.info(
      { lockKey: key.toString(), sessionPid: this.sessionPid },
      'won the leader lock',
    );
    try {
      await this.terminateStaleWalsender();
    } catch (err) {
      if (this.#stop.signal.aborted) return;
      if (this.#client !== client) throw err;
      this.#logger.warn(
        { err },
        'terminating the walsender left on the slot failed; streaming retries until ' +
          'wal_sender_timeout frees the slot. A role other than the walsender role needs ' +
          'membership in pg_signal_backend',
      );
    }
    if (this.#client !== client || this.#stop.signal.aborted) return;

    this.#setState('leader');
    this.#logger.info('elected leader');
    // Not awaited: health queries must go on while the caller starts streaming.
    try {
      void Promise.resolve(this.#deps.onElected()).catch((err: unknown) => {
        this.#logger.error({ err }, 'the onElected handler failed');
      });
    } catch (err) {
      this.#logger.error({ err }, 'the onElected handler failed');
    }
  }

  /**
   * Checks that the lock session still responds and still holds the lock. A session can
   * look connected but be gone, when the socket died without a reset.
   */
  async #checkLockHeld(): Promise<void> {
    const client = this.#client;
    if (client === null) return;
    const fields = advisoryLockFields(this.#lockKey!);
    const { rows } = await this.#query<{ held: boolean }>(
      client,
      `SELECT EXISTS (
         SELECT 1 FROM pg_locks
          WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = $1::oid AND objid = $2::oid AND objsubid = $3
       ) AS held`,
      [String(fields.classid), String(fields.objid), fields.objsubid],
    );
    if (rows[0]?.held === true) return;
    this.#lose(client, {
      reason: 'lock_not_held',
      message: 'the lock session is connected but no longer holds the leader lock',
    });
  }

  async #connectedClient(): Promise<pg.Client> {
    if (this.#client !== null) return this.#client;
    const client = new pg.Client({
      connectionString: this.#options.connection,
      options: sessionOptions(),
      application_name: this.#options.applicationName,
      keepAlive: true,
      keepAliveInitialDelayMillis: 1_000,
      connectionTimeoutMillis: Math.max(this.#options.pollIntervalMs, 5_000),
    });
    // Errors before the session is in use reject connect(). This listener keeps pg from
    // also raising them as uncaught exceptions.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      void endSession(client);
      throw err;
    }
    try {
      await this.#configureSession(client);
    } catch (err) {
      void endSession(client);
      throw err;
    }

    client.removeAllListeners('error');
    client.on('error', (err: Error) => this.#sessionFailed(client, 'session_error', err));
    client.on('end', () => this.#sessionFailed(client, 'session_ended', undefined));
    this.#client = client;
    return client;
  }

  async #configureSession(client: pg.Client): Promise<void> {
    const settings: Record<string, string> = {
      ...keepaliveSettings(this.#options.pollIntervalMs),
      statement_timeout: String(this.#options.healthCheckTimeoutMs),
      // The session must outlive quiet periods, whatever the role's defaults are.
      idle_session_timeout: '0',
      idle_in_transaction_session_timeout: '0',
    };
    for (const [name, value] of Object.entries(settings)) {
      try {
        await this.#query(client, 'SELECT set_config($1, $2, false)', [name, value]);
      } catch (err) {
        if ((err as { code?: string }).code !== '42704') throw err;
        this.#logger.debug({ setting: name }, 'setting not supported by this server, skipped');
      }
    }
    if (this.#lockKey === null) {
      const { rows } = await this.#query<{ database: string }>(
        client,
        'SELECT current_database() AS database',
      );
      const database = rows[0]?.database;
      if (database === undefined) throw new Error('current_database() returned no row');
      this.#lockKey = leaderLockKey(database, this.#options.slot);
    }
  }

  /** Runs a query on the lock session with `healthCheckTimeoutMs` as deadline. */
  #query<Row extends pg.QueryResultRow>(
    client: pg.Client,
    sql: string,
    params: unknown[] = [],
  ): Promise<pg.QueryResult<Row>> {
    return queryWithTimeout<Row>(client, this.#options.healthCheckTimeoutMs, sql, params);
  }

  /** Handles the 'error' and 'end' events of the current lock session. */
  #sessionFailed(
    client: pg.Client,
    reason: 'session_error' | 'session_ended',
    error: Error | undefined,
  ): void {
    if (this.#client !== client || this.#stop.signal.aborted) return;
    const message =
      reason === 'session_error'
        ? `the lock session failed: ${error?.message ?? 'unknown error'}`
        : 'the lock session was closed';
    this.#lose(client, error === undefined ? { reason, message } : { reason, message, error });
    this.#dropClient(client, message);
  }

  /** Handles a failed attempt or health query. Fences a leader and drops the session. */
  #handleFailure(err: unknown): void {
    const client = this.#client;
    const timedOut = err instanceof QueryTimeoutError;
    const message = err instanceof Error ? err.message : String(err);
    if (client !== null) {
      this.#lose(client, {
        reason: timedOut ? 'health_check_timed_out' : 'health_check_failed',
        message: `the health query on the lock session failed: ${message}`,
        error: err,
      });
      this.#dropClient(client, message);
      return;
    }
    this.#markUnreachable(err, message);
  }

  /** Calls `onLost` when `client` is the session of the current leadership. */
  #lose(client: pg.Client, loss: LeadershipLoss): void {
    if (this.#state !== 'leader' || this.#client !== client) return;
    this.#logger.error(
      { reason: loss.reason, err: loss.error },
      `leadership lost, streaming must stop: ${loss.message}`,
    );
    this.#setState('standby');
    this.#yieldToStandbys = true;
    let handled: void | Promise<void>;
    try {
      handled = this.#deps.onLost(loss);
    } catch (err) {
      this.#logger.error({ err }, 'the onLost handler failed');
      return;
    }
    this.#lossHandled = Promise.resolve(handled).catch((err: unknown) => {
      this.#logger.error({ err }, 'the onLost handler failed');
    });
  }

  #dropClient(client: pg.Client, message: string): void {
    if (this.#client === client) this.#client = null;
    void endSession(client);
    this.#markUnreachable(undefined, message);
  }

  #markUnreachable(err: unknown, message: string): void {
    this.#lastError = message;
    this.#failedAttempts += 1;
    this.#setState('unreachable');
    const now = Date.now();
    if (this.#unreachableSince === null) {
      this.#unreachableSince = now;
      this.#lastUnreachableLog = now;
      this.#logger.warn(
        { err },
        `lock session unavailable, retrying every ${this.#options.pollIntervalMs} ms: ${message}`,
      );
    } else if (now - this.#lastUnreachableLog >= UNREACHABLE_LOG_INTERVAL_MS) {
      this.#lastUnreachableLog = now;
      this.#logger.warn(
        {
          err,
          failedAttempts: this.#failedAttempts,
          unreachableForMs: now - this.#unreachableSince,
        },
        `lock session still unavailable: ${message}`,
      );
    }
  }

  #markReachable(): void {
    if (this.#unreachableSince !== null) {
      this.#logger.info(
        {
          failedAttempts: this.#failedAttempts,
          unreachableForMs: Date.now() - this.#unreachableSince,
        },
        'lock session connected again',
      );
    }
    this.#unreachableSince = null;
    this.#failedAttempts = 0;
    this.#lastError = null;
  }

  #setState(state: LeaderState): void {
    if (this.#state === state || this.#state === 'closed') return;
    this.#state = state;
    try {
      this.#deps.onStateChange?.(state);
    } catch (err) {
      this.#logger.error({ err }, 'the onStateChange handler failed');
    }
  }

  async #close(): Promise<void> {
    this.#stop.abort();
    await this.#running;
    const client = this.#client;
    this.#client = null;
    const wasLeader = this.#state === 'leader';
    this.#setState('closed');
    if (client === null) return;
    if (wasLeader && this.#lockKey !== null) {
      try {
        const key = this.#lockKey.toString();
        await this.#query(client, 'SELECT pg_advisory_unlock($1::bigint)', [key]);
        this.#logger.info('released the leader lock');
      } catch (err) {
        this.#logger.warn(
          { err },
          'releasing the leader lock failed; the server releases it when the session ends',
        );
      }
    }
    await endSession(client);
  }
}
