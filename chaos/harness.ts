/**
 * Parts that every chaos scenario shares: a throwaway PostgreSQL with the chaos tables, the
 * receiver, the load generator, walhook processes, fault records with recovery times,
 * and the final drain and count.
 */
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';

import { type TestPostgres, startPostgres } from '../test/helpers/postgres.js';
import { type WalhookProcess, LOG_LEVEL, startWalhook } from '../test/helpers/walhook-process.js';
import { CHAOS_TABLES, type LedgerEntry, LoadGenerator, type LoadStats, createSchema, readLedger } from './load.js';
import { ChaosReceiver, HEALTHY, type ResponseCounts, type WebhookDeliveries } from './receiver.js';
import type { Rng } from './rng.js';
import { allDelivered, countProblems, countWebhook, type WebhookCounts } from './verify.js';

export const STREAMING_LOG = 'streaming from the replication slot';
export const RECONNECTING_LOG = 'reconnecting to the replication slot';
export const CONNECTION_FAILED_LOG = 'replication connection failed';

/** The two webhooks of every scenario: one request per event, and batches. */
export const WEBHOOKS = ['single', 'batched'] as const;

/** Replication slot and publication of every scenario; each has its own server. */
export const SLOT = 'chaos';

/**
 * wal_sender_timeout of every scenario's server. Low, so that a walhook that stops
 * sending status updates loses its connection within seconds.
 */
export const WAL_SENDER_TIMEOUT = '5s';

/**
 * Pause between load transactions, in milliseconds. The load stays below walhook's
 * delivery rate, so that it can catch up after a fault between two faults, and recovery
 * times show the recovery rather than a throughput limit.
 */
const DEFAULT_LOAD_PAUSE_MS = [15, 70] as const;

/** Interval of the progress lines while the final drain waits. */
const DRAIN_REPORT_INTERVAL_MS = 2_000;

/** Interval of the background check that measures when a fault's backlog is delivered. */
const CATCH_UP_POLL_MS = 50;

export interface ScenarioOptions {
  readonly short: boolean;
  /** The scenario's own generator, forked from the run's seed. */
  readonly rng: Rng;
  /** Writes a progress line to stderr. */
  readonly progress: (message: string) => void;
}

export interface HarnessOptions extends ScenarioOptions {
  /** Extra postgresql.conf settings. */
  readonly serverSettings?: Record<string, string>;
  /** walhook's max_inflight_events. Default 2000. */
  readonly maxInflightEvents?: number;
  /** walhook's log level. Default `info`. */
  readonly logLevel?: 'info' | 'debug';
  /** Pause between load transactions in milliseconds. Default DEFAULT_LOAD_PAUSE_MS. */
  readonly loadPauseMs?: readonly [number, number];
}

/** One injected fault and how long walhook took to recover from it. */
export interface FaultRecord {
  readonly kind: string;
  /** Milliseconds since the scenario started. */
  readonly startedAtMs: number;
  /** How long the fault lasted: from its start until it was lifted. */
  readonly durationMs: number;
  /** Acknowledged changes that had not yet reached every webhook when the fault started. */
  readonly backlogAtStart: number;
  /**
   * From the end of the fault until a walhook process logged that it streams again,
   * 0 when it did so before the fault was recorded as lifted.
   */
  streamingAfterMs: number | null;
  /**
   * From the end of the fault until the first change acknowledged after it, and every
   * change before that one, reached every webhook. null when the next fault started
   * first. It includes the load generator's own reconnect after a server outage.
   */
  caughtUpAfterMs: number | null;
}

/** The moment a fault started, from Harness.faultStarted(). */
export interface FaultStart {
  readonly at: number;
  readonly backlog: number;
}

interface PendingCatchUp {
  readonly record: FaultRecord;
  readonly endedAt: number;
  readonly targetCount: number;
}

