import { once } from 'node:events';
import type { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';

export interface WaitForOptions {
  /** Deadline for the whole wait. Default 10 000 ms. */
  timeoutMs?: number;
  /** Pause between two evaluations of the condition. Default 50 ms. */
  intervalMs?: number;
  /** What the wait is for, used in the timeout error. */
  message?: string;
}

/**
 * Polls `condition` until it returns a truthy value, and resolves with that value.
 *
 * Use it for state that emits no event, such as a replication slot's position in the
 * database. A condition that throws counts as not met yet, so a query may fail while a
 * server restarts. On timeout the error contains `message`, the last value and the
 * last error.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastValue: unknown;
  let lastError: unknown;
  let attempts = 0;

  for (;;) {
    attempts += 1;
    try {
      const value = await condition();
      if (value) {
        return value as NonNullable<T>;
      }
      lastValue = value;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }

    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) {
      break;
    }
    await delay(Math.min(intervalMs, remainingMs));
  }

  const description = options.message ?? 'condition';
  const detail =
    lastError === undefined
      ? `last value: ${formatValue(lastValue)}`
      : `last error: ${errorMessage(lastError)}`;
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${description} (${attempts} checks, ${detail})`,
    lastError === undefined ? undefined : { cause: lastError },
  );
}

export interface WaitForEventOptions {
  /** Deadline for the event. Default 10 000 ms. */
  timeoutMs?: number;
}

/**
 * Resolves with the arguments of the next `event` on `emitter`.
 *
 * Rejects when the deadline passes, and also when the emitter emits 'error' first, as
 * `events.once` does.
 */
export async function waitForEvent(
  emitter: EventEmitter,
  event: string,
  options: WaitForEventOptions = {},
): Promise<unknown[]> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    return await once(emitter, event, { signal });
  } catch (error) {
    if (signal.aborted) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for event '${event}'`);
    }
    throw error;
  }
}

/** Resolves or rejects as `promise` does, or rejects with `message` after `timeoutMs`. */
export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  message: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${timeoutMs} ms: ${message}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function formatValue(value: unknown): string {
  if (typeof value === 'bigint') {
    return `${value}n`;
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
