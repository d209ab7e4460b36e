/**
 * Slot guardrail: reads walhook's replication slot from pg_replication_slots at an
 * interval, feeds the metrics, warns when the slot retains more WAL than allowed, and
 * reports a lost slot once. It only reads: it never drops, creates or advances a slot.
 *
 * It uses a regular session of its own, so it keeps working on standbys and while the
 * replication connection is down.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import type { SourceStateError } from '../core/errors.js';
import { sleep } from '../core/retry.js';
import { sessionOptions } from '../source/session-settings.js';
import type { SlotFigures } from './metrics.js';
import { endSession, queryWithTimeout } from './pg-session.js';
import {
  assessSlot,
  formatBytes,
  overLimitMessage,
  type SlotCondition,
  type SlotRow,
  type SlotSnapshot,
  slotLostError,
  slotQuery,
  snapshotFromRow,
  unreservedMessage,
} from './slot-status.js';

export interface SlotMonitorOptions {
  /** Connection URL of the source database. */
  readonly connection: string;
  readonly slot: string;
  /** Retained WAL above which the monitor warns: `source.max_lag_bytes`. */
  readonly maxRetainedBytes: bigint;
  /** Interval between checks. Default 15 000 ms. */
  readonly intervalMs?: number;
  /** Minimum interval between two warnings of the same kind. Default 300 000 ms (5 min). */
  readonly warnIntervalMs?: number;
  /** Deadline of one check's query. Default 10 000 ms. */
  readonly queryTimeoutMs?: number;
}

/** The part of Metrics that the monitor updates. */
export interface SlotMetricsSink {
  setSlot(figures: SlotFigures): void;
  setRetainedLimit(limitBytes: bigint, overLimit: boolean): void;
}

export interface SlotMonitorDeps {
  readonly logger: Logger;
  readonly metrics?: SlotMetricsSink;
  /**
   * Called once, on the first check that finds the slot lost. The error message states
   * what happened and how to recover. Without this handler the monitor logs the error.
   */
  readonly onLost?: (error: SourceStateError, snapshot: SlotSnapshot) => void;
  /** Called after each successful check. */
  readonly onCheck?: (snapshot: SlotSnapshot, condition: SlotCondition) => void;
}

const DEFAULT_INTERVAL_MS = 15_000;
const DEFAULT_WARN_INTERVAL_MS = 300_000;
const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

export class SlotMonitor {
  readonly #options: Required<SlotMonitorOptions>;
  readonly #deps: SlotMonitorDeps;
  readonly #logger: Logger;
  readonly #stop = new AbortController();
  #client: pg.Client | null = null;
  #serverVersionNum = 0;
  #latest: SlotSnapshot | null = null;
  #condition: SlotCondition | null = null;
  #lostError: SourceStateError | null = null;
  #lastError: string | null = null;
  /** Time of the last warning per kind, for rate limiting. */
  readonly #lastWarnedAt = new Map<string, number>();
  /** Checks since the last warning per kind, reported with the next one. */
  readonly #suppressed = new Map<string, number>();
  #running: Promise<void> | null = null;
  #closing: Promise<void> | null = null;