export interface ScenarioResult {
  readonly scenario: string;
  readonly description: string;
  readonly seed: number;
  readonly short: boolean;
  /** `server_version` of the scenario's PostgreSQL, such as `18.4`. */
  readonly postgres: string;
  /** 'passed', 'failed', or 'not available' for a feature walhook does not have yet. */
  readonly status: 'passed' | 'failed' | 'not available';
  /** Reasons the scenario failed. */
  readonly problems: readonly string[];
  /** Defects found that do not fail the scenario, such as row order violations. */
  readonly warnings: readonly string[];
  readonly notes: readonly string[];
  readonly durationMs: number;
  /** Changes in the ledger. Each webhook must receive every one of them. */
  readonly committed: number;
  readonly events: {
    readonly expected: number;
    readonly delivered: number;
    readonly lost: number;
    readonly duplicated: number;
  };
  readonly webhooks: Readonly<Record<string, WebhookCounts>>;
  readonly transactions: LoadStats;
  readonly recovery: {
    /** Largest streamingAfterMs of the faults. */
    readonly maxStreamingAfterMs: number | null;
    /** Largest caughtUpAfterMs of the faults whose backlog was delivered before the next fault. */
    readonly maxCaughtUpAfterMs: number | null;
    /** Faults whose backlog was delivered before the next fault started. */
    readonly caughtUpFaults: number;
    /** From the receiver becoming healthy at the end until every change was delivered. */
    readonly finalDrainMs: number | null;
    readonly faults: readonly FaultRecord[];
  };
  readonly receiver: ResponseCounts;
  readonly walhook: {
    readonly starts: number;
    readonly reconnects: number;
    readonly errorLogs: number;
    /** Up to 5 distinct error messages that walhook logged. */
    readonly errorMessages: readonly string[];
  };
  readonly details: Readonly<Record<string, unknown>>;
}

/** A scenario's PostgreSQL, receiver, load and walhook processes. */
export class Harness {
  readonly server: TestPostgres;
  readonly receiver: ChaosReceiver;
  readonly load: LoadGenerator;
  readonly options: HarnessOptions;
  readonly startedAt = Date.now();
  readonly faults: FaultRecord[] = [];
  readonly processes: WalhookProcess[] = [];
  readonly problems: string[] = [];
  readonly warnings: string[] = [];
  readonly notes: string[] = [];
  readonly #pending: PendingCatchUp[] = [];
  readonly #faultEnds = new Map<FaultRecord, number>();
  readonly #expectedExits = new Set<WalhookProcess>();
  #deliveredPrefix = 0;
  #poller: NodeJS.Timeout | undefined;
  #finalDrainMs: number | null = null;

  private constructor(server: TestPostgres, receiver: ChaosReceiver, options: HarnessOptions) {
    this.server = server;
    this.receiver = receiver;
    this.options = options;
    this.load = new LoadGenerator({
      connectionString: server.connectionString,
      rng: options.rng.fork('load'),
      pauseMs: options.loadPauseMs ?? DEFAULT_LOAD_PAUSE_MS,
    });
  }

  static async start(options: HarnessOptions): Promise<Harness> {
    const server = await startPostgres({
      settings: { wal_sender_timeout: WAL_SENDER_TIMEOUT, ...options.serverSettings },
    });
    let receiver: ChaosReceiver | undefined;
    try {
      await createSchema(server.connectionString);
      receiver = await ChaosReceiver.start(WEBHOOKS);
    } catch (error) {
      await server.close();
      throw error;
    }
    const harness = new Harness(server, receiver, options);
    harness.#poller = setInterval(() => harness.#checkCatchUp(), CATCH_UP_POLL_MS);
    return harness;
  }

  /** Milliseconds since the scenario started. */
  elapsedMs(): number {
    return Date.now() - this.startedAt;
  }

