/**
 * Webhook receiver for the benchmark: a node:http server on 127.0.0.1 that responds 200,
 * at once or after a fixed delay, counts events, and records commit-to-receipt latency.
 *
 * It reads each event's commit time from the `created_at` field, which walhook's
 * envelope and the trigger baseline's body both carry as ISO 8601 UTC with
 * microseconds. The body is scanned as text rather than parsed, to keep the receiver's
 * CPU use small on a machine that the database and walhook share.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const CREATED_AT_KEY = '"created_at":"';
/** Length of `2024-05-01T12:34:56.123456Z`. */
const TIMESTAMP_LENGTH = 27;

/**
 * Wall-clock time in milliseconds with sub-millisecond resolution. Date.now() has only
 * millisecond resolution, so this adds performance.now() to an offset that is taken
 * right after Date.now() ticks, and renewed every 2 s so the two clocks cannot drift apart.
 */
export class WallClock {
  #offsetMs = 0;
  #calibratedAt = -Infinity;

  nowMs(): number {
    const now = performance.now();
    if (now - this.#calibratedAt > 2000) {
      this.#calibrate();
      return performance.now() + this.#offsetMs;
    }
    return now + this.#offsetMs;
  }

  #calibrate(): void {
    const start = Date.now();
    let tick = start;
    // Spins for at most 1 ms, until Date.now() moves to the next millisecond.
    while (tick === start) tick = Date.now();
    const now = performance.now();
    this.#offsetMs = tick - now;
    this.#calibratedAt = now;
  }
}

/**
 * Parses `2024-05-01T12:34:56.123456Z` to milliseconds since the Unix epoch, keeping the
 * microseconds as a fraction. Returns NaN for any other form.
 */
export function parseMicrosecondTimestamp(text: string): number {
  if (text.length !== TIMESTAMP_LENGTH || text[26] !== 'Z' || text[19] !== '.') return Number.NaN;
  const millis = Date.parse(`${text.slice(0, 23)}Z`);
  const extraMicros = Number(text.slice(23, 26));
  return millis + extraMicros / 1000;
}

export interface ReceiverCounts {
  readonly requests: number;
  readonly events: number;
  /** Events whose `created_at` could not be read. */
  readonly eventsWithoutTime: number;
  readonly bodyBytes: number;
}

export class BenchReceiver {
  readonly #server = createServer((request, response) => this.#handle(request, response));
  readonly #clock = new WallClock();
  #responseDelayMs = 0;
  #requests = 0;
  #events = 0;
  #eventsWithoutTime = 0;
  #bodyBytes = 0;
  /** Latency samples in ms, recorded only while a window is open. */
  #latencies: number[] = [];
  /** Events committed before this time (ms since the epoch) are not sampled. */
  #sampleFromMs = Number.POSITIVE_INFINITY;
  #sampleUntilMs = Number.POSITIVE_INFINITY;
  #waiters: { count: number; resolve: () => void }[] = [];
  #url = '';

  static async start(): Promise<BenchReceiver> {
    const receiver = new BenchReceiver();
    // Keep connections open across the idle gaps between benchmark phases.
    receiver.#server.keepAliveTimeout = 60_000;
    receiver.#server.headersTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      receiver.#server.once('error', reject);
      receiver.#server.listen({ host: '127.0.0.1', port: 0 }, resolve);
    });
    const address = receiver.#server.address() as AddressInfo;
    receiver.#url = `http://127.0.0.1:${address.port}/hooks`;
    return receiver;
  }

  get url(): string {
    return this.#url;
  }

  /** Delay before each response, in ms. 0 responds as soon as the body arrived. */
  set responseDelayMs(delayMs: number) {
    this.#responseDelayMs = delayMs;
  }

  counts(): ReceiverCounts {
    return {
      requests: this.#requests,
      events: this.#events,
      eventsWithoutTime: this.#eventsWithoutTime,
      bodyBytes: this.#bodyBytes,
    };
  }

  resetCounts(): void {
    this.#requests = 0;
    this.#events = 0;
    this.#eventsWithoutTime = 0;
    this.#bodyBytes = 0;
  }

  /**
   * Starts recording latency for events committed from `fromMs` on (ms since the epoch),
   * and drops earlier samples.
   */
  startSampling(fromMs: number, untilMs = Number.POSITIVE_INFINITY): void {
    this.#latencies = [];
    this.#sampleFromMs = fromMs;
    this.#sampleUntilMs = untilMs;
  }

  /** Stops recording and returns the samples, in ms. */
  stopSampling(): number[] {
    const samples = this.#latencies;
    this.#latencies = [];
    this.#sampleFromMs = Number.POSITIVE_INFINITY;
    return samples;
  }

  /** Resolves when the event count reaches `count`, or rejects after `timeoutMs`. */
  waitForEvents(count: number, timeoutMs: number): Promise<void> {
    if (this.#events >= count) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((entry) => entry !== waiter);
        reject(new Error(`receiver timed out after ${timeoutMs} ms with ${this.#events} of ${count} events`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const receivedAtMs = this.#clock.nowMs();
      const body = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
      this.#requests += 1;
      this.#bodyBytes += body.length;
      this.#countEvents(body, receivedAtMs);
      this.#notifyWaiters();
      if (this.#responseDelayMs > 0) {
        setTimeout(() => response.end(), this.#responseDelayMs);
      } else {
        response.end();
      }
    });
  }

  /**
   * Counts each `"created_at":"` key as one event. A string value that contains that
   * text is escaped in JSON (`\"created_at\":\"`), so only keys match, and the
   * benchmark's tables have no column of that name.
   */
  #countEvents(body: string, receivedAtMs: number): void {
    let index = body.indexOf(CREATED_AT_KEY);
    while (index !== -1) {
      const start = index + CREATED_AT_KEY.length;
      const committedAtMs = parseMicrosecondTimestamp(body.slice(start, start + TIMESTAMP_LENGTH));
      this.#events += 1;
      if (Number.isNaN(committedAtMs)) {
        this.#eventsWithoutTime += 1;
      } else if (committedAtMs >= this.#sampleFromMs && committedAtMs < this.#sampleUntilMs) {
        this.#latencies.push(receivedAtMs - committedAtMs);
      }
      index = body.indexOf(CREATED_AT_KEY, start);
    }
  }

  #notifyWaiters(): void {
    if (this.#waiters.length === 0) return;
    const ready = this.#waiters.filter((waiter) => this.#events >= waiter.count);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((waiter) => this.#events < waiter.count);
    for (const waiter of ready) waiter.resolve();
  }
}
