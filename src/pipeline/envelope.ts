/**
 * Builds the JSON envelope POSTed to webhooks. Its shape follows Hasura Event
 * Triggers, so existing handlers keep working, plus `lsn`, `xid`, and for partial
 * rows `event.old_row` and `event.unchanged_columns`.
 *
 * The body is assembled as text because values arrive as PostgreSQL text output and
 * must not pass through JavaScript numbers. `delivery_info` changes per attempt, so
 * the envelope is stored as the text before and after it.
 */
import { hash } from 'node:crypto';
import { type Lsn, formatLsn } from '../core/lsn.js';
import type { ColumnValue, RelationInfo } from '../source/messages.js';
import { UNCHANGED_TOAST } from '../source/messages.js';
import type { RowChange, TransactionInfo } from './change.js';
import type { ColumnProjection } from '../filters/projection.js';
import { type EncodeOptions, encodeValue } from './json-values.js';

export interface Envelope {
  readonly id: string;
  /** JSON text up to the value of `delivery_info`. */
  readonly head: string;
  /** JSON text after the value of `delivery_info`. */
  readonly tail: string;
}

/** Milliseconds between the Unix epoch and the PostgreSQL epoch, 2000-01-01 00:00 UTC. */
export const PG_EPOCH_MS = 946_684_800_000;

/**
 * Returns an id that is the same for the same change and trigger on every decode of
 * the slot, so receivers can drop duplicates after a restart. It is shaped like a
 * UUID (version 8, name-based on SHA-256).
 */
export function eventId(triggerName: string, change: RowChange): string {
  return changeEventId(triggerName, change, transactionText(change.transaction).commitLsn, formatLsn(change.lsn));
}

function changeEventId(triggerName: string, change: RowChange, commitLsnText: string, lsnText: string): string {
  return uuidFromText(
    `${triggerName}\u0000${commitLsnText}\u0000${lsnText}\u0000${change.lsnOrdinal}\u0000${change.relation.oid}`,
  );
}