  config(): object {
    return {
      source: { connection: this.server.connectionString, slot: SLOT, publication: SLOT },
      webhooks: [
        {
          name: 'single',
          url: this.receiver.urlFor('single'),
          timeout: '2s',
          retry: { initial_delay: '100ms', max_delay: '2s' },
          concurrency: 8,
        },
        {
          name: 'batched',
          url: this.receiver.urlFor('batched'),
          timeout: '2s',
          retry: { initial_delay: '100ms', max_delay: '2s' },
          concurrency: 4,
          batch: { max_events: 25, max_wait: '50ms' },
        },
      ],
      triggers: CHAOS_TABLES.flatMap((table) =>
        WEBHOOKS.map((webhook) => ({ name: `${table}-${webhook}`, table: `public.${table}`, webhook })),
      ),
      server: { host: '127.0.0.1', port: 0 },
      log: { level: this.options.logLevel ?? 'info' },
      shutdown_timeout: '5s',
      max_inflight_events: this.options.maxInflightEvents ?? 2_000,
    };
  }

  /** Starts a walhook process with the scenario's configuration. */
  async startWalhook(): Promise<WalhookProcess> {
    const walhook = await startWalhook({ config: this.config() });
    this.processes.push(walhook);
    return walhook;
  }

  /** Waits until `walhook` logs that it streams, after log index `fromIndex`. */
  async waitForStreaming(walhook: WalhookProcess, timeoutMs = 60_000, fromIndex = 0): Promise<void> {
    await walhook.waitForLog(STREAMING_LOG, { timeoutMs, fromIndex });
  }

  /** Marks an exit of `walhook` as expected, so that finish() reports no problem for it. */
  expectExit(walhook: WalhookProcess): void {
    this.#expectedExits.add(walhook);
  }

  /** Kills `walhook` with SIGKILL and waits for its exit. */
  async kill(walhook: WalhookProcess): Promise<void> {
    this.#expectedExits.add(walhook);
    walhook.kill('SIGKILL');
    await walhook.waitForExit({ timeoutMs: 10_000 });
  }

  /**
   * Records that a fault starts now. Catch-up measurements still pending end here,
   * because their time would include this fault.
   */
  faultStarted(): FaultStart {
    this.#pending.length = 0;
    this.#checkCatchUp();
    return { at: Date.now(), backlog: this.#countUndelivered() };
  }

  /** Records a fault that was lifted now, and starts measuring its recovery. */
  faultEnded(kind: string, start: FaultStart): FaultRecord {
    const endedAt = Date.now();
    const record: FaultRecord = {
      kind,
      startedAtMs: start.at - this.startedAt,
      durationMs: endedAt - start.at,
      backlogAtStart: start.backlog,
      streamingAfterMs: null,
      caughtUpAfterMs: null,
    };
    this.faults.push(record);
    this.#faultEnds.set(record, endedAt);
    this.#pending.push({ record, endedAt, targetCount: this.load.acknowledged.countUntil(endedAt) + 1 });
    return record;
  }

  /** Waits up to `timeoutMs` until the fault's backlog is delivered; returns whether it was. */
  async waitForCatchUp(record: FaultRecord, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (record.caughtUpAfterMs !== null) return true;
      if (!this.#pending.some((pending) => pending.record === record)) return false;
      await delay(CATCH_UP_POLL_MS);
    }
    return record.caughtUpAfterMs !== null;
  }

  /** Counts acknowledged changes that have not reached every webhook yet. */
  #countUndelivered(): number {
    const keys = this.load.acknowledged.keys;
    const webhooks = WEBHOOKS.map((webhook) => this.receiver.deliveriesOf(webhook));
    let undelivered = 0;
    for (let i = this.#deliveredPrefix; i < keys.length; i += 1) {
      if (!webhooks.every((deliveries) => deliveries.hasChange(keys[i]!))) undelivered += 1;
    }
    return undelivered;
  }

