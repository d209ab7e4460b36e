/**
 * Manual redelivery of stored dead letters: one POST per row, built as the webhook
 * sink builds it, with the webhook's and trigger's current configuration.
 */
import { Webhook } from 'standardwebhooks';
import { type Dispatcher, request } from 'undici';

import type { TriggerConfig, WebhookConfig } from '../../config/types.js';
import { BodyTransform, renderUrl, TransformError, UrlRenderError } from '../../filters/index.js';
import { batchIdOf } from '../webhook/delivery-engine.js';
import type { DeadLetterRecord, DeadLetterStore } from './store.js';

/** Maximum response body bytes read and discarded so that the connection can be reused. */
const MAX_DISCARDED_BODY_BYTES = 64 * 1024;

/** Headers that redelivery sets itself, which replace configured headers of the same name. */
const OWN_HEADERS = new Set(['content-type', 'webhook-id', 'webhook-timestamp', 'webhook-signature']);

/** A stored envelope whose top-level `delivery_info` cannot be found or read. */
export class InvalidEnvelopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidEnvelopeError';
  }
}

/** One request ready to send. */
export interface RedeliveryRequest {
  readonly webhook: WebhookConfig;
  readonly url: string;
  /** The `webhook-id` header: the event id, or for a batching webhook the id of a one-event batch. */
  readonly id: string;
  readonly body: string;
  readonly currentRetry: number;
}

export interface PostResult {
  readonly ok: boolean;
  /** HTTP status, or null when no response arrived. */
  readonly status: number | null;
  /** Network error or timeout, or null when a response arrived. */
  readonly error: string | null;
}

export type RedeliveryOutcome =
  | { readonly kind: 'delivered'; readonly record: DeadLetterRecord; readonly status: number; readonly currentRetry: number }
  | { readonly kind: 'failed'; readonly record: DeadLetterRecord; readonly result: PostResult; readonly currentRetry: number }
  | { readonly kind: 'not-sent'; readonly record: DeadLetterRecord; readonly reason: string };

export interface RedeliverOptions {
  /** undici dispatcher for the requests, so that the caller can close its connections. */
  readonly dispatcher: Dispatcher;
  readonly now?: () => Date;
}

/**
 * Sends one dead letter again and records the result in the store. A row that cannot
 * be sent, because its webhook or trigger is no longer configured or building its
 * body or URL fails, is returned as `not-sent` and left unchanged.
 */
export async function redeliverDeadLetter(
  record: DeadLetterRecord,
  config: { readonly webhooks: readonly WebhookConfig[]; readonly triggers: readonly TriggerConfig[] },
  store: DeadLetterStore,
  options: RedeliverOptions,
): Promise<RedeliveryOutcome> {
  const prepared = await prepareRedelivery(record, config.webhooks, config.triggers);
  if (typeof prepared === 'string') {
    return { kind: 'not-sent', record, reason: prepared };
  }

  const now = options.now ?? (() => new Date());
  const result = await postRedelivery(prepared, { dispatcher: options.dispatcher, now: now() });
  if (result.ok && result.status !== null) {
    await store.markRedelivered(record.id, now());
    return { kind: 'delivered', record, status: result.status, currentRetry: prepared.currentRetry };
  }
  await store.recordRedeliveryFailure(record.id, result.status, result.error, now());
  return { kind: 'failed', record, result, currentRetry: prepared.currentRetry };
}

/**
 * Builds the request for a row as the sink would send it now, or returns why it
 * cannot be sent.
 *
 * The envelope is the stored text with `delivery_info.current_retry` set to the
 * attempts made so far, counting earlier redeliveries. The trigger's `transform` is
 * applied to it, the webhook's URL placeholders are filled from it, and a batching
 * webhook gets it as a one-event `{"events":[...]}` batch.
 */
