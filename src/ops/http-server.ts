/**
 * The operations HTTP server: `/healthz` for liveness, `/readyz` for readiness,
 * `/metrics` for Prometheus, and with `statusPage` the status page at `/` and its JSON
 * routes (status-page.ts). Built on node:http because a few routes need no framework.
 * Responses contain no secret from the configuration: readiness messages carry
 * PostgreSQL's error text, which names hosts and roles but never a password.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ReadinessState } from './readiness.js';
import { STATUS_PAGE_ROUTES, type StatusPageDeps, StatusPageRoutes } from './status-page.js';

export interface OpsServerOptions {
  /** Address to bind, such as `0.0.0.0` or `127.0.0.1`. */
  readonly host: string;
  /** TCP port; 0 picks a free one, which `address` then reports. */
  readonly port: number;
  /**
   * `/healthz` fails while the longest event loop delay of the last 10 to 20 s is above
   * this. Default 5000 ms.
   */
  readonly maxEventLoopDelayMs?: number;
}

/** The part of Metrics that the server uses. */
export interface MetricsSource {
  readonly contentType: string;
  render(): Promise<string>;
}

export interface OpsServerDeps {
  readonly logger: Logger;
  readonly metrics: MetricsSource;
  /** Returns the current readiness; called once per `/readyz` request. */
  readonly readiness: () => ReadinessState;
  /** Serves the status page and its API when set. */
  readonly statusPage?: Omit<StatusPageDeps, 'logger'>;
}

const DEFAULT_MAX_EVENT_LOOP_DELAY_MS = 5_000;
/** Length of one event loop delay window; `/healthz` reads the current and the previous one. */
const DELAY_WINDOW_MS = 10_000;
/** Sampling resolution of the event loop delay histogram. */
const DELAY_RESOLUTION_MS = 20;

const JSON_TYPE = 'application/json; charset=utf-8';

export class OpsServer {
  readonly #options: OpsServerOptions;
  readonly #deps: OpsServerDeps;
  readonly #logger: Logger;
  readonly #server: Server;
  readonly #delay: IntervalHistogram;
  readonly #statusPage: StatusPageRoutes | null;
  #windowTimer: NodeJS.Timeout | undefined;
  #previousWindowMaxMs = 0;
  #closing: Promise<void> | null = null;

  constructor(options: OpsServerOptions, deps: OpsServerDeps) {
    this.#options = options;
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'http-server' });
    this.#delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
    this.#statusPage =
      deps.statusPage === undefined ? null : new StatusPageRoutes({ ...deps.statusPage, logger: deps.logger });
    this.#server = createServer((request, response) => {
      void this.#handle(request, response);
    });
  }

  /** The bound address after `listen()`. */
  get address(): { host: string; port: number } {
    const address = this.#server.address() as AddressInfo | null;
    if (address === null) throw new Error('http server: not listening');
    return { host: address.address, port: address.port };
  }

  /** Binds to the configured host and port. Rejects when the port is in use. */
  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#server.once('error', onError);
      this.#server.listen({ host: this.#options.host, port: this.#options.port }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    this.#server.on('error', (err) => this.#logger.error({ err }, 'http server error'));
    this.#delay.enable();
    this.#windowTimer = setInterval(() => this.#rotateDelayWindow(), DELAY_WINDOW_MS);
    this.#windowTimer.unref();
    this.#logger.info(this.address, 'http server listening');
    return this.address;
  }

  /** Stops accepting connections and closes open ones. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#windowTimer);
      this.#delay.disable();
      if (!this.#server.listening) return;
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      this.#server.closeAllConnections();
      await closed;
    })();
    return this.#closing;
  }

  /** Maximum event loop delay in the current and the previous window, in milliseconds. */
  eventLoopDelayMs(): number {
    return Math.max(this.#previousWindowMaxMs, this.#delay.max / 1e6);
  }

  #rotateDelayWindow(): void {
    this.#previousWindowMaxMs = this.#delay.max / 1e6;
    this.#delay.reset();
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      const path = new URL(request.url ?? '/', 'http://localhost').pathname;
      if (this.#statusPage !== null && (await this.#statusPage.handle(request, response, path))) return;
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.setHeader('allow', 'GET, HEAD');
        sendJson(response, 405, { error: 'method not allowed; use GET' });
        return;
      }
      switch (path) {
        case '/healthz':
          this.#healthz(response);
          return;
        case '/readyz':
          this.#readyz(response);
          return;
        case '/metrics':
          await this.#metrics(response);
          return;
        default: {
          const pageRoutes = this.#statusPage === null ? '' : `${STATUS_PAGE_ROUTES.join(', ')}, `;
          sendJson(response, 404, {
            error: `not found; the routes are ${pageRoutes}/healthz, /readyz and /metrics`,
          });
        }
      }
    } catch (err) {
      this.#logger.error({ err, path: request.url }, 'http request failed');
      if (response.headersSent) response.destroy();
      else sendJson(response, 500, { error: 'internal error; see the walhook log' });
    }
  }

  #healthz(response: ServerResponse): void {
    const delayMs = Math.round(this.eventLoopDelayMs());
    const maxMs = this.#options.maxEventLoopDelayMs ?? DEFAULT_MAX_EVENT_LOOP_DELAY_MS;
    if (delayMs > maxMs) {
      sendJson(response, 503, {
        status: 'event_loop_blocked',
        message:
          `the event loop was blocked for ${delayMs} ms, more than ${maxMs} ms, ` +
          `within the last ${(2 * DELAY_WINDOW_MS) / 1000} s`,
        eventLoopDelayMs: delayMs,
      });
      return;
    }
    sendJson(response, 200, { status: 'ok', eventLoopDelayMs: delayMs });
  }

  #readyz(response: ServerResponse): void {
    const state = this.#deps.readiness();
    sendJson(response, state.ready ? 200 : 503, state);
  }

  async #metrics(response: ServerResponse): Promise<void> {
    const body = await this.#deps.metrics.render();
    response.statusCode = 200;
    response.setHeader('content-type', this.#deps.metrics.contentType);
    response.setHeader('cache-control', 'no-store');
    response.end(body);
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.statusCode = status;
  response.setHeader('content-type', JSON_TYPE);
  response.setHeader('cache-control', 'no-store');
  response.end(`${JSON.stringify(body)}\n`);
}
