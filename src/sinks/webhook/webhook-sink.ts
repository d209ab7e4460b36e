/**
 * Delivers envelopes to one webhook, one at a time in commit order, retrying each
 * until the receiver answers 2xx. Nothing is dropped: an event leaves the queue only
 * after a successful attempt.
 */
import { Pool } from 'undici';
import type { Logger } from 'pino';
import type { WebhookConfig } from '../../config/types.js';
import { nextDelayMs, parseRetryAfterMs, sleep } from '../../core/retry.js';
import { type Envelope, envelopeBody } from '../../pipeline/envelope.js';

export interface Delivery {
  readonly envelope: Envelope;
  readonly triggerName: string;
  /** Size of the body in bytes, counted against the in-flight memory budget. */
  readonly bytes: number;
  /** Called once, after the receiver accepted the event. */
  readonly onDelivered: () => void;
}

export interface WebhookSinkDeps {
  readonly logger: Logger;
  readonly random?: () => number;
  readonly now?: () => number;
}

export interface AttemptResult {
  readonly ok: boolean;
  readonly status?: number;
  readonly error?: string;
  readonly retryAfterMs?: number;
}

export class WebhookSink {
  readonly name: string;
  readonly #config: WebhookConfig;
  readonly #pool: Pool;
  readonly #path: string;
  readonly #logger: Logger;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #queue: Delivery[] = [];
  #queueHead = 0;
  #running = false;
  #closing = false;
  /** Aborts backoff waits (on close) but never a request in progress. */
  readonly #stopWaiting = new AbortController();
  #idle: Promise<void> = Promise.resolve();

  constructor(config: WebhookConfig, deps: WebhookSinkDeps) {
    this.name = config.name;
    this.#config = config;
    const url = new URL(config.url);
    this.#path = `${url.pathname}${url.search}`;
    this.#pool = new Pool(url.origin, { connections: 4, pipelining: 1 });
    this.#logger = deps.logger.child({ webhook: config.name });
    this.#random = deps.random ?? Math.random;
    this.#now = deps.now ?? Date.now;
  }

  /** Events waiting or in progress. */
  get queued(): number {
    return this.#queue.length - this.#queueHead;
  }

  enqueue(delivery: Delivery): void {
    if (this.#closing) throw new Error(`webhook ${this.name}: enqueue after close`);
    this.#queue.push(delivery);
    if (!this.#running) {
      this.#running = true;
      this.#idle = this.#drain();
    }
  }

  /**
   * Stops after the attempt in progress, waiting at most `deadlineMs` for it. Events
   * still queued stay unconfirmed, so the slot redelivers them on the next start.
   */
  async close(deadlineMs: number): Promise<void> {
    this.#closing = true;
    this.#stopWaiting.abort(new Error('webhook sink closing'));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([this.#idle, deadline]);
    clearTimeout(timer);
    await this.#pool.destroy().catch(() => undefined);
  }

  async #drain(): Promise<void> {
    try {
      while (!this.#closing && this.#queueHead < this.#queue.length) {
        const delivery = this.#queue[this.#queueHead]!;
        const delivered = await this.#deliver(delivery);
        if (!delivered) return;
        this.#queue[this.#queueHead] = undefined as unknown as Delivery;
        this.#queueHead += 1;
        if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
          this.#queue.splice(0, this.#queueHead);
          this.#queueHead = 0;
        }
        delivery.onDelivered();
      }
    } finally {
      this.#running = false;
    }
  }

  /** Attempts until success; returns false only when the sink closes first. */
  async #deliver(delivery: Delivery): Promise<boolean> {
    const { envelope, triggerName } = delivery;
    for (let retry = 0; ; retry++) {
      if (this.#closing) return false;
      const started = this.#now();
      const result = await this.attempt(envelopeBody(envelope, null, retry), envelope.id);
      const durationMs = this.#now() - started;
      if (result.ok) {
        this.#logger.debug(
          { trigger: triggerName, eventId: envelope.id, status: result.status, attempt: retry + 1, durationMs },
          'delivered',
        );
        return true;
      }
      const delayMs = nextDelayMs(this.#config.retry, retry, result.retryAfterMs, this.#random);
      this.#logger.warn(
        {
          trigger: triggerName,
          eventId: envelope.id,
          status: result.status,
          err: result.error,
          attempt: retry + 1,
          durationMs,
          nextDelayMs: delayMs,
        },
        'delivery attempt failed, will retry',
      );
      try {
        await sleep(delayMs, this.#stopWaiting.signal);
      } catch {
        return false;
      }
    }
  }

  /** Sends one POST; never throws. */
  async attempt(body: string, eventId: string): Promise<AttemptResult> {
    const timeout = AbortSignal.timeout(this.#config.timeoutMs);
    try {
      const response = await this.#pool.request({
        method: 'POST',
        path: this.#path,
        headers: {
          ...this.#config.headers,
          'content-type': 'application/json',
          'webhook-id': eventId,
          'webhook-timestamp': String(Math.floor(this.#now() / 1000)),
        },
        body,
        signal: timeout,
        headersTimeout: this.#config.timeoutMs,
        bodyTimeout: this.#config.timeoutMs,
      });
      // The body must be read to free the connection; its content is not used.
      await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      const status = response.statusCode;
      if (status >= 200 && status < 300) return { ok: true, status };
      const header = response.headers['retry-after'];
      const retryAfterMs = parseRetryAfterMs(Array.isArray(header) ? header[0] : header, this.#now());
      return retryAfterMs === undefined ? { ok: false, status } : { ok: false, status, retryAfterMs };
    } catch (err) {
      const error = timeout.aborted
        ? `timed out after ${this.#config.timeoutMs} ms`
        : err instanceof Error
          ? `${(err as { code?: string }).code ?? err.name}: ${err.message}`
          : String(err);
      return { ok: false, error };
    }
  }
}