export async function prepareRedelivery(
  record: DeadLetterRecord,
  webhooks: readonly WebhookConfig[],
  triggers: readonly TriggerConfig[],
): Promise<RedeliveryRequest | string> {
  const webhook = webhooks.find((candidate) => candidate.name === record.webhook);
  if (webhook === undefined) {
    return `webhook '${record.webhook}' is not in the configuration; add it back to redeliver this dead letter, or purge it`;
  }
  // The trigger's transform shapes the body, so without the trigger the body is unknown.
  const trigger = triggers.find((candidate) => candidate.name === record.trigger);
  if (trigger === undefined) {
    return `trigger '${record.trigger}' is not in the configuration; add it back to redeliver this dead letter, or purge it`;
  }

  const currentRetry = record.attempts + record.redeliveryAttempts;
  let envelope: string;
  let body: string;
  let url: string;
  try {
    envelope = withCurrentRetry(record.envelope, currentRetry);
    body = trigger.transform === undefined ? envelope : await new BodyTransform(trigger.transform.body).renderBody(envelope);
    url = webhook.url.includes('{{') ? renderUrl(webhook.url, envelope) : webhook.url;
  } catch (error) {
    if (error instanceof InvalidEnvelopeError || error instanceof TransformError || error instanceof UrlRenderError) {
      return error.message;
    }
    throw error;
  }

  if (webhook.batch === null) {
    return { webhook, url, id: record.eventId, body, currentRetry };
  }
  // The sink sends every request of a batching webhook as a batch with its own id.
  return { webhook, url, id: batchIdOf([record.eventId]), body: `{"events":[${body}]}`, currentRetry };
}

/**
 * POSTs the request once with the headers the sink sends: the configured headers,
 * `content-type: application/json`, `webhook-id`, `webhook-timestamp`, and
 * `webhook-signature` when the webhook has a signing secret. Returns HTTP and network
 * failures as results instead of throwing them.
 */
export async function postRedelivery(
  prepared: RedeliveryRequest,
  options: { dispatcher: Dispatcher; now: Date },
): Promise<PostResult> {
  const { webhook, id, body } = prepared;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(webhook.headers)) {
    if (!OWN_HEADERS.has(name.toLowerCase())) {
      headers[name] = value;
    }
  }
  const timestampSeconds = Math.floor(options.now.getTime() / 1000);
  headers['content-type'] = 'application/json';
  headers['webhook-id'] = id;
  headers['webhook-timestamp'] = String(timestampSeconds);
  if (webhook.signingSecret !== null) {
    headers['webhook-signature'] = new Webhook(webhook.signingSecret).sign(id, new Date(timestampSeconds * 1000), body);
  }

  const timeout = AbortSignal.timeout(webhook.timeoutMs);
  try {
    const response = await request(prepared.url, {
      method: 'POST',
      headers,
      body,
      dispatcher: options.dispatcher,
      signal: timeout,
      headersTimeout: webhook.timeoutMs,
      bodyTimeout: webhook.timeoutMs,
    });
    await response.body.dump({ limit: MAX_DISCARDED_BODY_BYTES }).catch(() => undefined);
    const status = response.statusCode;
    return { ok: status >= 200 && status < 300, status, error: null };
  } catch (error) {
    if (timeout.aborted) {
      return { ok: false, status: null, error: `timed out after ${webhook.timeoutMs} ms` };
    }
    return { ok: false, status: null, error: describeRequestError(error) };
  }
}

