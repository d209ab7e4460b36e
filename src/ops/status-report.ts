/**
 * The data behind the status page and `/api/status`: this replica's role, the slot as
 * the slot monitor saw it last, recent delivery activity, and the latest dead letters
 * read from the database. Also runs the page's redeliver action.
 *
 * The report contains names, ids, positions, counts, HTTP statuses and error messages.
 * It never contains envelopes, header values, the connection string, the signing
 * secret or the admin token. Stored dead-letter errors are the exception for row data,
 * see toSummary.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { Agent } from 'undici';

import { formatTableName } from '../config/identifier.js';
import type { WalhookConfig } from '../config/types.js';
import { redeliverDeadLetter, type RedeliveryOutcome } from '../sinks/dead-letter/redeliver.js';
import {
  type DeadLetterRecord,
  DeadLetterStore,
  type DeadLetterTriggerSummary,
} from '../sinks/dead-letter/store.js';
import type { ActivityLog, ActivitySample, DeliveryFailure } from './activity.js';
import type { ReadinessState } from './readiness.js';
import type { SlotCondition, SlotSnapshot } from './slot-status.js';

/** Dead letters that the report lists, newest first. */
export const DEAD_LETTER_PAGE_SIZE = 25;

/** PostgreSQL error codes for a missing table and a missing schema. */
const MISSING_RELATION_CODES = new Set(['42P01', '3F000']);

/** A dead letter without its envelope, which contains row data. */
export interface DeadLetterSummary {
  readonly id: string;
  readonly createdAt: string;
  readonly trigger: string;
  readonly webhook: string;
  readonly op: string;
  /** `schema.name`, or null for an event without a table. */
  readonly table: string | null;
  readonly attempts: number;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly reason: string;
  readonly redeliveredAt: string | null;
  readonly redeliveryAttempts: number;
}

export interface SlotReport {
  readonly name: string;
  readonly publication: string;
  readonly plugin: string;
  /** Condition of the last check, or `unknown` before the first one. */
  readonly condition: SlotCondition | 'unknown';
  readonly exists: boolean | null;
  readonly active: boolean | null;
  readonly walStatus: string | null;
  readonly confirmedFlushLsn: string | null;
  /** Byte counts as decimal strings, because JSON numbers lose precision above 2^53. */
  readonly lagBytes: string | null;
  readonly retainedBytes: string | null;
  readonly maxRetainedBytes: string;
  readonly lagSeconds: number | null;
}

export interface StatusReport {
  readonly generatedAt: string;
  readonly instance: {
    readonly hostname: string;
    readonly pid: number;
    /** Server process id of the leader lock session, which `walhook status` shows for the leader. */
    readonly lockSessionPid: number | null;
  };
  readonly readiness: ReadinessState;
  readonly slot: SlotReport;
  readonly activity: {
    readonly sampleIntervalMs: number;
    readonly samples: readonly ActivitySample[];
    readonly failures: readonly DeliveryFailure[];
  };
  readonly deadLetters: {
    /** Schema-qualified table name. */
    readonly table: string;
    /** False when the table could not be read, and then `message` contains the error. */
    readonly available: boolean;
    readonly message: string | null;
    readonly byTrigger: readonly { trigger: string; pending: number; total: number; newestAt: string }[];
    /** The latest rows, newest first, redelivered or not. */
    readonly latest: readonly DeadLetterSummary[];
  };
  readonly admin: {
    /** True when `server.admin_token` is set, which enables the redeliver action. */
    readonly enabled: boolean;
  };
}

/** Result of the redeliver action: the redelivery outcome, or no row with the id. */
export type RedeliveryResult = RedeliveryOutcome | { readonly kind: 'not-found'; readonly id: string };

export interface StatusReporterDeps {
  readonly config: WalhookConfig;
  readonly logger: Logger;
  readonly activity: ActivityLog;
  readonly readiness: () => ReadinessState;
  /** The last slot check and its condition, or null before the first check. */
  readonly slot: () => { readonly snapshot: SlotSnapshot; readonly condition: SlotCondition } | null;
  readonly lockSessionPid: () => number | null;
}

export class StatusReporter {
  readonly #deps: StatusReporterDeps;
  readonly #logger: Logger;
  #store: DeadLetterStore | null = null;
  #dispatcher: Agent | null = null;
  #closed = false;