  constructor(options: SlotMonitorOptions, deps: SlotMonitorDeps) {
    this.#options = {
      connection: options.connection,
      slot: options.slot,
      maxRetainedBytes: options.maxRetainedBytes,
      intervalMs: options.intervalMs ?? DEFAULT_INTERVAL_MS,
      warnIntervalMs: options.warnIntervalMs ?? DEFAULT_WARN_INTERVAL_MS,
      queryTimeoutMs: options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS,
    };
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'slot-monitor', slot: options.slot });
  }

  /** The last successful check, or null before the first. */
  get latest(): SlotSnapshot | null {
    return this.#latest;
  }

  /** The condition of the last successful check, or null before the first. */
  get condition(): SlotCondition | null {
    return this.#condition;
  }

  /** True when the last check reached the database. */
  get reachable(): boolean {
    return this.#lastError === null && this.#latest !== null;
  }

  /** Message of the last failed check; null after a successful one. */
  get lastError(): string | null {
    return this.#lastError;
  }

  /** The fatal error once the slot was found lost; it stays set. */
  get lostError(): SourceStateError | null {
    return this.#lostError;
  }

  /** Runs the first check, then checks every `intervalMs` until close(). */
  async start(): Promise<void> {
    if (this.#running !== null) throw new Error('slot monitor: start() called twice');
    this.#deps.metrics?.setRetainedLimit(this.#options.maxRetainedBytes, false);
    await this.check();
    this.#running = this.#run();
  }

  /**
   * Checks the slot once. Returns the snapshot, or null when the database was not
   * reachable or the monitor is closed.
   */
  async check(): Promise<SlotSnapshot | null> {
    if (this.#stop.signal.aborted) return null;
    let snapshot: SlotSnapshot;
    try {
      snapshot = await this.#read();
    } catch (err) {
      // close() ends the session under a running check; that is no failure to report.
      if (!this.#stop.signal.aborted) this.#failed(err);
      return null;
    }
    this.#recovered();
    this.#handle(snapshot);
    return snapshot;
  }

  /** Stops checking and ends the session. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      await this.#running;
      const client = this.#client;
      this.#client = null;
      if (client !== null) await endSession(client);
    })();
    return this.#closing;
  }

  async #run(): Promise<void> {
    for (;;) {
      try {
        await sleep(this.#options.intervalMs, this.#stop.signal);
      } catch {
        return;
      }
      await this.check();
    }
  }

  async #read(): Promise<SlotSnapshot> {
    const client = await this.#connectedClient();
    try {
      const { rows } = await queryWithTimeout<SlotRow>(
        client,
        this.#options.queryTimeoutMs,
        slotQuery(this.#serverVersionNum),
        [this.#options.slot],
      );
      return snapshotFromRow(rows[0]);
    } catch (err) {
      this.#dropClient(client);
      throw err;
    }
  }

  async #connectedClient(): Promise<pg.Client> {
    if (this.#client !== null) return this.#client;
    const client = new pg.Client({
      connectionString: this.#options.connection,
      options: sessionOptions(),
      application_name: 'walhook-slot-monitor',
      keepAlive: true,
      connectionTimeoutMillis: this.#options.queryTimeoutMs,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const { rows } = await queryWithTimeout<{ version: string }>(
        client,
        this.#options.queryTimeoutMs,
        "SELECT current_setting('server_version_num') AS version",
      );
      this.#serverVersionNum = Number(rows[0]?.version ?? 0);
    } catch (err) {
      void endSession(client);
      throw err;
    }
    client.removeAllListeners('error');
    client.on('error', (err: Error) => {
      this.#logger.debug({ err }, 'slot monitor session failed; reconnecting at the next check');
      this.#dropClient(client);
    });
    client.on('end', () => this.#dropClient(client));
    this.#client = client;
    return client;
  }

  #dropClient(client: pg.Client): void {
    if (this.#client === client) this.#client = null;
    void endSession(client);
  }

  #handle(snapshot: SlotSnapshot): void {
    const condition = assessSlot(snapshot, this.#options.maxRetainedBytes);
    const previous = this.#condition;
    this.#latest = snapshot;
    this.#condition = condition;

    this.#deps.metrics?.setSlot({
      retainedBytes: snapshot.retainedBytes,
      walStatus: snapshot.walStatus,
      lagBytes: snapshot.lagBytes,
      lagSeconds: snapshot.lagSeconds,
      safeWalSizeBytes: snapshot.safeWalSizeBytes,
    });
    const overLimit =
      snapshot.retainedBytes !== null && snapshot.retainedBytes > this.#options.maxRetainedBytes;
    this.#deps.metrics?.setRetainedLimit(this.#options.maxRetainedBytes, overLimit);

    switch (condition) {
      case 'lost':
        this.#reportLost(snapshot);
        break;
      case 'unreserved':
        this.#warn('unreserved', snapshot, unreservedMessage(this.#options.slot, snapshot));
        break;
      case 'over_limit':
        this.#warn(
          'over_limit',
          snapshot,
          overLimitMessage(this.#options.slot, snapshot, this.#options.maxRetainedBytes),
        );
        break;
      case 'missing':
        this.#warn(
          'missing',
          snapshot,
          `replication slot '${this.#options.slot}' does not exist; ` +
            'the leader creates it when it starts streaming',
        );
        break;
      case 'ok':
        if (previous === 'over_limit' || previous === 'unreserved') {
          this.#logger.info(
            { retainedBytes: String(snapshot.retainedBytes) },
            `replication slot retains ${formatBytes(snapshot.retainedBytes ?? 0n)} of WAL, ` +
              'within the limit again',
          );
        }
        break;
      default: {
        const unreachable: never = condition;
        throw new Error(`unhandled slot condition ${String(unreachable)}`);
      }
    }
    if (condition !== 'over_limit' && condition !== 'unreserved') {
      this.#lastWarnedAt.delete('over_limit');
      this.#lastWarnedAt.delete('unreserved');
    }
    this.#deps.onCheck?.(snapshot, condition);
  }

  #reportLost(snapshot: SlotSnapshot): void {
    if (this.#lostError !== null) return;
    this.#lostError = slotLostError(this.#options.slot, snapshot);
    if (this.#deps.onLost === undefined) {
      const error = this.#lostError;
      this.#logger.error({ err: error, code: error.code }, error.message);
      return;
    }
    try {
      this.#deps.onLost(this.#lostError, snapshot);
    } catch (err) {
      this.#logger.error({ err }, 'the onLost handler of the slot monitor failed');
    }
  }

  /** Logs a warning of `kind` at most once per `warnIntervalMs`, counting the checks in between. */
  #warn(kind: string, snapshot: SlotSnapshot, message: string): void {
    const now = Date.now();
    const last = this.#lastWarnedAt.get(kind);
    if (last !== undefined && now - last < this.#options.warnIntervalMs) {
      this.#suppressed.set(kind, (this.#suppressed.get(kind) ?? 0) + 1);
      return;
    }
    const repeatedChecks = this.#suppressed.get(kind) ?? 0;
    this.#lastWarnedAt.set(kind, now);
    this.#suppressed.set(kind, 0);
    this.#logger.warn(
      {
        condition: kind,
        retainedBytes: textOrNull(snapshot.retainedBytes),
        maxRetainedBytes: String(this.#options.maxRetainedBytes),
        lagBytes: textOrNull(snapshot.lagBytes),
        walStatus: snapshot.walStatus,
        safeWalSizeBytes: textOrNull(snapshot.safeWalSizeBytes),
        ...(repeatedChecks > 0 ? { checksSinceLastWarning: repeatedChecks } : {}),
      },
      message,
    );
  }

  #failed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const firstFailure = this.#lastError === null;
    this.#lastError = message;
    if (firstFailure) {
      this.#logger.warn(
        { err },
        `reading the replication slot failed, retrying every ${this.#options.intervalMs} ms`,
      );
      this.#lastWarnedAt.set('unreachable', Date.now());
      this.#suppressed.set('unreachable', 0);
      return;
    }
    const last = this.#lastWarnedAt.get('unreachable') ?? 0;
    if (Date.now() - last < this.#options.warnIntervalMs) {
      this.#suppressed.set('unreachable', (this.#suppressed.get('unreachable') ?? 0) + 1);
      return;
    }
    this.#logger.warn(
      { err, failedChecks: (this.#suppressed.get('unreachable') ?? 0) + 1 },
      'reading the replication slot still fails',
    );
    this.#lastWarnedAt.set('unreachable', Date.now());
    this.#suppressed.set('unreachable', 0);
  }

  #recovered(): void {
    if (this.#lastError === null) return;
    this.#logger.info('reading the replication slot works again');
    this.#lastError = null;
    this.#lastWarnedAt.delete('unreachable');
  }
}

/** Returns a byte count as text for a log field, because JSON has no bigint. */
function textOrNull(value: bigint | null): string | null {
  return value === null ? null : String(value);
}
