/**
 * The status page at `/` and its JSON routes on the operations server:
 *
 * - `GET /`: an HTML page for people, with its script at `/status.js` and its style
 *   sheet at `/status.css`. The script polls `/api/status` and renders everything with
 *   DOM text nodes, so no value from the report is ever parsed as HTML. The page loads
 *   nothing from other hosts, and its Content-Security-Policy allows this origin only.
 * - `GET /api/status`: the StatusReport as JSON.
 * - `POST /api/dead-letters/ID/redeliver`: redelivers one dead letter. It needs
 *   `server.admin_token`, sent as `Authorization: Bearer TOKEN`: 403 when no token is
 *   configured or the token differs, 401 when the header is missing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';

import { STATUS_PAGE_SCRIPT } from './status-page-script.js';
import { STATUS_PAGE_STYLE } from './status-page-style.js';
import type { RedeliveryResult, StatusReport } from './status-report.js';

export interface StatusPageDeps {
  readonly logger: Logger;
  readonly report: () => Promise<StatusReport>;
  readonly redeliver: (id: string) => Promise<RedeliveryResult>;
  /** `server.admin_token`, or null, which disables the redeliver action. */
  readonly adminToken: string | null;
  /** Replication slot name, shown in the page title. */
  readonly slot: string;
}

/** Paths that this module serves, for the 404 message of the server. */
export const STATUS_PAGE_ROUTES = ['/', '/api/status'] as const;

const REDELIVER_PATH = /^\/api\/dead-letters\/([^/]+)\/redeliver$/;
/** A bigserial id as decimal text. */
const ID_PATTERN = /^[1-9][0-9]{0,18}$/;
/** Minimum time between two warnings about rejected admin requests. */
const REJECTION_LOG_INTERVAL_MS = 60_000;

const JSON_TYPE = 'application/json; charset=utf-8';

/** No resource from another origin, no inline script or style, no framing. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Serves the status page routes. Returns false for any other path, which the caller
 * then handles.
 */
export class StatusPageRoutes {
  readonly #deps: StatusPageDeps;
  readonly #logger: Logger;
  /** SHA-256 of the admin token, compared in constant time with the digest of a request's token. */
  readonly #tokenDigest: Buffer | null;
  #lastRejectionLogAt = 0;
  #rejectionsSinceLog = 0;

