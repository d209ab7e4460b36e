/**
 * Prometheus metrics of one walhook process, on a registry of its own so that tests
 * and several instances in one process do not share values. Names start with
 * `walhook_`, durations are in seconds and sizes in bytes, as Prometheus recommends.
 * Label values come from the configuration (trigger and webhook names) or from small
 * fixed sets, so the number of series stays bounded.
 */
import client from 'prom-client';
import type {
  DeliveryItem,
  DeliveryObserver,
  DeliveryOutcome,
} from '../sinks/webhook/delivery-engine.js';

/** `wal_status` values of pg_replication_slots (PostgreSQL 13 and later). */
export const WAL_STATUSES = ['reserved', 'extended', 'unreserved', 'lost'] as const;

/** Slot figures as the slot monitor reads them; null where the server does not report one. */
export interface SlotFigures {
  /** WAL the slot keeps on the server: current WAL position minus `restart_lsn`. */
  readonly retainedBytes: bigint | null;
  /** pg_replication_slots.wal_status; null before PostgreSQL 13 or when unknown. */
  readonly walStatus: string | null;
  /** Current WAL position minus `confirmed_flush_lsn`. */
  readonly lagBytes: bigint | null;
  /** Seconds the confirmed position trails the server; null when unknown. */
  readonly lagSeconds: number | null;
  /** pg_replication_slots.safe_wal_size: WAL that may be written before the slot is at risk. */
  readonly safeWalSizeBytes?: bigint | null;
}

/**
 * Fields of a delivery attempt that the metrics observer reads. `attempt` (the number of
 * earlier attempts of the same events) and `items` are optional because the engine
 * does not pass them yet. Without them, retries and failed events are not counted.
 */
export interface AttemptObservation {
  readonly webhook: string;
  readonly events: number;
  readonly status: number | null;
  readonly ok: boolean;
  readonly durationMs: number;
  readonly attempt?: number;
  readonly items?: readonly DeliveryItem[];
}

/** A delivery item that may carry its transaction's commit time in Unix milliseconds. */
type TimedDeliveryItem = DeliveryItem & { readonly commitTimeMs?: number };

export interface MetricsOptions {
  /** Adds prom-client's process and Node.js metrics (memory, CPU, event loop lag). Default true. */
  readonly defaultMetrics?: boolean;
  /** Clock for commit-to-delivery latency, in Unix milliseconds. Default Date.now. */
  readonly now?: () => number;
}

/** Buckets of one HTTP request to a webhook, up to the longest sensible timeout. */
const DELIVERY_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Buckets from commit to delivery, which include retries and time spent queued. */
const COMMIT_TO_DELIVERY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

const EVENT_LABELS = ['trigger', 'webhook', 'op'] as const;

export class Metrics {
  readonly registry = new client.Registry();
  readonly #now: () => number;
  readonly #beforeRender = new Set<() => void>();