/** Returns a UUID (version 8) made from the SHA-256 of `text`. */
export function uuidFromText(text: string): string {
  // For inputs this short the one-shot hash() measured about a third of the time of
  // createHash().update().digest() (Node.js 20.20).
  const hex = hash('sha256', text, 'hex');
  const variant = ((parseInt(hex.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Formats PostgreSQL commit time as ISO 8601 UTC with microseconds. */
export function formatCommitTime(micros: bigint): string {
  // Microseconds since 2000 stay below 2^53, exact in a double, until the year 2285.
  const value = Number(micros);
  if (!Number.isSafeInteger(value)) return formatCommitTimeBig(micros);
  const seconds = Math.floor(value / 1_000_000);
  if (seconds !== lastSecond) {
    // Commits of one second share the text up to the decimal point.
    lastSecond = seconds;
    lastSecondText = new Date(seconds * 1000 + PG_EPOCH_MS).toISOString().slice(0, -4);
  }
  return `${lastSecondText}${String(value - seconds * 1_000_000).padStart(6, '0')}Z`;
}

let lastSecond = Number.NaN;
/** ISO 8601 text of `lastSecond` up to and with the decimal point. */
let lastSecondText = '';

function formatCommitTimeBig(micros: bigint): string {
  const unixMicros = micros + BigInt(PG_EPOCH_MS) * 1000n;
  const millis = unixMicros / 1000n;
  const extraMicros = Number(((unixMicros % 1000n) + 1000n) % 1000n);
  const iso = new Date(Number(millis - (unixMicros < 0n && extraMicros !== 0 ? 1n : 0n))).toISOString();
  return `${iso.slice(0, 23)}${String(extraMicros).padStart(3, '0')}Z`;
}

/** Text pieces of one transaction, shared by all its events. */
interface TransactionText {
  readonly commitLsn: string;
  readonly createdAt: string;
}

let lastTransaction: TransactionInfo | null = null;
let lastTransactionText: TransactionText = { commitLsn: '', createdAt: '' };

/** Returns the text pieces of `transaction`, cached for the last one because its events arrive together. */
function transactionText(transaction: TransactionInfo): TransactionText {
  if (transaction !== lastTransaction) {
    lastTransaction = transaction;
    lastTransactionText = {
      commitLsn: formatLsn(transaction.commitLsn),
      createdAt: formatCommitTime(transaction.commitTimeMicros),
    };
  }
  return lastTransactionText;
}

/** JSON text of a relation's names, computed once per Relation message. */
interface RelationText {
  /** `"schema":...,"name":...` inside the `table` object. */
  readonly table: string;
  /** Each column's name as a JSON string followed by a colon. */
  readonly keys: readonly string[];
}

const relationTexts = new WeakMap<RelationInfo, RelationText>();

function relationText(relation: RelationInfo): RelationText {
  let text = relationTexts.get(relation);
  if (text === undefined) {
    text = {
      table: `"table":{"schema":${JSON.stringify(relation.schema)},"name":${JSON.stringify(relation.name)}}`,
      keys: relation.columns.map((column) => `${JSON.stringify(column.name)}:`),
    };
    relationTexts.set(relation, text);
  }
  return text;
}

const triggerTexts = new Map<string, string>();

function triggerText(triggerName: string): string {
  let text = triggerTexts.get(triggerName);
  if (text === undefined) {
    text = `"trigger":{"name":${JSON.stringify(triggerName)}}`;
    triggerTexts.set(triggerName, text);
  }
  return text;
}

/** Rendering settings of one trigger and webhook. */
export interface EnvelopeOptions extends EncodeOptions {
  /** Columns to keep (`payload.columns`); null or absent keeps all. */
  readonly projection?: ColumnProjection | null;
}

/**
 * Returns the row as a JSON object. Unchanged TOAST columns are left out and their
 * names pushed to `unchanged` when it is given.
 */
function encodeRow(
  relation: RelationInfo,
  tuple: readonly ColumnValue[],
  keyOnly: boolean,
  options: EnvelopeOptions,
  unchanged: string[] | null,
): string {
  const keys = relationText(relation).keys;
  const keep = options.projection?.keep;
  const count = Math.min(tuple.length, relation.columns.length);
  let json = '{';
  for (let i = 0; i < count; i++) {
    const column = relation.columns[i]!;
    if (keyOnly && !column.isKey) continue;
    if (keep !== undefined && keep[i] === false) continue;
    const value = tuple[i];
    if (value === UNCHANGED_TOAST) {
      unchanged?.push(column.name);
      continue;
    }
    const text = value === null || value === undefined ? 'null' : encodeValue(column.typeOid, value, options);
    json += json.length === 1 ? keys[i]! + text : `,${keys[i]!}${text}`;
  }
  return `${json}}`;
}

function eventJson(change: RowChange, options: EnvelopeOptions): string {
  let oldJson = 'null';
  let newJson = 'null';
  let extras = '';
  switch (change.op) {
    case 'INSERT':
      newJson = encodeRow(change.relation, change.newTuple, false, options, null);
      break;
    case 'UPDATE': {
      const unchanged: string[] = [];
      newJson = encodeRow(change.relation, change.newTuple, false, options, unchanged);
      if (unchanged.length > 0) extras += `,"unchanged_columns":${JSON.stringify(unchanged)}`;
      if (change.oldTuple !== null && change.oldKind !== null) {
        oldJson = encodeRow(change.relation, change.oldTuple, change.oldKind === 'key', options, null);
        extras += `,"old_row":"${change.oldKind}"`;
      }
      break;
    }
    case 'DELETE':
      oldJson = encodeRow(change.relation, change.oldTuple, change.oldKind === 'key', options, null);
      extras += `,"old_row":"${change.oldKind}"`;
      break;
    case 'TRUNCATE':
      extras += `,"truncate":{"cascade":${change.cascade},"restart_identity":${change.restartIdentity}}`;
      break;
    default: {
      const unreachable: never = change;
      throw new Error(`unknown change ${JSON.stringify(unreachable)}`);
    }
  }
  return `{"op":"${change.op}","data":{"old":${oldJson},"new":${newJson}},"session_variables":null${extras}}`;
}

/** Builds the envelope of a row change. `lsnText` is `change.lsn` already formatted, when the caller has it. */
export function buildEnvelope(
  triggerName: string,
  change: RowChange,
  options: EnvelopeOptions = {},
  lsnText: string = formatLsn(change.lsn),
): Envelope {
  const transaction = transactionText(change.transaction);
  const id = changeEventId(triggerName, change, transaction.commitLsn, lsnText);
  const head =
    `{"id":"${id}","created_at":"${transaction.createdAt}",${triggerText(triggerName)},` +
    `${relationText(change.relation).table},"event":${eventJson(change, options)},"delivery_info":`;
  const tail = `,"lsn":"${lsnText}","xid":${change.transaction.xid}}`;
  return { id, head, tail };
}

/** Returns the size in UTF-8 bytes of the first attempt's body (see `envelopeBody`) without building it. */
export function envelopeBytes(envelope: Envelope): number {
  return Buffer.byteLength(envelope.head) + Buffer.byteLength(envelope.tail) + FIRST_DELIVERY_INFO.length;
}

const FIRST_DELIVERY_INFO = '{"max_retries":null,"current_retry":0}';

/** Returns the request body for one attempt. */
export function envelopeBody(envelope: Envelope, maxRetries: number | null, currentRetry: number): string {
  return `${envelope.head}{"max_retries":${maxRetries === null ? 'null' : maxRetries},"current_retry":${currentRetry}}${envelope.tail}`;
}

/** A logical decoding message (`pg_logical_emit_message`) bound for one trigger. */
export interface MessageEvent {
  readonly prefix: string;
  readonly content: Buffer;
  readonly transactional: boolean;
  /** WAL position of the message record. */
  readonly lsn: Lsn;
  readonly ordinal: number;
  /** The enclosing transaction; null for a non-transactional message. */
  readonly transaction: TransactionInfo | null;
  /** Time used for `created_at` when there is no transaction, in Unix milliseconds. */
  readonly receivedAtMs: number;
}

// ignoreBOM keeps a leading byte order mark as content instead of dropping it.
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Builds the envelope of a message event: `event.op` is `MESSAGE` and
 * `event.data.message` carries prefix, content and `transactional`. Content is text
 * when it is valid UTF-8 without NUL characters, else base64, as `content_encoding` states.
 */
export function buildMessageEnvelope(triggerName: string, message: MessageEvent): Envelope {
  const commit = message.transaction === null ? 'none' : formatLsn(message.transaction.commitLsn);
  const id = uuidFromText(`${triggerName}\u0000message\u0000${commit}\u0000${formatLsn(message.lsn)}\u0000${message.ordinal}`);
  let content: string;
  let encoding: 'utf8' | 'base64';
  try {
    content = utf8Strict.decode(message.content);
    encoding = content.includes('\u0000') ? 'base64' : 'utf8';
  } catch {
    encoding = 'base64';
  }
  if (encoding === 'base64') content = message.content.toString('base64');
  const createdAt =
    message.transaction === null
      ? `${new Date(message.receivedAtMs).toISOString().slice(0, 23)}000Z`
      : formatCommitTime(message.transaction.commitTimeMicros);
  const messageJson =
    `{"prefix":${JSON.stringify(message.prefix)},"content":${JSON.stringify(content!)},` +
    `"content_encoding":"${encoding}","transactional":${message.transactional}}`;
  const head =
    `{"id":"${id}","created_at":"${createdAt}","trigger":{"name":${JSON.stringify(triggerName)}},"table":null,` +
    `"event":{"op":"MESSAGE","data":{"old":null,"new":null,"message":${messageJson}},"session_variables":null},` +
    `"delivery_info":`;
  const xid = message.transaction === null ? 'null' : String(message.transaction.xid);
  return { id, head, tail: `,"lsn":"${formatLsn(message.lsn)}","xid":${xid}}` };
}