  constructor(deps: StatusPageDeps) {
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'status-page' });
    this.#tokenDigest = deps.adminToken === null ? null : sha256(deps.adminToken);
  }

  async handle(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    const redeliverMatch = REDELIVER_PATH.exec(path);
    if (redeliverMatch !== null) {
      if (request.method !== 'POST') {
        response.setHeader('allow', 'POST');
        sendJson(response, 405, { error: 'method not allowed; use POST' });
        return true;
      }
      await this.#redeliver(request, response, redeliverMatch[1] ?? '');
      return true;
    }

    const get = STATIC_ROUTES.get(path) ?? (path === '/api/status' ? 'api' : undefined);
    if (get === undefined) return false;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('allow', 'GET, HEAD');
      sendJson(response, 405, { error: 'method not allowed; use GET' });
      return true;
    }
    if (get === 'api') {
      sendJson(response, 200, await this.#deps.report());
      return true;
    }
    const body = get === 'page' ? renderStatusPage(this.#deps.slot) : get.body;
    const type = get === 'page' ? 'text/html; charset=utf-8' : get.type;
    response.statusCode = 200;
    setSecurityHeaders(response);
    response.setHeader('content-type', type);
    response.end(body);
    return true;
  }

  async #redeliver(request: IncomingMessage, response: ServerResponse, rawId: string): Promise<void> {
    // The action reads no request body; draining it lets the connection be reused.
    request.resume();
    const denied = this.#authorize(request);
    if (denied !== null) {
      this.#logRejection(request, denied.status);
      if (denied.status === 401) response.setHeader('www-authenticate', 'Bearer realm="walhook"');
      sendJson(response, denied.status, { error: denied.error });
      return;
    }
    const id = safeDecode(rawId);
    if (id === null || !ID_PATTERN.test(id)) {
      sendJson(response, 400, { error: 'invalid dead-letter id: expected a positive integer, as the page lists it' });
      return;
    }

    const result = await this.#deps.redeliver(id);
    const remoteAddress = request.socket.remoteAddress;
    switch (result.kind) {
      case 'not-found':
        sendJson(response, 404, { outcome: 'not-found', id, error: `dead letter ${id} not found` });
        return;
      case 'delivered':
        this.#logger.info(
          { id, webhook: result.record.webhook, status: result.status, remoteAddress },
          'dead letter redelivered from the status page',
        );
        sendJson(response, 200, {
          outcome: 'delivered',
          id,
          webhook: result.record.webhook,
          status: result.status,
          currentRetry: result.currentRetry,
        });
        return;
      case 'failed':
        this.#logger.warn(
          { id, webhook: result.record.webhook, status: result.result.status, err: result.result.error, remoteAddress },
          'redelivery from the status page failed',
        );
        sendJson(response, 502, {
          outcome: 'failed',
          id,
          webhook: result.record.webhook,
          status: result.result.status,
          error: result.result.error,
          currentRetry: result.currentRetry,
        });
        return;
      case 'not-sent':
        sendJson(response, 409, { outcome: 'not-sent', id, error: result.reason });
        return;
      default: {
        const unreachable: never = result;
        throw new Error(`unknown redelivery result ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Returns null when the request carries the admin token, else the status and message to send. */
  #authorize(request: IncomingMessage): { status: 401 | 403; error: string } | null {
    if (this.#tokenDigest === null) {
      return { status: 403, error: 'admin actions are disabled: set server.admin_token to enable them' };
    }
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
    const token = match?.[1];
    if (token === undefined) {
      return { status: 401, error: 'missing admin token: send it as Authorization: Bearer TOKEN' };
    }
    // Digests have the same length whatever the token's, so the comparison leaks no length.
    if (!timingSafeEqual(sha256(token), this.#tokenDigest)) {
      return { status: 403, error: 'invalid admin token' };
    }
    return null;
  }

  /** Logs rejected admin requests at most once a minute, with the count since the last warning. */
  #logRejection(request: IncomingMessage, status: number): void {
    this.#rejectionsSinceLog += 1;
    const now = Date.now();
    if (now - this.#lastRejectionLogAt < REJECTION_LOG_INTERVAL_MS) return;
    this.#logger.warn(
      { status, remoteAddress: request.socket.remoteAddress, rejectedRequests: this.#rejectionsSinceLog },
      'rejected an admin request of the status page',
    );
    this.#lastRejectionLogAt = now;
    this.#rejectionsSinceLog = 0;
  }
}

type StaticRoute = 'page' | 'api' | { readonly type: string; readonly body: string };

/** A green dot, so that the browser does not request /favicon.ico. */
const FAVICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#1f7a3f"/></svg>';

const STATIC_ROUTES = new Map<string, StaticRoute>([
  ['/', 'page'],
  ['/status.js', { type: 'text/javascript; charset=utf-8', body: STATUS_PAGE_SCRIPT }],
  ['/status.css', { type: 'text/css; charset=utf-8', body: STATUS_PAGE_STYLE }],
  ['/favicon.svg', { type: 'image/svg+xml', body: FAVICON }],
]);

/** Replaces the characters that HTML gives a meaning, in text and in quoted attribute values. */
export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/**
 * Returns the HTML of the page: the layout only, which the script fills in from the
 * report. The admin token field never gets a value from the server.
 */
export function renderStatusPage(slot: string): string {
  const title = `walhook: ${escapeHtml(slot)}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title}</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
  <h1>walhook <span class="slot">slot ${escapeHtml(slot)}</span></h1>
  <div id="role" class="role role-unknown" data-role="unknown">loading</div>
  <p id="role-message" class="muted">Loading the status from <a href="/api/status">/api/status</a>.</p>
  <noscript><p>This page needs JavaScript. The same data is at <a href="/api/status">/api/status</a>.</p></noscript>
</header>
<main>
  <section>
    <h2>Replication slot</h2>
    <dl id="slot" class="facts"></dl>
  </section>
  <section class="charts">
    <figure>
      <figcaption>Throughput, events per second</figcaption>
      <div id="throughput-chart" class="chart"></div>
    </figure>
    <figure>
      <figcaption>Replication lag, bytes</figcaption>
      <div id="lag-chart" class="chart"></div>
    </figure>
  </section>
  <section>
    <h2>Recent delivery failures</h2>
    <div id="failures"></div>
  </section>
  <section>
    <h2>Dead letters</h2>
    <div class="admin">
      <label for="admin-token">Admin token</label>
      <input id="admin-token" type="password" autocomplete="off" spellcheck="false" placeholder="paste server.admin_token" disabled>
      <span id="admin-note" class="muted"></span>
    </div>
    <p id="action-result" class="muted" role="status"></p>
    <div id="dead-letter-counts"></div>
    <div id="dead-letters"></div>
  </section>
</main>
<footer class="muted">Updated <span id="updated">never</span>. <span id="instance"></span></footer>
</body>
</html>
`;
}

function setSecurityHeaders(response: ServerResponse): void {
  response.setHeader('cache-control', 'no-store');
  response.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
  response.setHeader('x-content-type-options', 'nosniff');
  response.setHeader('referrer-policy', 'no-referrer');
  response.setHeader('x-frame-options', 'DENY');
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.statusCode = status;
  response.setHeader('content-type', JSON_TYPE);
  response.setHeader('cache-control', 'no-store');
  response.setHeader('x-content-type-options', 'nosniff');
  response.end(`${JSON.stringify(body)}\n`);
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function safeDecode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}
