/**
 * Retry timing shared by every delivery path: exponential backoff with full jitter,
 * capped, and `Retry-After` from the receiver taking precedence.
 */

export interface BackoffPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Growth factor per attempt. Default 2. */
  readonly multiplier?: number;
}

/**
 * Returns the wait before retry number `retry` (0 for the first retry): a uniformly
 * random delay in [0, min(max, initial * multiplier^retry)], at least 1 ms.
 * `random` returns a number in [0, 1); tests pass their own.
 */
export function backoffDelayMs(policy: BackoffPolicy, retry: number, random: () => number): number {
  const multiplier = policy.multiplier ?? 2;
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * multiplier ** Math.max(0, retry));
  return Math.max(1, Math.floor(random() * ceiling));
}

/**
 * Parses a `Retry-After` header (delta seconds or an HTTP date) into milliseconds
 * from `nowMs`. Returns undefined when the header is absent or invalid.
 */
export function parseRetryAfterMs(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

/**
 * Chooses the wait before the next attempt. A `Retry-After` from the receiver wins
 * over the jittered backoff but is capped at the policy's maximum delay, because
 * that maximum is the longest pause the operator accepted.
 */
export function nextDelayMs(
  policy: BackoffPolicy,
  retry: number,
  retryAfterMs: number | undefined,
  random: () => number,
): number {
  if (retryAfterMs !== undefined) return Math.min(policy.maxDelayMs, Math.max(1, retryAfterMs));
  return backoffDelayMs(policy, retry, random);
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
