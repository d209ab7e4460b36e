/**
 * The webhook receiver of the chaos runs. Unlike the test helper's receiver it
 * records a delivery only once a 2xx response was written in full, so a request whose
 * response never left (walhook was killed or timed out first) does not count as delivered.
 * It can also stop listening and listen again on the same port, which makes walhook's
 * requests fail with ECONNREFUSED.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { trackResource } from '../test/helpers/cleanup.js';
import type { Rng } from './rng.js';

/** The receiver's response to one request. */
export interface PlannedResponse {
  readonly status: number;
  /** Wait before responding, in milliseconds. The response is dropped if the client leaves. */
  readonly delayMs: number;
}

/** Chooses the response to each request. `now` is Date.now(). */
export type ResponsePolicy = (now: number) => PlannedResponse;

/** One change as the receiver identifies it in an event. */
export interface DeliveredChange {
  /** Key of the change in the chaos ledger: `R<rev>` or `D<row id>`. */
  readonly changeKey: string;
  readonly table: string;
  readonly rowId: string;
}

/** Deliveries to one webhook, counted from fully written 2xx responses. */
export class WebhookDeliveries {
  /** 2xx deliveries per walhook event id. */
  readonly countByEventId = new Map<string, number>();
  /** Event ids seen per ledger change key; more than one is a bug. */
  readonly eventIdsByChange = new Map<string, Set<string>>();
  /** Position of the first 2xx delivery of each change, in this webhook's delivery order. */
  readonly firstDeliveryByChange = new Map<string, number>();
  /** Table of each delivered change, to compare with the ledger. */
  readonly tableByChange = new Map<string, string>();
  /** Events whose body did not contain the chaos tables' columns. */
  malformed = 0;
  requests = 0;
  deliveredRequests = 0;
  #sequence = 0;

  record(eventId: string, change: DeliveredChange): void {
    this.countByEventId.set(eventId, (this.countByEventId.get(eventId) ?? 0) + 1);
    let ids = this.eventIdsByChange.get(change.changeKey);
    if (ids === undefined) {
      ids = new Set();
      this.eventIdsByChange.set(change.changeKey, ids);
    }
    ids.add(eventId);
    if (!this.firstDeliveryByChange.has(change.changeKey)) {
      this.firstDeliveryByChange.set(change.changeKey, this.#sequence);
      this.tableByChange.set(change.changeKey, change.table);
    }
    this.#sequence += 1;
  }

  hasChange(changeKey: string): boolean {
    return this.firstDeliveryByChange.has(changeKey);
  }

  /** Deliveries beyond the first, summed over event ids. */
  get duplicated(): number {
    let extra = 0;
    for (const count of this.countByEventId.values()) extra += count - 1;
    return extra;
  }
}

/** Response counts by kind, for the scenario summary. */
export interface ResponseCounts {
  ok: number;
  error: number;
  /** Responses dropped because the client closed the connection during the delay. */
  abandoned: number;
}

export const HEALTHY: ResponsePolicy = () => ({ status: 200, delayMs: 0 });

/** Responds 503 at once, as a receiver behind a load balancer with no backend does. */
export const UNAVAILABLE: ResponsePolicy = () => ({ status: 503, delayMs: 0 });

type FlapPhase = 'healthy' | 'failing' | 'slow' | 'mixed';

/**
 * Returns a policy that switches between phases at random times from `minPhaseMs` to
 * `maxPhaseMs`: all 200, all 500 or 503, slow 200s, and a per-request mix that
 * includes responses slower than walhook's timeout (`hangMs`).
 */
export function flappingPolicy(
  rng: Rng,
  options: { minPhaseMs: number; maxPhaseMs: number; hangMs: number },
): ResponsePolicy {
  let phase: FlapPhase = 'healthy';
  let phaseEndsAt = 0;
  return (now) => {
    if (now >= phaseEndsAt) {
      phase = rng.weighted<FlapPhase>({ healthy: 3, failing: 2, slow: 2, mixed: 3 });
      phaseEndsAt = now + rng.int(options.minPhaseMs, options.maxPhaseMs);
    }
    switch (phase) {
      case 'healthy':
        return { status: 200, delayMs: 0 };
      case 'failing':
        return { status: rng.chance(0.5) ? 500 : 503, delayMs: rng.int(0, 20) };
      case 'slow':
        return { status: 200, delayMs: rng.int(100, 1_200) };
      case 'mixed': {
        const kind = rng.weighted({ ok: 5, error: 3, slow: 1.5, hang: 0.5 });
        if (kind === 'ok') return { status: 200, delayMs: 0 };
        if (kind === 'error') return { status: rng.pick([500, 502, 503]), delayMs: 0 };
        if (kind === 'slow') return { status: 200, delayMs: rng.int(100, 1_200) };
        return { status: 200, delayMs: options.hangMs };
      }
    }
  };
}

/**
 * An HTTP receiver on 127.0.0.1. Each webhook posts to its own path, `/<webhook>`,
 * and gets its own WebhookDeliveries.
 */
export class ChaosReceiver {
  readonly #server = createServer((request, response) => this.#handle(request, response));
  readonly #sockets = new Set<Socket>();
  readonly #deliveries = new Map<string, WebhookDeliveries>();
  readonly #pendingTimers = new Set<NodeJS.Timeout>();
  readonly counts: ResponseCounts = { ok: 0, error: 0, abandoned: 0 };
  #policy: ResponsePolicy = HEALTHY;
  #port = 0;
  #listening = false;
  readonly #untrack: () => void;