  #checkCatchUp(): void {
    const keys = this.load.acknowledged.keys;
    const webhooks = WEBHOOKS.map((webhook) => this.receiver.deliveriesOf(webhook));
    while (
      this.#deliveredPrefix < keys.length &&
      webhooks.every((deliveries) => deliveries.hasChange(keys[this.#deliveredPrefix]!))
    ) {
      this.#deliveredPrefix += 1;
    }
    const now = Date.now();
    for (let i = this.#pending.length - 1; i >= 0; i -= 1) {
      const pending = this.#pending[i]!;
      if (this.#deliveredPrefix >= pending.targetCount) {
        pending.record.caughtUpAfterMs = now - pending.endedAt;
        this.#pending.splice(i, 1);
      }
    }
  }

  /**
   * Stops the load, makes the receiver healthy and waits until every change in the
   * ledger reached every webhook, or until `timeoutMs`.
   */
  async drain(timeoutMs: number): Promise<void> {
    await this.load.stop();
    this.receiver.respond(HEALTHY);
    await this.receiver.accept();
    const healthyAt = Date.now();
    const ledger = await readLedger(this.server.connectionString);
    const webhooks = WEBHOOKS.map((webhook) => this.receiver.deliveriesOf(webhook));
    const deadline = healthyAt + timeoutMs;
    let nextReportAt = healthyAt + DRAIN_REPORT_INTERVAL_MS;
    while (!allDelivered(ledger, webhooks)) {
      const now = Date.now();
      if (now >= deadline) {
        this.options.progress(`drain timed out after ${timeoutMs} ms: ${describeUndelivered(ledger, webhooks)}`);
        return;
      }
      if (now >= nextReportAt) {
        this.options.progress(`draining: ${describeUndelivered(ledger, webhooks)}`);
        nextReportAt += DRAIN_REPORT_INTERVAL_MS;
      }
      await delay(100);
    }
    this.#finalDrainMs = Date.now() - healthyAt;
  }

  /**
   * Stops every walhook process that still runs with SIGTERM and records a problem
   * when one does not exit with code 0, because a clean shutdown must work after the
   * faults too.
   */
  async stopWalhooks(): Promise<void> {
    for (const walhook of this.processes) {
      if (walhook.exitStatus !== undefined) continue;
      this.#expectedExits.add(walhook);
      try {
        const status = await walhook.stop({ timeoutMs: 15_000 });
        if (status.code !== 0) {
          this.problems.push(`walhook pid ${walhook.pid} exited with ${JSON.stringify(status)} after SIGTERM`);
        }
      } catch (error) {
        this.problems.push(`walhook pid ${walhook.pid}: ${(error as Error).message.split('\n')[0]}`);
      }
    }
  }

  /** Builds the scenario result from the ledger and the receiver's records. */
  async finish(
    scenario: string,
    description: string,
    details: Record<string, unknown>,
    /** 'not available' when the scenario could not test its feature; problems still fail it. */
    status?: 'not available',
  ): Promise<ScenarioResult> {
    clearInterval(this.#poller);
    this.#fillStreamingTimes();
    for (const walhook of this.processes) {
      if (walhook.exitStatus !== undefined && !this.#expectedExits.has(walhook)) {
        this.problems.push(
          `walhook pid ${walhook.pid} exited on its own with ${JSON.stringify(walhook.exitStatus)}: ` +
            lastErrorOf(walhook),
        );
      }
    }

    const ledger = await readLedger(this.server.connectionString);
    const webhooks: Record<string, WebhookCounts> = {};
    let delivered = 0;
    let lost = 0;
    let duplicated = 0;
    for (const webhook of WEBHOOKS) {
      const counts = countWebhook(ledger, this.receiver.deliveriesOf(webhook));
      webhooks[webhook] = counts;
      delivered += counts.delivered;
      lost += counts.lost;
      duplicated += counts.duplicated;
      const { failures, warnings } = countProblems(webhook, counts);
      this.problems.push(...failures);
      this.warnings.push(...warnings);
    }
    const deadLetters = await countDeadLetters(this.server.connectionString);
    const version = await this.server.query<{ server_version: string }>('SHOW server_version');
    if (deadLetters > 0) this.problems.push(`${deadLetters} event(s) went to the dead-letter table`);

    const logs = this.processes.flatMap((walhook) => walhook.logs);
    const errorLogs = logs.filter((entry) => entry.level >= LOG_LEVEL.error);
    const streaming = this.faults.flatMap((fault) => (fault.streamingAfterMs === null ? [] : [fault.streamingAfterMs]));
    const caughtUp = this.faults.flatMap((fault) => (fault.caughtUpAfterMs === null ? [] : [fault.caughtUpAfterMs]));
    return {
      scenario,
      description,
      seed: this.options.rng.seed,
      short: this.options.short,
      postgres: version[0]?.server_version ?? 'unknown',
      status: this.problems.length > 0 ? 'failed' : (status ?? 'passed'),
      problems: this.problems,
      warnings: this.warnings,
      notes: this.notes,
      durationMs: this.elapsedMs(),
      committed: ledger.length,
      events: { expected: ledger.length * WEBHOOKS.length, delivered, lost, duplicated },
      webhooks,
      transactions: this.load.stats,
      recovery: {
        maxStreamingAfterMs: streaming.length === 0 ? null : Math.max(...streaming),
        maxCaughtUpAfterMs: caughtUp.length === 0 ? null : Math.max(...caughtUp),
        caughtUpFaults: caughtUp.length,
        finalDrainMs: this.#finalDrainMs,
        faults: this.faults,
      },
      receiver: this.receiver.counts,
      walhook: {
        starts: this.processes.length,
        reconnects: logs.filter((entry) => entry.msg === RECONNECTING_LOG).length,
        errorLogs: errorLogs.length,
        errorMessages: [...new Set(errorLogs.map((entry) => entry.msg))].slice(0, 5),
      },
      details: { deadLetters, ...details },
    };
  }

  /** Stops everything the scenario started. */
  async close(): Promise<void> {
    clearInterval(this.#poller);
    await this.load.stop().catch(() => undefined);
    await Promise.all(this.processes.map((walhook) => walhook.close().catch(() => undefined)));
    await this.receiver.close();
    await this.server.close();
  }

  /** Fills each fault's streamingAfterMs from the walhook logs. */
  #fillStreamingTimes(): void {
    const streamingTimes = this.processes
      .flatMap((walhook) => walhook.logs)
      .filter((entry) => entry.msg === STREAMING_LOG && typeof entry.time === 'string')
      .map((entry) => Date.parse(entry.time as string))
      .sort((a, b) => a - b);
    for (const fault of this.faults) {
      const startedAt = this.startedAt + fault.startedAtMs;
      const endedAt = this.#faultEnds.get(fault)!;
      const next = streamingTimes.find((time) => time >= startedAt);
      fault.streamingAfterMs = next === undefined ? null : Math.max(0, next - endedAt);
    }
  }
}

function describeUndelivered(ledger: readonly LedgerEntry[], webhooks: readonly WebhookDeliveries[]): string {
  const counts = webhooks.map(
    (deliveries, index) =>
      `${WEBHOOKS[index]} ${ledger.filter((entry) => !deliveries.hasChange(entry.changeKey)).length}`,
  );
  return `undelivered of ${ledger.length} committed change(s): ${counts.join(', ')}`;
}

/** Returns the message of the last error or fatal log line of `walhook`, or its stderr tail. */
export function lastErrorOf(walhook: WalhookProcess): string {
  const errors = walhook.logs.filter((entry) => entry.level >= LOG_LEVEL.error);
  const last = errors[errors.length - 1];
  if (last !== undefined) {
    const err = last.err as { message?: string } | undefined;
    return err?.message === undefined ? last.msg : `${last.msg} (${err.message})`;
  }
  return walhook.stderrLines.slice(-3).join(' | ') || '(no error logged)';
}

async function countDeadLetters(connectionString: string): Promise<number> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ name: string | null }>(
      "SELECT to_regclass('walhook.dead_letters')::text AS name",
    );
    if (tables[0]?.name == null) return 0;
    const { rows } = await client.query<{ count: string }>('SELECT count(*) AS count FROM walhook.dead_letters');
    return Number(rows[0]?.count ?? 0);
  } finally {
    await client.end();
  }
}
