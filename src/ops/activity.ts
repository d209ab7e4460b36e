/**
 * Recent delivery activity of this process, kept in memory for the status page: the
 * last failed delivery attempts and one throughput and lag sample per interval. The
 * buffers have fixed sizes, so memory stays bounded however busy walhook is.
 *
 * Entries hold ids, names, HTTP statuses and network error messages only, never row
 * data, request bodies or header values.
 */
import type { DeliveryItem, DeliveryObserver, DeliveryOutcome } from '../sinks/webhook/delivery-engine.js';

/** Length of one throughput and lag sample. */
export const SAMPLE_INTERVAL_MS = 10_000;
/** Samples kept: 10 minutes at the default interval. */
const DEFAULT_MAX_SAMPLES = 60;
/** Failed attempts kept, newest first. */
const DEFAULT_MAX_FAILURES = 50;

/** One failed delivery attempt, or an event given up without an attempt. */
export interface DeliveryFailure {
  /** Unix milliseconds. */
  readonly at: number;
  readonly webhook: string;
  readonly trigger: string;
  /** Id of the first event of the request, which is the `webhook-id` for a single event. */
  readonly eventId: string;
  /** Events in the request: more than 1 for a batch. */
  readonly events: number;
  /** HTTP status, or null when no response arrived. */
  readonly status: number | null;
  /** Network error or timeout, or null when a response arrived. */
  readonly error: string | null;
  /** Attempt number, counted from 1, or 0 for an event given up before any attempt. */
  readonly attempt: number;
}

/** Deliveries and lag of one interval. */
export interface ActivitySample {
  /** End of the interval in Unix milliseconds. */
  readonly at: number;
  /** Length of the interval in milliseconds. The last sample, which is still open, is shorter. */
  readonly intervalMs: number;
  /** Events that webhooks accepted in the interval. */
  readonly delivered: number;
  /** Events in failed attempts in the interval. */
  readonly failed: number;
  /** Events written to the dead-letter table in the interval. */
  readonly deadLettered: number;
  /** Replication lag in bytes from the last slot check, or null when unknown. */
  readonly lagBytes: number | null;
}

export interface ActivityLogOptions {
  /** Default SAMPLE_INTERVAL_MS. */
  readonly sampleIntervalMs?: number;
  readonly maxSamples?: number;
  readonly maxFailures?: number;
  /** Returns the current replication lag in bytes, or null when unknown. */
  readonly lagBytes?: () => bigint | null;
  /** Clock in Unix milliseconds. Default Date.now. */
  readonly now?: () => number;
}

/** Fields of a delivery attempt that the log reads. The engine passes more. */
interface AttemptEvent {
  readonly webhook: string;
  readonly events: number;
  readonly status: number | null;
  readonly ok: boolean;
  readonly attempt?: number;
  readonly items?: readonly DeliveryItem[];
  readonly error?: string | null;
}

export class ActivityLog {
  readonly sampleIntervalMs: number;
  readonly #maxSamples: number;
  readonly #maxFailures: number;
  readonly #lagBytes: () => bigint | null;
  readonly #now: () => number;
  /** Oldest first. */
  readonly #samples: ActivitySample[] = [];
  /** Newest first. */
  readonly #failures: DeliveryFailure[] = [];
  #windowStart: number;
  #delivered = 0;
  #failed = 0;
  #deadLettered = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: ActivityLogOptions = {}) {
    this.sampleIntervalMs = options.sampleIntervalMs ?? SAMPLE_INTERVAL_MS;
    this.#maxSamples = options.maxSamples ?? DEFAULT_MAX_SAMPLES;
    this.#maxFailures = options.maxFailures ?? DEFAULT_MAX_FAILURES;
    this.#lagBytes = options.lagBytes ?? (() => null);
    this.#now = options.now ?? Date.now;
    this.#windowStart = this.#now();
  }

  /** Starts closing a sample every interval. The timer does not keep the process alive. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.closeSample(), this.sampleIntervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Returns the observer to pass to the DeliveryEngine of `webhook`. */
  observer(webhook: string): DeliveryObserver {
    return {
      attempt: (event: AttemptEvent) => this.#attempted(event),
      done: (item: DeliveryItem, outcome: DeliveryOutcome) => this.#done(webhook, item, outcome),
    };
  }

  /** Ends the current interval and stores it as a sample. Called by the timer. */
  closeSample(): void {
    const now = this.#now();
    this.#samples.push(this.#currentSample(now));
    if (this.#samples.length > this.#maxSamples) this.#samples.shift();
    this.#windowStart = now;
    this.#delivered = 0;
    this.#failed = 0;
    this.#deadLettered = 0;
  }

  /** Closed samples, oldest first, followed by the interval still open. */
  samples(): ActivitySample[] {
    return [...this.#samples, this.#currentSample(this.#now())];
  }

  /** Failed attempts, newest first. */
  failures(): DeliveryFailure[] {
    return [...this.#failures];
  }

  #currentSample(now: number): ActivitySample {
    const lag = this.#lagBytes();
    return {
      at: now,
      intervalMs: Math.max(0, now - this.#windowStart),
      delivered: this.#delivered,
      failed: this.#failed,
      deadLettered: this.#deadLettered,
      lagBytes: lag === null ? null : Number(lag),
    };
  }

  #attempted(event: AttemptEvent): void {
    if (event.ok) return;
    this.#failed += event.events;
    const first = event.items?.[0];
    this.#addFailure({
      at: this.#now(),
      webhook: event.webhook,
      trigger: first?.triggerName ?? '',
      eventId: first?.envelope.id ?? '',
      events: event.events,
      status: event.status,
      error: event.error ?? null,
      attempt: (event.attempt ?? 0) + 1,
    });
  }

  #done(webhook: string, item: DeliveryItem, outcome: DeliveryOutcome): void {
    if (outcome === 'delivered') {
      this.#delivered += 1;
      return;
    }
    this.#deadLettered += 1;
    // An event larger than max_body_bytes, or whose body or URL cannot be rendered, is
    // given up before any request, so no failed attempt lists it.
    const listed = this.#failures.some((failure) => failure.eventId === item.envelope.id);
    if (!listed) {
      this.#addFailure({
        at: this.#now(),
        webhook,
        trigger: item.triggerName,
        eventId: item.envelope.id,
        events: 1,
        status: null,
        error: 'given up and written to the dead-letter table',
        attempt: 0,
      });
    }
  }

  #addFailure(failure: DeliveryFailure): void {
    this.#failures.unshift(failure);
    if (this.#failures.length > this.#maxFailures) this.#failures.pop();
  }
}

/** Returns an observer that calls every given observer in order, skipping undefined ones. */
export function combineObservers(...observers: (DeliveryObserver | undefined)[]): DeliveryObserver {
  const present = observers.filter((observer): observer is DeliveryObserver => observer !== undefined);
  return {
    attempt: (event) => {
      for (const observer of present) observer.attempt?.(event);
    },
    done: (item, outcome) => {
      for (const observer of present) observer.done?.(item, outcome);
    },
    breakerOpened: (webhook) => {
      for (const observer of present) observer.breakerOpened?.(webhook);
    },
    blocked: (webhook, blocked) => {
      for (const observer of present) observer.blocked?.(webhook, blocked);
    },
  };
}
