import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

import { trackResource } from './cleanup.js';

/** One HTTP request that the receiver read completely. */
export interface ReceivedRequest {
  /** Position in `receiver.requests`, counted from 0. */
  readonly index: number;
  readonly method: string;
  /** Path and query string, such as `/hooks?x=1`. */
  readonly url: string;
  /** Header names in lower case, as node:http provides them. */
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The body parsed as JSON, or undefined when it is empty or not JSON. */
  readonly json: unknown;
  /** `Date.now()` when the last byte of the body arrived. */
  readonly receivedAt: number;
}

/** How the receiver responds to one request. Every field is optional. */
export interface ReceiverResponse {
  /** HTTP status. Default 200. */
  status?: number;
  /** Time to wait before responding. Closing the receiver or the client cancels it. */
  delayMs?: number;
  headers?: Record<string, string>;
  /** Response body. Default empty. */
  body?: string;
}

/** Computes the response to a request. `index` equals `request.index`. */
export type Responder = (
  request: ReceivedRequest,
  index: number,
) => ReceiverResponse | undefined | Promise<ReceiverResponse | undefined>;

export interface WaitForRequestsOptions {
  /** Deadline. Default 10 000 ms. */
  timeoutMs?: number;
  /** What the wait is for, used in the timeout error. */
  description?: string;
}

export interface StartReceiverOptions {
  /** Path of `receiver.url`. Default `/hooks`. The receiver records requests to any path. */
  path?: string;
}

/** Starts a webhook receiver on 127.0.0.1 with a port that the system chooses. */
export async function startReceiver(options: StartReceiverOptions = {}): Promise<Receiver> {
  const receiver = new Receiver();
  await receiver.listen(options.path ?? '/hooks');
  return receiver;
}

interface Waiter {
  isSatisfied(): boolean;
  resolve(): void;
  reject(error: Error): void;
}

/** Largest number of body characters that a timeout error shows for each request. */
const BODY_PREVIEW_LENGTH = 200;

/**
 * An HTTP server that records every request and responds as the test programs it.
 * Waits are driven by the arrival of requests, without polling.
 */
