/**
 * Circuit breaker for one webhook. After `failureThreshold` consecutive failed
 * attempts it opens: no attempt starts until `coolDownMs` has passed. Then one probe
 * attempt may go out (half-open); its success closes the breaker, its failure opens it
 * again for another cool-down.
 */

export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  readonly #failureThreshold: number;
  readonly #coolDownMs: number;
  #consecutiveFailures = 0;
  #openedAt = 0;
  #state: BreakerState = 'closed';
  #probeInFlight = false;

  constructor(failureThreshold: number, coolDownMs: number) {
    this.#failureThreshold = failureThreshold;
    this.#coolDownMs = coolDownMs;
  }

  state(nowMs: number): BreakerState {
    if (this.#state === 'open' && nowMs - this.#openedAt >= this.#coolDownMs) this.#state = 'half-open';
    return this.#state;
  }

  /**
   * Returns 0 when an attempt may start now (and, when half-open, reserves the probe),
   * or the milliseconds to wait before asking again.
   */
  tryAcquire(nowMs: number): number {
    switch (this.state(nowMs)) {
      case 'closed':
        return 0;
      case 'open':
        return this.#coolDownMs - (nowMs - this.#openedAt);
      case 'half-open':
        if (this.#probeInFlight) return Math.max(1, Math.min(this.#coolDownMs, 1000));
        this.#probeInFlight = true;
        return 0;
    }
  }

  recordSuccess(): void {
    this.#consecutiveFailures = 0;
    this.#probeInFlight = false;
    this.#state = 'closed';
  }

  /** Returns true when this failure opened the breaker. */
  recordFailure(nowMs: number): boolean {
    this.#consecutiveFailures += 1;
    const wasProbe = this.#probeInFlight;
    this.#probeInFlight = false;
    if (wasProbe || (this.#state === 'closed' && this.#consecutiveFailures >= this.#failureThreshold)) {
      this.#state = 'open';
      this.#openedAt = nowMs;
      return true;
    }
    return false;
  }
}