  readonly #capturedCounts = new PendingCounts();
  readonly #deliveredCounts = new PendingCounts();
  readonly #eventsCaptured = this.#counter(
    'walhook_events_captured_total',
    'Events created from row changes and queued for delivery.',
    EVENT_LABELS,
    this.#capturedCounts,
  );
  readonly #eventsDelivered = this.#counter(
    'walhook_events_delivered_total',
    'Events that a webhook accepted with a 2xx response.',
    EVENT_LABELS,
    this.#deliveredCounts,
  );
  readonly #eventsFailed = this.#counter(
    'walhook_events_failed_total',
    'Events in delivery attempts that failed, counted once per failed attempt.',
    EVENT_LABELS,
  );
  readonly #eventsDeadLettered = this.#counter(
    'walhook_events_dead_lettered_total',
    'Events written to the dead-letter table.',
    EVENT_LABELS,
  );
  readonly #attempts = this.#counter(
    'walhook_delivery_attempts_total',
    'HTTP requests to webhooks by outcome and status class: 2xx to 5xx, or error without a response.',
    ['webhook', 'outcome', 'status_class'],
  );
  readonly #retries = this.#counter(
    'walhook_delivery_retries_total',
    'HTTP requests to webhooks that repeat an earlier failed attempt.',
    ['webhook', 'status_class'],
  );
  readonly #breakerOpened = this.#counter(
    'walhook_circuit_breaker_opened_total',
    'Times the circuit breaker of a webhook opened.',
    ['webhook'],
  );
  readonly #deliveryDuration = new client.Histogram({
    name: 'walhook_delivery_duration_seconds',
    help: 'Duration of one HTTP request to a webhook, from sending to the end of the response.',
    labelNames: ['webhook'],
    buckets: DELIVERY_DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly #commitToDelivery = new client.Histogram({
    name: 'walhook_commit_to_delivery_seconds',
    help: 'Time from the commit of a row change in PostgreSQL to its delivery to a webhook.',
    labelNames: ['webhook'],
    buckets: COMMIT_TO_DELIVERY_BUCKETS,
    registers: [this.registry],
  });
  /** Webhooks whose circuit breaker opened and has not seen a success since. */
  readonly #pausedWebhooks = new Set<string>();
  readonly #inflightEvents = this.#gauge(
    'walhook_inflight_events',
    'Events received and not yet delivered or dead-lettered.',
  );
  readonly #inflightBytes = this.#gauge(
    'walhook_inflight_bytes',
    'Body bytes of the in-flight events.',
  );
  readonly #readPaused = this.#gauge(
    'walhook_replication_read_paused',
    '1 while reading from the slot is paused because the in-flight budget is full.',
  );
  readonly #confirmedLsn = this.#gauge(
    'walhook_confirmed_lsn_bytes',
    'Confirmed position of the slot as a byte offset in the WAL (the LSN as a number).',
  );
  readonly #lagBytes = this.#gauge(
    'walhook_replication_lag_bytes',
    'WAL bytes between the server position and the confirmed position of the slot.',
  );
  readonly #lagSeconds = this.#gauge(
    'walhook_replication_lag_seconds',
    'Seconds the confirmed position trails the server; NaN when unknown.',
  );
  readonly #retainedBytes = this.#gauge(
    'walhook_slot_retained_wal_bytes',
    'WAL bytes the server keeps for the slot (from its restart_lsn).',
  );
  readonly #retainedLimit = this.#gauge(
    'walhook_slot_retained_wal_limit_bytes',
    'The configured source.max_lag_bytes.',
  );
  readonly #overLimit = this.#gauge(
    'walhook_slot_retained_wal_over_limit',
    '1 while the retained WAL is above source.max_lag_bytes.',
  );
  readonly #safeWalSize = this.#gauge(
    'walhook_slot_safe_wal_size_bytes',
    'WAL that can be written before the slot is at risk of being lost; NaN when unlimited or unknown.',
  );
  readonly #walStatus = this.#gauge(
    'walhook_slot_wal_status',
    '1 for the current wal_status of the slot, 0 for the others.',
    ['status'],
  );
  readonly #leader = this.#gauge(
    'walhook_leader',
    '1 while this process holds the leader lock and may stream.',
  );
  readonly #webhookPaused = this.#gauge(
    'walhook_webhook_paused',
    '1 while the circuit breaker of the webhook pauses deliveries.',
    ['webhook'],
  );
  readonly #webhookBlocked = this.#gauge(
    'walhook_webhook_blocked',
    '1 while a failing event holds the webhook under on_failure: block.',
    ['webhook'],
  );

  constructor(options: MetricsOptions = {}) {
    this.#now = options.now ?? Date.now;
    if (options.defaultMetrics ?? true) client.collectDefaultMetrics({ register: this.registry });
    this.#lagSeconds.set(Number.NaN);
    this.#safeWalSize.set(Number.NaN);
  }

  /** Content-Type of `render()`'s output, for the HTTP response. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Renders every metric in the Prometheus text format, after running the hooks added
   * with `beforeRender`.
   */
  render(): Promise<string> {
    for (const hook of this.#beforeRender) hook();
    return this.registry.metrics();
  }

  /**
   * Adds a hook that sets gauges from current state on each render, such as the
   * in-flight counts. Returns the function that removes it.
   */
  beforeRender(hook: () => void): () => void {
    this.#beforeRender.add(hook);
    return () => {
      this.#beforeRender.delete(hook);
    };
  }

  /** Registers the webhooks so that their series show 0 before the first event. */
  declareWebhooks(webhooks: readonly string[]): void {
    for (const webhook of webhooks) {
      this.#webhookPaused.set({ webhook }, 0);
      this.#webhookBlocked.set({ webhook }, 0);
    }
  }

  eventCaptured(trigger: string, webhook: string, op: string): void {
    this.#capturedCounts.add(trigger, webhook, op);
  }

  /** Returns the observer to pass to the DeliveryEngine of `webhook`. */
  observer(webhook: string): DeliveryObserver {
    return {
      attempt: (event: AttemptObservation) => this.#attempted(event),
      done: (item: DeliveryItem, outcome: DeliveryOutcome) => this.#done(webhook, item, outcome),
      breakerOpened: (name: string) => {
        this.#breakerOpened.inc({ webhook: name });
        this.#pausedWebhooks.add(name);
        this.#webhookPaused.set({ webhook: name }, 1);
      },
      blocked: (name: string, blocked: boolean) => {
        this.#webhookBlocked.set({ webhook: name }, blocked ? 1 : 0);
      },
    };
  }

  setInflight(events: number, bytes: number): void {
    this.#inflightEvents.set(events);
    this.#inflightBytes.set(bytes);
  }

  setReadPaused(paused: boolean): void {
    this.#readPaused.set(paused ? 1 : 0);
  }

  /**
   * Sets the confirmed LSN. A double represents it exactly up to 2^53 bytes of WAL
   * (8 PiB), beyond which the value is rounded.
   */
  setConfirmedLsn(lsn: bigint): void {
    this.#confirmedLsn.set(Number(lsn));
  }

  setSlot(figures: SlotFigures): void {
    setOrNaN(this.#retainedBytes, figures.retainedBytes);
    setOrNaN(this.#lagBytes, figures.lagBytes);
    this.#lagSeconds.set(figures.lagSeconds ?? Number.NaN);
    if (figures.safeWalSizeBytes !== undefined) {
      setOrNaN(this.#safeWalSize, figures.safeWalSizeBytes);
    }

    const known: readonly string[] = WAL_STATUSES;
    for (const status of WAL_STATUSES) {
      this.#walStatus.set({ status }, figures.walStatus === status ? 1 : 0);
    }
    if (figures.walStatus !== null && !known.includes(figures.walStatus)) {
      this.#walStatus.set({ status: figures.walStatus }, 1);
    }
  }

  /** Sets the retained WAL limit and whether the slot is above it. */
  setRetainedLimit(limitBytes: bigint, overLimit: boolean): void {
    this.#retainedLimit.set(Number(limitBytes));
    this.#overLimit.set(overLimit ? 1 : 0);
  }

  setLeader(leader: boolean): void {
    this.#leader.set(leader ? 1 : 0);
  }

  #attempted(event: AttemptObservation): void {
    const statusClass = statusClassOf(event.status);
    const webhook = event.webhook;
    const outcome = event.ok ? 'success' : 'failure';
    this.#attempts.inc({ webhook, outcome, status_class: statusClass });
    this.#deliveryDuration.observe({ webhook }, event.durationMs / 1000);
    if (event.attempt !== undefined && event.attempt > 0) {
      this.#retries.inc({ webhook, status_class: statusClass });
    }
    // A success closes the circuit breaker, so deliveries are no longer paused.
    if (event.ok && this.#pausedWebhooks.delete(webhook)) this.#webhookPaused.set({ webhook }, 0);
    if (!event.ok && event.items !== undefined) {
      for (const item of event.items) this.#eventsFailed.inc(eventLabels(webhook, item));
    }
  }

  #done(webhook: string, item: TimedDeliveryItem, outcome: DeliveryOutcome): void {
    if (outcome === 'dead_lettered') {
      this.#eventsDeadLettered.inc(eventLabels(webhook, item));
      return;
    }
    this.#deliveredCounts.add(item.triggerName, webhook, item.op);
    if (item.commitTimeMs !== undefined) {
      const latencyMs = Math.max(0, this.#now() - item.commitTimeMs);
      // NOTE: prom-client hashes the labels on every observe(), about 0.17 µs per event.
      this.#commitToDelivery.observe({ webhook }, latencyMs / 1000);
    }
  }

  #counter<Label extends string>(
    name: string,
    help: string,
    labelNames: readonly Label[],
    pending?: PendingCounts,
  ): client.Counter<Label> {
    return new client.Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      ...(pending === undefined
        ? {}
        : {
            collect(this: client.Counter<Label>) {
              pending.flushTo(this as unknown as client.Counter<EventLabel>);
            },
          }),
    });
  }

  #gauge<Label extends string>(
    name: string,
    help: string,
    labelNames: readonly Label[] = [],
  ): client.Gauge<Label> {
    return new client.Gauge({ name, help, labelNames, registers: [this.registry] });
  }
}