export class Receiver {
  readonly #server = createServer((request, response) => {
    this.#handle(request, response);
  });
  readonly #requests: ReceivedRequest[] = [];
  readonly #waiters = new Set<Waiter>();
  readonly #responderErrors: Error[] = [];
  /** Aborted by close(), which cancels every pending delay. */
  readonly #closed = new AbortController();
  #responder: Responder = () => undefined;
  #url = '';
  #port = 0;
  #inFlight = 0;
  #maxInFlight = 0;
  #closing: Promise<void> | undefined;
  readonly #untrack: () => void;

  constructor() {
    this.#untrack = trackResource({
      description: 'webhook receiver',
      close: () => this.close(),
      closeSync: () => undefined,
    });
  }

  /** @internal Called by startReceiver. */
  async listen(path: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: '127.0.0.1', port: 0 }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    this.#url = `http://127.0.0.1:${this.#port}${path}`;
  }

  /** URL to configure as the webhook, such as `http://127.0.0.1:40123/hooks`. */
  get url(): string {
    return this.#url;
  }

  get port(): number {
    return this.#port;
  }

  /** Requests received so far, in order of arrival. */
  get requests(): readonly ReceivedRequest[] {
    return this.#requests;
  }

  /** Requests that have arrived and have not yet had a response or been aborted. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Largest value of `inFlight` so far. */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  /** Errors thrown by the responder. The receiver responded 500 to those requests. */
  get responderErrors(): readonly Error[] {
    return this.#responderErrors;
  }

  /** Sets how the receiver responds to later requests. The default is 200 at once. */
  respond(responder: Responder): void {
    this.#responder = responder;
  }

  /**
   * Resolves with all requests received so far once there are at least `count` of them,
   * or once `predicate` returns true for the list. On timeout the error lists every
   * request that arrived.
   */
  waitForRequests(
    countOrPredicate: number | ((requests: readonly ReceivedRequest[]) => boolean),
    options: WaitForRequestsOptions = {},
  ): Promise<readonly ReceivedRequest[]> {
    const isSatisfied =
      typeof countOrPredicate === 'number'
        ? () => this.#requests.length >= countOrPredicate
        : () => countOrPredicate(this.#requests);
    const description =
      options.description ??
      (typeof countOrPredicate === 'number'
        ? `${countOrPredicate} request(s)`
        : 'requests that satisfy the predicate');
    return this.#wait(isSatisfied, description, options.timeoutMs ?? 10_000).then(
      () => this.#requests.slice(),
    );
  }

  /** Resolves with the first request, past or future, for which `predicate` returns true. */
  async waitForRequest(
    predicate: (request: ReceivedRequest) => boolean,
    options: WaitForRequestsOptions = {},
  ): Promise<ReceivedRequest> {
    const description = options.description ?? 'a request that satisfies the predicate';
    let match: ReceivedRequest | undefined;
    const isSatisfied = (): boolean => {
      match = this.#requests.find(predicate);
      return match !== undefined;
    };
    await this.#wait(isSatisfied, description, options.timeoutMs ?? 10_000);
    return match as ReceivedRequest;
  }

  /**
   * Stops the server, destroys open connections and cancels pending delays, so it
   * returns without waiting for slow responses. Pending waits reject. Later calls return
   * the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#untrack();
    this.#closed.abort();
    for (const waiter of this.#waiters) {
      waiter.reject(new Error(`receiver at ${this.#url} closed during a wait`));
    }
    this.#waiters.clear();

    const stopped = new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
    });
    this.#server.closeAllConnections();
    await stopped;
  }

  #wait(isSatisfied: () => boolean, description: string, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(this.#describeTimeout(description, timeoutMs)));
      }, timeoutMs);
      const waiter: Waiter = {
        isSatisfied,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      if (settleIfSatisfied(waiter, this.#waiters)) {
        return;
      }
      if (this.#closed.signal.aborted) {
        waiter.reject(new Error(`receiver at ${this.#url} is closed`));
        return;
      }
      this.#waiters.add(waiter);
    });
  }

  #describeTimeout(description: string, timeoutMs: number): string {
    const lines = this.#requests.map((request) => {
      const body =
        request.body.length > BODY_PREVIEW_LENGTH
          ? `${request.body.slice(0, BODY_PREVIEW_LENGTH)}…`
          : request.body;
      return `  #${request.index} ${request.method} ${request.url} ${body}`;
    });
    const received =
      lines.length === 0 ? 'no requests arrived' : `${lines.length} arrived:\n${lines.join('\n')}`;
    return `timed out after ${timeoutMs} ms waiting for ${description} at ${this.#url}; ${received}`;
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    this.#inFlight += 1;
    this.#maxInFlight = Math.max(this.#maxInFlight, this.#inFlight);
    response.once('close', () => {
      this.#inFlight -= 1;
    });

    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.once('end', () => {
      const recorded = this.#record(request, Buffer.concat(chunks).toString('utf8'));
      void this.#respond(recorded, response);
    });
    // A client that disconnects mid-body sends no complete request, so nothing is
    // recorded. The 'close' listener above still decrements inFlight.
    request.once('error', () => undefined);
  }

  #record(request: IncomingMessage, body: string): ReceivedRequest {
    const recorded: ReceivedRequest = {
      index: this.#requests.length,
      method: request.method ?? '',
      url: request.url ?? '',
      headers: request.headers,
      body,
      json: parseJson(body),
      receivedAt: Date.now(),
    };
    this.#requests.push(recorded);

    for (const waiter of this.#waiters) {
      settleIfSatisfied(waiter, this.#waiters);
    }
    return recorded;
  }

  async #respond(request: ReceivedRequest, response: ServerResponse): Promise<void> {
    let planned: ReceiverResponse;
    try {
      planned = (await this.#responder(request, request.index)) ?? {};
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      this.#responderErrors.push(failure);
      planned = { status: 500, body: `receiver responder failed: ${failure.message}` };
    }

    if (planned.delayMs !== undefined && planned.delayMs > 0) {
      // Cancel the delay when the receiver closes or the client gives up.
      const clientGone = new AbortController();
      response.once('close', () => clientGone.abort());
      const signal = AbortSignal.any([this.#closed.signal, clientGone.signal]);
      try {
        await delay(planned.delayMs, undefined, { signal });
      } catch {
        return;
      }
    }

    if (response.destroyed || response.writableEnded) {
      return;
    }
    response.writeHead(planned.status ?? 200, planned.headers);
    response.end(planned.body ?? '');
  }
}

/**
 * Resolves the waiter and removes it from `waiters` when its condition holds. A
 * condition that throws rejects the waiter with that error.
 */
function settleIfSatisfied(waiter: Waiter, waiters: Set<Waiter>): boolean {
  let satisfied: boolean;
  try {
    satisfied = waiter.isSatisfied();
  } catch (error) {
    waiters.delete(waiter);
    waiter.reject(error instanceof Error ? error : new Error(String(error)));
    return true;
  }
  if (satisfied) {
    waiters.delete(waiter);
    waiter.resolve();
  }
  return satisfied;
}

function parseJson(body: string): unknown {
  if (body.length === 0) {
    return undefined;
  }
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}