function describeRequestError(error: unknown): string {
  if (!(error instanceof Error)) {
    return String(error);
  }
  const code = (error as { code?: unknown }).code;
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${typeof code === 'string' ? code : error.name}: ${error.message}${cause}`;
}

/**
 * Returns the envelope text with the value of its top-level `delivery_info` replaced,
 * keeping every other byte. `max_retries` and any other key inside `delivery_info`
 * stay as stored, and `current_retry` gets the new value. Throws InvalidEnvelopeError
 * when the text is not a JSON object or has no top-level `delivery_info` object.
 */
export function withCurrentRetry(envelope: string, currentRetry: number): string {
  const span = findTopLevelValue(envelope, 'delivery_info');
  if (span === undefined) {
    throw new InvalidEnvelopeError('the stored envelope has no top-level delivery_info');
  }

  let deliveryInfo: unknown;
  try {
    deliveryInfo = JSON.parse(envelope.slice(span.start, span.end));
  } catch {
    throw new InvalidEnvelopeError('the stored envelope has an invalid delivery_info value');
  }
  if (deliveryInfo === null || typeof deliveryInfo !== 'object' || Array.isArray(deliveryInfo)) {
    throw new InvalidEnvelopeError('the stored envelope has a delivery_info that is not an object');
  }

  // Spreading keeps the key order, so walhook's `{"max_retries":…,"current_retry":…}`
  // comes back in the same layout.
  const updated = JSON.stringify({ ...deliveryInfo, current_retry: currentRetry });
  return `${envelope.slice(0, span.start)}${updated}${envelope.slice(span.end)}`;
}

interface ValueSpan {
  /** Index of the first character of the value. */
  readonly start: number;
  /** Index just after the value. */
  readonly end: number;
}

/**
 * Finds the value of `key` in the top-level JSON object of `text`, skipping nested
 * values, so that a column value containing the same key is never matched. The last
 * occurrence wins, as in JSON.parse. Throws InvalidEnvelopeError when `text` is not
 * a JSON object.
 */
export function findTopLevelValue(text: string, key: string): ValueSpan | undefined {
  const scanner = new JsonScanner(text);
  scanner.skipWhitespace();
  scanner.expect('{');

  let found: ValueSpan | undefined;
  scanner.skipWhitespace();
  if (scanner.peek() === '}') {
    return undefined;
  }
  for (;;) {
    scanner.skipWhitespace();
    const keyStart = scanner.position;
    scanner.skipString();
    const memberKey = parseKey(text.slice(keyStart, scanner.position));
    scanner.skipWhitespace();
    scanner.expect(':');
    scanner.skipWhitespace();

    const start = scanner.position;
    scanner.skipValue();
    if (memberKey === key) {
      found = { start, end: scanner.position };
    }

    scanner.skipWhitespace();
    if (scanner.peek() === ',') {
      scanner.expect(',');
      continue;
    }
    scanner.expect('}');
    return found;
  }
}

function parseKey(quoted: string): string {
  try {
    return JSON.parse(quoted) as string;
  } catch {
    throw new InvalidEnvelopeError('the stored envelope is not valid JSON: a key has an invalid escape');
  }
}

/**
 * A cursor over JSON text that skips values without building them. It checks the
 * structure only as far as finding a top-level key needs, so it accepts some invalid
 * JSON, such as a `]` that closes a `{`.
 */
class JsonScanner {
  position = 0;
  readonly #text: string;

  constructor(text: string) {
    this.#text = text;
  }

  peek(): string | undefined {
    return this.#text[this.position];
  }

  expect(character: string): void {
    if (this.#text[this.position] !== character) {
      throw new InvalidEnvelopeError(
        `the stored envelope is not a valid JSON object: expected '${character}' at offset ${this.position}`,
      );
    }
    this.position += 1;
  }

  skipWhitespace(): void {
    while (/[ \t\n\r]/.test(this.#text[this.position] ?? '')) {
      this.position += 1;
    }
  }

  skipString(): void {
    this.expect('"');
    for (;;) {
      const character = this.#text[this.position];
      if (character === undefined) {
        throw new InvalidEnvelopeError('the stored envelope is not valid JSON: a string is not closed');
      }
      this.position += character === '\\' ? 2 : 1;
      if (character === '"') {
        return;
      }
    }
  }

  /** Skips one value: a string, an object or array with everything inside, or a literal. */
  skipValue(): void {
    const first = this.peek();
    if (first === '"') {
      this.skipString();
      return;
    }
    if (first === '{' || first === '[') {
      this.#skipContainer();
      return;
    }
    const start = this.position;
    while (this.position < this.#text.length && !/[,}\]\s]/.test(this.#text[this.position] ?? '')) {
      this.position += 1;
    }
    if (this.position === start) {
      throw new InvalidEnvelopeError(`the stored envelope is not valid JSON: a value is missing at offset ${start}`);
    }
  }

  #skipContainer(): void {
    let depth = 0;
    for (;;) {
      const character = this.peek();
      if (character === undefined) {
        throw new InvalidEnvelopeError('the stored envelope is not valid JSON: an object or array is not closed');
      }
      if (character === '"') {
        this.skipString();
        continue;
      }
      this.position += 1;
      if (character === '{' || character === '[') {
        depth += 1;
      } else if (character === '}' || character === ']') {
        depth -= 1;
        if (depth === 0) {
          return;
        }
      }
    }
  }
}
