/**
 * Delivery settings of one webhook after defaults, in the units the engine uses.
 */

export type Ordering = 'row' | 'table' | 'none' | 'strict';
export type FailurePolicy = 'dead_letter' | 'block';

export interface DeliveryOptions {
  /** Requests in flight at once. Default 16. */
  readonly concurrency: number;
  /** Ordering mode: the events that wait for each other. Default `row`. */
  readonly ordering: Ordering;
  /** Token bucket for requests; null for no limit. */
  readonly rateLimit: { readonly perSecond: number; readonly burst: number } | null;
  /** Pause after this many consecutive failed attempts; null disables the breaker. */
  readonly circuitBreaker: { readonly failures: number; readonly coolDownMs: number } | null;
  readonly retry: {
    /** Attempts before the failure policy applies; null retries without limit. */
    readonly maxAttempts: number | null;
    readonly initialDelayMs: number;
    readonly maxDelayMs: number;
    readonly multiplier: number;
    /** Statuses retried besides network errors and timeouts; others are permanent. */
    readonly retryStatus: (status: number) => boolean;
  };
  readonly onFailure: FailurePolicy;
  /** Batches of several events per request; null sends one event per request. */
  readonly batch: { readonly maxEvents: number; readonly maxBytes: number; readonly maxWaitMs: number } | null;
  /** Largest request body; a single event above it goes to the failure policy. */
  readonly maxBodyBytes: number;
  /** Standard Webhooks secret (`whsec_` + base64); null sends no signature. */
  readonly signingSecret: string | null;
}

/** Statuses retried by default: timeouts, too early, rate limited, and server errors. */
export function defaultRetryStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

export const DEFAULT_DELIVERY_OPTIONS: DeliveryOptions = {
  concurrency: 16,
  ordering: 'row',
  rateLimit: null,
  circuitBreaker: null,
  retry: {
    maxAttempts: null,
    initialDelayMs: 1000,
    maxDelayMs: 300_000,
    multiplier: 2,
    retryStatus: defaultRetryStatus,
  },
  onFailure: 'dead_letter',
  batch: null,
  maxBodyBytes: 10 * 1024 * 1024,
  signingSecret: null,
};