  private constructor() {
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.#untrack = trackResource({
      description: 'chaos webhook receiver',
      close: () => this.close(),
      closeSync: () => undefined,
    });
  }

  static async start(webhooks: readonly string[]): Promise<ChaosReceiver> {
    const receiver = new ChaosReceiver();
    for (const webhook of webhooks) receiver.#deliveries.set(webhook, new WebhookDeliveries());
    await receiver.#listen(0);
    return receiver;
  }

  urlFor(webhook: string): string {
    return `http://127.0.0.1:${this.#port}/${webhook}`;
  }

  deliveriesOf(webhook: string): WebhookDeliveries {
    const deliveries = this.#deliveries.get(webhook);
    if (deliveries === undefined) throw new Error(`the receiver has no webhook '${webhook}'`);
    return deliveries;
  }

  get webhooks(): string[] {
    return [...this.#deliveries.keys()];
  }

  /** Sets the responses to later requests. */
  respond(policy: ResponsePolicy): void {
    this.#policy = policy;
  }

  /**
   * Stops listening and destroys every open connection, so walhook's requests fail
   * with ECONNREFUSED until `accept()`.
   */
  async refuse(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  /** Listens again on the same port after `refuse()`. */
  async accept(): Promise<void> {
    if (this.#listening) return;
    await this.#listen(this.#port);
  }

  async close(): Promise<void> {
    this.#untrack();
    for (const timer of this.#pendingTimers) clearTimeout(timer);
    this.#pendingTimers.clear();
    await this.refuse();
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: '127.0.0.1', port }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    this.#listening = true;
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const webhook = (request.url ?? '').slice(1);
    const deliveries = this.#deliveries.get(webhook);
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.once('error', () => undefined);
    request.once('end', () => {
      if (deliveries === undefined) {
        response.writeHead(404).end();
        return;
      }
      deliveries.requests += 1;
      const planned = this.#policy(Date.now());
      const respond = (): void => this.#respond(response, planned.status, Buffer.concat(chunks), deliveries);
      if (planned.delayMs <= 0) {
        respond();
        return;
      }
      const timer = setTimeout(() => {
        this.#pendingTimers.delete(timer);
        respond();
      }, planned.delayMs);
      this.#pendingTimers.add(timer);
      response.once('close', () => {
        if (!this.#pendingTimers.delete(timer)) return;
        clearTimeout(timer);
        this.counts.abandoned += 1;
      });
    });
  }

  #respond(response: ServerResponse, status: number, body: Buffer, deliveries: WebhookDeliveries): void {
    if (response.destroyed || response.writableEnded) {
      this.counts.abandoned += 1;
      return;
    }
    const ok = status >= 200 && status < 300;
    if (ok) {
      // 'finish' means the whole response went to the operating system. A 2xx that
      // never left does not make an event delivered.
      response.once('finish', () => {
        deliveries.deliveredRequests += 1;
        recordBody(body, deliveries);
      });
      this.counts.ok += 1;
    } else {
      this.counts.error += 1;
    }
    response.writeHead(status, { 'content-type': 'text/plain' }).end(ok ? 'ok' : 'chaos');
  }
}

/** Records each event of a single-event or batch body. */
function recordBody(body: Buffer, deliveries: WebhookDeliveries): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    deliveries.malformed += 1;
    return;
  }
  const events = isBatch(parsed) ? parsed.events : [parsed];
  for (const event of events) {
    const identified = identifyChange(event);
    if (identified === undefined) {
      deliveries.malformed += 1;
      continue;
    }
    deliveries.record(identified.eventId, identified.change);
  }
}

function isBatch(value: unknown): value is { events: unknown[] } {
  return typeof value === 'object' && value !== null && Array.isArray((value as { events?: unknown }).events);
}

interface Envelope {
  id?: unknown;
  table?: { name?: unknown };
  event?: { op?: unknown; data?: { old?: Record<string, unknown> | null; new?: Record<string, unknown> | null } };
}

/**
 * Maps an event to its ledger change key. An insert or update carries the row's new
 * `rev`, which the load generator takes from a sequence for every write. A delete
 * carries the old key, and row ids are never reused, so `D<id>` names the delete.
 */
export function identifyChange(value: unknown): { eventId: string; change: DeliveredChange } | undefined {
  const envelope = value as Envelope;
  if (typeof envelope?.id !== 'string' || typeof envelope.table?.name !== 'string') return undefined;
  const op = envelope.event?.op;
  const data = envelope.event?.data;
  if (op === 'INSERT' || op === 'UPDATE') {
    const row = data?.new;
    if (row?.rev === undefined || row.id === undefined) return undefined;
    return {
      eventId: envelope.id,
      change: { changeKey: `R${String(row.rev)}`, table: envelope.table.name, rowId: String(row.id) },
    };
  }
  if (op === 'DELETE') {
    const row = data?.old;
    if (row?.id === undefined) return undefined;
    return {
      eventId: envelope.id,
      change: { changeKey: `D${String(row.id)}`, table: envelope.table.name, rowId: String(row.id) },
    };
  }
  return undefined;
}