  constructor(deps: StatusReporterDeps) {
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'status-page' });
  }

  /** Builds the report. When reading the dead letters fails, the report contains the error. */
  async report(): Promise<StatusReport> {
    const { config, activity } = this.#deps;
    const deadLetters = await this.#readDeadLetters();
    return {
      generatedAt: new Date().toISOString(),
      instance: { hostname: hostname(), pid: process.pid, lockSessionPid: this.#deps.lockSessionPid() },
      readiness: this.#deps.readiness(),
      slot: this.#slotReport(),
      activity: {
        sampleIntervalMs: activity.sampleIntervalMs,
        samples: activity.samples(),
        failures: activity.failures(),
      },
      deadLetters,
      admin: { enabled: config.server.adminToken !== null },
    };
  }

  /**
   * Redelivers one dead letter with the current configuration of its webhook and
   * trigger, as `walhook dead-letters redeliver ID` does, and records the result.
   */
  async redeliver(id: string): Promise<RedeliveryResult> {
    const store = this.#openStore();
    const [record] = await store.get([id]);
    if (record === undefined) return { kind: 'not-found', id };
    this.#dispatcher ??= new Agent();
    return redeliverDeadLetter(record, this.#deps.config, store, { dispatcher: this.#dispatcher });
  }

  /** Closes the database pool and the HTTP connections of redeliveries. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#store?.close().catch((err: unknown) => this.#logger.warn({ err }, 'closing the dead-letter pool failed'));
    await this.#dispatcher?.close().catch(() => undefined);
  }

  #slotReport(): SlotReport {
    const { source } = this.#deps.config;
    const latest = this.#deps.slot();
    const snapshot = latest?.snapshot ?? null;
    return {
      name: source.slot,
      publication: source.publication,
      plugin: source.plugin,
      condition: latest?.condition ?? 'unknown',
      exists: snapshot?.exists ?? null,
      active: snapshot?.active ?? null,
      walStatus: snapshot?.walStatus ?? null,
      confirmedFlushLsn: snapshot?.confirmedFlushLsn ?? null,
      lagBytes: textOrNull(snapshot?.lagBytes ?? null),
      retainedBytes: textOrNull(snapshot?.retainedBytes ?? null),
      maxRetainedBytes: String(source.maxLagBytes),
      lagSeconds: snapshot?.lagSeconds ?? null,
    };
  }

  async #readDeadLetters(): Promise<StatusReport['deadLetters']> {
    const store = this.#openStore();
    const empty = { table: store.table, byTrigger: [], latest: [] };
    try {
      const latest = await store.list({ includeRedelivered: true, newestFirst: true, limit: DEAD_LETTER_PAGE_SIZE });
      const byTrigger = await store.summarizeByTrigger();
      return {
        table: store.table,
        available: true,
        message: null,
        byTrigger: byTrigger.map(toTriggerView),
        latest: latest.map(toSummary),
      };
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && MISSING_RELATION_CODES.has(code)) {
        return { ...empty, available: true, message: `table ${store.table} does not exist yet; no event was dead-lettered` };
      }
      this.#logger.warn({ err }, 'reading the dead letters for the status page failed');
      return { ...empty, available: false, message: `reading the dead letters failed: ${(err as Error).message}` };
    }
  }

  #openStore(): DeadLetterStore {
    if (this.#closed) throw new Error('status reporter: closed');
    this.#store ??= new DeadLetterStore({
      connection: this.#deps.config.source.connection,
      schema: this.#deps.config.deadLetters.schema,
      maxConnections: 2,
      connectionTimeoutMs: 5_000,
      logger: this.#logger,
    });
    return this.#store;
  }
}

// NOTE: reason and lastError are the texts stored in the table, as `dead-letters list`
// prints them. A URL placeholder error quotes the value that would change the URL path,
// so those two fields can contain a fragment of row data.
function toSummary(record: DeadLetterRecord): DeadLetterSummary {
  return {
    id: record.id,
    createdAt: record.createdAt.toISOString(),
    trigger: record.trigger,
    webhook: record.webhook,
    op: record.op,
    table: record.table === null ? null : formatTableName(record.table),
    attempts: record.attempts,
    lastStatus: record.lastStatus,
    lastError: record.lastError,
    reason: record.reason,
    redeliveredAt: record.redeliveredAt?.toISOString() ?? null,
    redeliveryAttempts: record.redeliveryAttempts,
  };
}

function toTriggerView(summary: DeadLetterTriggerSummary): StatusReport['deadLetters']['byTrigger'][number] {
  return {
    trigger: summary.trigger,
    pending: summary.pending,
    total: summary.total,
    newestAt: summary.newestAt.toISOString(),
  };
}

function textOrNull(value: bigint | null): string | null {
  return value === null ? null : String(value);
}