/** Returns `2xx` to `5xx` for an HTTP status, or `error` when no response arrived. */
export function statusClassOf(status: number | null): string {
  if (status === null || status < 100 || status > 599) return 'error';
  return `${Math.floor(status / 100)}xx`;
}

type EventLabel = (typeof EVENT_LABELS)[number];

/**
 * Event counts by trigger, webhook and operation in plain numbers, added to their
 * prom-client counter when the registry collects it. prom-client hashes and checks the
 * labels on every inc(), which measured about 0.17 µs with prom-client 15.1.3 and adds up
 * on the per-event paths.
 */
class PendingCounts {
  readonly #series = new Map<string, Map<string, Map<string, { readonly labels: Record<EventLabel, string>; pending: number }>>>();

  add(trigger: string, webhook: string, op: string): void {
    let byWebhook = this.#series.get(trigger);
    if (byWebhook === undefined) {
      byWebhook = new Map();
      this.#series.set(trigger, byWebhook);
    }
    let byOp = byWebhook.get(webhook);
    if (byOp === undefined) {
      byOp = new Map();
      byWebhook.set(webhook, byOp);
    }
    const series = byOp.get(op);
    if (series === undefined) byOp.set(op, { labels: { trigger, webhook, op: op.toLowerCase() }, pending: 1 });
    else series.pending += 1;
  }

  flushTo(counter: client.Counter<EventLabel>): void {
    for (const byWebhook of this.#series.values()) {
      for (const byOp of byWebhook.values()) {
        for (const series of byOp.values()) {
          if (series.pending === 0) continue;
          counter.inc(series.labels, series.pending);
          series.pending = 0;
        }
      }
    }
  }
}

function eventLabels(webhook: string, item: DeliveryItem): Record<EventLabel, string> {
  return { trigger: item.triggerName, webhook, op: item.op.toLowerCase() };
}

function setOrNaN(gauge: client.Gauge, value: bigint | null): void {
  gauge.set(value === null ? Number.NaN : Number(value));
}
