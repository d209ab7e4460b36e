/**
 * Connects decoded messages to deliveries and the checkpoint. Owns the in-flight
 * budget: when queued bodies exceed it, the source stops reading from the
 * socket until deliveries drain below half of it.
 */
import type { Logger } from 'pino';
import type { MessageTriggerConfig, TriggerConfig } from '../config/types.js';
import { CheckpointTracker, type TransactionHandle } from '../core/checkpoint.js';
import { type Lsn, formatLsn } from '../core/lsn.js';
import type { DecodedMessage, RelationInfo } from '../source/messages.js';
import type { DeliveryItem } from '../sinks/webhook/delivery-engine.js';
import { UNCHANGED_TOAST } from '../source/messages.js';
import type { RowChange, TransactionInfo } from './change.js';
import {
  type Envelope,
  type EnvelopeOptions,
  PG_EPOCH_MS,
  buildEnvelope,
  buildMessageEnvelope,
  envelopeBody,
  envelopeBytes,
} from './envelope.js';
import type { EncodeOptions } from './json-values.js';
import { BodyTransform, TriggerFilter, baseTypesFrom, renderUrl, type UrlTemplate } from '../filters/index.js';
import type { TypeRegistry } from './pg-types.js';
import { sleep } from '../core/retry.js';
import { Router } from './router.js';

export interface PipelineLimits {
  /** Pause reading when this many events are undelivered. */
  readonly maxInflightEvents: number;
  /** Pause reading when undelivered bodies take this many bytes. */
  readonly maxInflightBytes: number;
}

/** The part of a webhook's delivery engine that the pipeline uses. */
export interface DeliverySink {
  enqueue(item: DeliveryItem): void;
}

export interface PipelineDeps {
  readonly logger: Logger;
  readonly sinks: ReadonlyMap<string, DeliverySink>;
  readonly triggers: readonly TriggerConfig[];
  readonly limits: PipelineLimits;
  /** Called when the confirmed position moves, so the source can report it. */
  readonly onConfirmedAdvance: () => void;
  /** Called with true to stop reading from the socket and false to resume. */
  readonly onBackpressure: (paused: boolean) => void;
  /** Types of the columns; user types are loaded when a Relation message names them. */
  readonly types?: TypeRegistry;
  /** Value rendering per webhook name, such as `stringify_numeric`. */
  readonly encodeOptions?: (webhook: string) => EncodeOptions;
  /**
   * Reads the current text values of `columns` of the row with the given key values,
   * for `unchanged_toast: reselect`; resolves null when the row is gone.
   */
  readonly reselect?: (
    table: { readonly schema: string; readonly name: string },
    key: readonly { readonly name: string; readonly value: string }[],
    columns: readonly string[],
  ) => Promise<Map<string, string | null> | null>;
  /** Primary key column names by `schema\u0000table`, for ordering under REPLICA IDENTITY FULL. */
  readonly primaryKeys?: ReadonlyMap<string, readonly string[]>;
  /** Called for each event queued for delivery, for metrics. */
  readonly onEventQueued?: (trigger: string, webhook: string, op: string) => void;
  /** Triggers on logical decoding messages. Default none. */
  readonly messageTriggers?: readonly MessageTriggerConfig[];
  /** Webhook URLs with `{{ }}` placeholders, by webhook name. */
  readonly urlTemplates?: ReadonlyMap<string, UrlTemplate>;
  /** Receives errors thrown while replaying held messages; the caller stops streaming. */
  readonly onFatal?: (err: unknown) => void;
}

interface OpenTransaction {
  readonly info: TransactionInfo;
  readonly handle: TransactionHandle;
  lastLsn: Lsn;
  lsnOrdinal: number;
  /** Resent by the server after a reconnect and already received once: ignored. */
  readonly skip: boolean;
}

export class Pipeline {
  readonly tracker: CheckpointTracker;
  readonly #deps: PipelineDeps;
  readonly #router: Router;
  readonly #filters = new Map<string, TriggerFilter>();
  readonly #messageTransforms = new Map<string, BodyTransform>();
  /** Rendering options by trigger name and relation. */
  readonly #optionsCache = new Map<string, WeakMap<RelationInfo, EnvelopeOptions>>();
  readonly #keysCache = new WeakMap<RelationInfo, RelationKeys>();
  #open: OpenTransaction | null = null;
  /** Highest commit LSN received; transactions at or below it are resends. */
  #lastCommitLsn: Lsn;
  #inflightEvents = 0;
  #inflightBytes = 0;
  #budgetFull = false;
  #paused = false;
  /** Messages held while the types of a Relation message load; null when not loading. */
  #backlog: [Lsn, DecodedMessage][] | null = null;
  /** Bumped on connection loss so a type load in progress drops its stale backlog. */
  #generation = 0;
  #closed = false;

  constructor(startLsn: Lsn, deps: PipelineDeps) {
    this.tracker = new CheckpointTracker(startLsn);
    this.#deps = deps;
    this.#router = new Router(deps.triggers);
    const baseTypeOf = deps.types === undefined ? undefined : baseTypesFrom(deps.types);
    for (const trigger of deps.triggers) {
      this.#filters.set(trigger.name, new TriggerFilter(trigger, { logger: deps.logger, baseTypeOf }));
    }
    for (const trigger of deps.messageTriggers ?? []) {
      if (trigger.transform !== undefined) this.#messageTransforms.set(trigger.name, new BodyTransform(trigger.transform.body));
    }
    this.#lastCommitLsn = startLsn;
  }

  get inflightEvents(): number {
    return this.#inflightEvents;
  }

  get inflightBytes(): number {
    return this.#inflightBytes;
  }

  /** Handles one decoded message; `lsn` is the WAL position the server sent with it. */
  handle(lsn: Lsn, message: DecodedMessage): void {
    if (this.#backlog !== null) {
      this.#backlog.push([lsn, message]);
      return;
    }
    if (message.tag === 'relation' || message.tag === 'type') {
      const oids = message.tag === 'type' ? [message.oid] : message.relation.columns.map((c) => c.typeOid);
      // A Type message means the type may have changed (ALTER TYPE), so reload it.
      const missing = message.tag === 'type' ? oids : (this.#deps.types?.unknownOids(oids) ?? []);
      if (this.#deps.types !== undefined && missing.length > 0) this.#loadTypes(missing);
      return;
    }
    this.#apply(lsn, message);
  }

  /** Stops type loading retries; called on shutdown. */
  close(): void {
    this.#closed = true;
  }

  #apply(lsn: Lsn, message: DecodedMessage): void {
    switch (message.tag) {
      case 'begin':
        this.#begin(message.xid, message.finalLsn, message.commitTime);
        return;
      case 'commit':
        this.#commit(message.endLsn, message.commitLsn);
        return;
      case 'insert':
      case 'update':
      case 'delete':
      case 'truncate':
        this.#rowChange(lsn, message);
        return;
      case 'message':
        this.#message(message);
        return;
      case 'relation':
      case 'type':
      case 'origin':
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Takes the server position from a keepalive; returns true when the slot may follow it. */
  observeServerPosition(walEnd: Lsn): boolean {
    if (this.#open !== null || this.#backlog !== null) return false;
    return this.tracker.observeServerPosition(walEnd);
  }

  /** Forgets a transaction cut off by a lost connection; the server will resend it. */
  connectionLost(): void {
    if (this.#backlog !== null) {
      // The server resends these messages after the reconnect.
      this.#backlog = null;
      this.#generation += 1;
      this.#updatePause();
    }
    if (this.#open === null) return;
    if (!this.#open.skip) this.tracker.abandonOpen();
    this.#open = null;
  }

  #begin(xid: number, finalLsn: Lsn, commitTime: bigint): void {
    if (this.#open !== null) throw new Error(`BEGIN of xid ${xid} inside an open transaction`);
    const skip = finalLsn <= this.#lastCommitLsn;
    const handle = skip ? {} : this.tracker.begin();
    this.#open = {
      info: { xid, commitLsn: finalLsn, commitTimeMicros: commitTime },
      handle,
      lastLsn: -1n,
      lsnOrdinal: 0,
      skip,
    };
  }

  #commit(endLsn: Lsn, commitLsn: Lsn): void {
    const open = this.#open;
    if (open === null) throw new Error('COMMIT without BEGIN');
    this.#open = null;
    if (open.skip) return;
    if (commitLsn > this.#lastCommitLsn) this.#lastCommitLsn = commitLsn;
    if (this.tracker.commit(open.handle, endLsn)) this.#deps.onConfirmedAdvance();
  }

  /**
   * Builds the row changes of a message and routes them. The objects are written out
   * per operation, without spreading a shared base, because this runs for every change.
   */
  #rowChange(lsn: Lsn, message: Extract<DecodedMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>): void {
    const open = this.#open;
    if (open === null) throw new Error('row change outside a transaction');
    if (open.skip) return;
    const transaction = open.info;
    switch (message.tag) {
      case 'insert': {
        const { relation, newTuple } = message;
        const lsnOrdinal = this.#nextOrdinal(open, lsn);
        this.#route(open, { transaction, relation, lsn, lsnOrdinal, op: 'INSERT', newTuple });
        return;
      }
      case 'update': {
        const { relation, oldKind, oldTuple, newTuple } = message;
        const lsnOrdinal = this.#nextOrdinal(open, lsn);
        this.#route(open, { transaction, relation, lsn, lsnOrdinal, op: 'UPDATE', oldKind, oldTuple, newTuple });
        return;
      }
      case 'delete': {
        const { relation, oldKind, oldTuple } = message;
        const lsnOrdinal = this.#nextOrdinal(open, lsn);
        this.#route(open, { transaction, relation, lsn, lsnOrdinal, op: 'DELETE', oldKind, oldTuple });
        return;
      }
      case 'truncate': {
        const { cascade, restartIdentity } = message;
        for (const relation of message.relations) {
          const lsnOrdinal = this.#nextOrdinal(open, lsn);
          this.#route(open, { transaction, relation, lsn, lsnOrdinal, op: 'TRUNCATE', cascade, restartIdentity });
        }
        return;
      }
    }
  }

  #route(open: OpenTransaction, change: RowChange): void {
    const triggers = this.#router.match(change.relation.schema, change.relation.name, change.op);
    for (const trigger of triggers) {
      const filter = this.#filters.get(trigger.name);
      if (filter !== undefined && !filter.accepts(change)) continue;
      this.#dispatch(open.handle, trigger, change, filter);
    }
  }

  #message(message: Extract<DecodedMessage, { tag: 'message' }>): void {
    const triggers = (this.#deps.messageTriggers ?? []).filter((trigger) => trigger.messagePrefix === message.prefix);
    if (triggers.length === 0) return;
    const open = this.#open;
    if (open !== null) {
      // Transactional messages arrive inside their transaction and are confirmed with it.
      if (open.skip) return;
      const ordinal = this.#nextOrdinal(open, message.lsn);
      for (const trigger of triggers) {
        this.#dispatchMessage(open.handle, trigger, message, open.info, ordinal);
      }
      return;
    }
    // A non-transactional message is its own unit: the slot passes it once it is delivered.
    if (message.lsn <= this.#lastCommitLsn) return;
    const handle = this.tracker.begin();
    for (const trigger of triggers) this.#dispatchMessage(handle, trigger, message, null, 0);
    this.#lastCommitLsn = message.lsn;
    if (this.tracker.commit(handle, message.lsn)) this.#deps.onConfirmedAdvance();
  }

  #nextOrdinal(open: OpenTransaction, lsn: Lsn): number {
    if (lsn === open.lastLsn) {
      open.lsnOrdinal += 1;
    } else {
      open.lastLsn = lsn;
      open.lsnOrdinal = 0;
    }
    return open.lsnOrdinal;
  }

  #dispatchMessage(
    handle: TransactionHandle,
    trigger: MessageTriggerConfig,
    message: Extract<DecodedMessage, { tag: 'message' }>,
    transaction: TransactionInfo | null,
    ordinal: number,
  ): void {
    const envelope = buildMessageEnvelope(trigger.name, {
      prefix: message.prefix,
      content: message.content,
      transactional: message.transactional,
      lsn: message.lsn,
      ordinal,
      transaction,
      receivedAtMs: Date.now(),
    });
    const key = JSON.stringify(['message', message.prefix]);
    this.#enqueue(handle, trigger.webhook, envelope, {
      triggerName: trigger.name,
      rowKey: key,
      tableKey: key,
      barrier: false,
      table: null,
      op: 'MESSAGE',
      lsn: formatLsn(message.lsn),
      transform: this.#messageTransforms.get(trigger.name) ?? null,
      commitTimeMs: transaction === null ? undefined : Number(transaction.commitTimeMicros / 1000n) + PG_EPOCH_MS,
    });
  }

  #enqueue(
    handle: TransactionHandle,
    webhook: string,
    envelope: Envelope,
    item: {
      triggerName: string;
      rowKey: string;
      tableKey: string;
      barrier: boolean;
      table: { schema: string; name: string } | null;
      op: string;
      lsn: string;
      transform: BodyTransform | null;
      /** Returns the envelope with reselected TOAST values; null keeps `envelope`. */
      reselected?: (() => Promise<Envelope>) | null;
      commitTimeMs: number | undefined;
    },
  ): void {
    const sink = this.#deps.sinks.get(webhook);
    if (sink === undefined) throw new Error(`trigger ${item.triggerName}: no sink for webhook ${webhook}`);
    const bytes = envelopeBytes(envelope);
    const transform = item.transform;
    const reselected = item.reselected ?? null;
    const urlTemplate = this.#deps.urlTemplates?.get(webhook);
    this.tracker.addPending(handle);
    this.#inflightEvents += 1;
    this.#inflightBytes += bytes;
    this.#deps.onEventQueued?.(item.triggerName, webhook, item.op);
    // Every item gets the same fields in the same order, which keeps property reads
    // on the delivery path monomorphic.
    sink.enqueue({
      envelope,
      triggerName: item.triggerName,
      rowKey: item.rowKey,
      tableKey: item.tableKey,
      barrier: item.barrier,
      bytes,
      table: item.table,
      op: item.op,
      lsn: item.lsn,
      commitTimeMs: item.commitTimeMs,
      render:
        transform === null && !reselected
          ? undefined
          : async (currentRetry: number, maxRetries: number | null) => {
              const source = reselected ? await reselected() : envelope;
              const body = envelopeBody(source, maxRetries, currentRetry);
              return transform === null ? body : transform.renderBody(body);
            },
      resolveUrl: urlTemplate === undefined ? undefined : () => renderUrl(urlTemplate, envelopeBody(envelope, null, 0)),
      onDone: () => this.#delivered(handle, bytes),
    });
    this.#checkBudget();
  }

  #dispatch(handle: TransactionHandle, trigger: TriggerConfig, change: RowChange, filter: TriggerFilter | undefined): void {
    const relation = change.relation;
    const options = this.#envelopeOptions(trigger, relation, filter);
    const lsnText = formatLsn(change.lsn);
    const envelope = buildEnvelope(trigger.name, change, options, lsnText);
    let reselected: (() => Promise<Envelope>) | null = null;
    if (trigger.unchangedToast === 'reselect' && change.op === 'UPDATE' && this.#deps.reselect !== undefined) {
      const reselect = this.#deps.reselect;
      if (change.newTuple.includes(UNCHANGED_TOAST)) {
        let pending: Promise<Envelope> | null = null;
        reselected = () => {
          pending ??= reselectEnvelope(trigger.name, change, options, reselect).catch((err: unknown) => {
            pending = null;
            throw err;
          });
          return pending;
        };
      }
    }
    const keys = this.#relationKeys(relation);
    this.#enqueue(handle, trigger.webhook, envelope, {
      triggerName: trigger.name,
      rowKey: rowKeyOf(change, keys) ?? keys.tableKey,
      tableKey: keys.tableKey,
      barrier: change.op === 'TRUNCATE',
      table: keys.table,
      op: change.op,
      lsn: lsnText,
      transform: filter?.bodyTransform ?? null,
      reselected,
      commitTimeMs: Math.floor(Number(change.transaction.commitTimeMicros) / 1000) + PG_EPOCH_MS,
    });
  }

  /** Returns the rendering options of a trigger for a relation, the same object each time. */
  #envelopeOptions(trigger: TriggerConfig, relation: RelationInfo, filter: TriggerFilter | undefined): EnvelopeOptions {
    let byRelation = this.#optionsCache.get(trigger.name);
    if (byRelation === undefined) {
      byRelation = new WeakMap();
      this.#optionsCache.set(trigger.name, byRelation);
    }
    let options = byRelation.get(relation);
    if (options === undefined) {
      options = { ...this.#deps.encodeOptions?.(trigger.webhook), projection: filter?.projection(relation) ?? null };
      byRelation.set(relation, options);
    }
    return options;
  }

  /** Returns the ordering keys of a relation, computed once per Relation message. */
  #relationKeys(relation: RelationInfo): RelationKeys {
    let keys = this.#keysCache.get(relation);
    if (keys === undefined) {
      keys = relationKeysOf(relation, this.#deps.primaryKeys);
      this.#keysCache.set(relation, keys);
    }
    return keys;
  }

  #delivered(handle: TransactionHandle, bytes: number): void {
    this.#inflightEvents -= 1;
    this.#inflightBytes -= bytes;
    if (this.tracker.complete(handle)) this.#deps.onConfirmedAdvance();
    this.#checkBudget();
  }

  #checkBudget(): void {
    const { maxInflightEvents, maxInflightBytes } = this.#deps.limits;
    if (!this.#budgetFull) {
      if (this.#inflightEvents >= maxInflightEvents || this.#inflightBytes >= maxInflightBytes) {
        this.#budgetFull = true;
        this.#deps.logger.debug(
          { inflightEvents: this.#inflightEvents, inflightBytes: this.#inflightBytes },
          'in-flight budget full, pausing replication reads',
        );
        this.#updatePause();
      }
    } else if (this.#inflightEvents <= maxInflightEvents / 2 && this.#inflightBytes <= maxInflightBytes / 2) {
      this.#budgetFull = false;
      this.#updatePause();
    }
  }

  #updatePause(): void {
    const paused = this.#budgetFull || this.#backlog !== null;
    if (paused === this.#paused) return;
    this.#paused = paused;
    this.#deps.onBackpressure(paused);
  }

  /**
   * Loads column types the registry does not know yet. Messages that arrive meanwhile
   * wait in the backlog, in order, and reading from the socket pauses.
   */
  #loadTypes(oids: number[]): void {
    const types = this.#deps.types!;
    const generation = this.#generation;
    this.#backlog = [];
    this.#updatePause();
    void (async () => {
      for (let retry = 0; ; retry++) {
        try {
          await types.load(oids);
          break;
        } catch (err) {
          if (this.#closed) return;
          const delayMs = Math.min(30_000, 500 * 2 ** retry);
          this.#deps.logger.warn({ err, oids, nextDelayMs: delayMs }, 'loading column types failed, will retry');
          await sleep(delayMs);
        }
      }
      if (generation !== this.#generation || this.#backlog === null) return;
      const backlog = this.#backlog;
      this.#backlog = null;
      for (let index = 0; index < backlog.length; index++) {
        const [lsn, message] = backlog[index]!;
        this.handle(lsn, message);
        const next = this.#backlog as [Lsn, DecodedMessage][] | null;
        if (next !== null) {
          // Another Relation message needs a load: keep the rest behind it, in order.
          next.push(...backlog.slice(index + 1));
          return;
        }
      }
      this.#updatePause();
    })().catch((err: unknown) => this.#deps.onFatal?.(err));
  }
}

/** Parts of the ordering keys of one relation's changes. */
interface RelationKeys {
  readonly table: { readonly schema: string; readonly name: string };
  /** Ordering key under `ordering: table`, and the row key when the row key is unknown. */
  readonly tableKey: string;
  /** Positions of the columns that identify a row, empty when the row key is unknown. */
  readonly keyColumns: readonly number[];
}

/**
 * Finds the columns that identify a row of the relation. Under REPLICA IDENTITY FULL,
 * PostgreSQL flags every column as part of the identity, so those flags would give each
 * version of a row its own key. The primary key names from the catalog
 * (`primaryKeys`) are used instead, and without them the table.
 */
function relationKeysOf(relation: RelationInfo, primaryKeys: ReadonlyMap<string, readonly string[]> | undefined): RelationKeys {
  const table = { schema: relation.schema, name: relation.name };
  const tableKey = JSON.stringify([relation.schema, relation.name]);
  const full = relation.replicaIdentity === 'full';
  const keyNames = full ? primaryKeys?.get(`${relation.schema}\u0000${relation.name}`) : undefined;
  const keyColumns: number[] = [];
  if (!full || keyNames !== undefined) {
    relation.columns.forEach((column, index) => {
      if (keyNames === undefined ? column.isKey : keyNames.includes(column.name)) keyColumns.push(index);
    });
  }
  return { table, tableKey, keyColumns };
}

/**
 * Returns the ordering key of a row change: its table and key values, from the new row
 * for inserts and updates and from the old row for deletes. Returns undefined when the
 * key is unknown, so the caller orders by table.
 */
function rowKeyOf(change: RowChange, keys: RelationKeys): string | undefined {
  if (change.op === 'TRUNCATE' || keys.keyColumns.length === 0) return undefined;
  // NOTE: an update that changes the key is ordered under its new key, so it may
  // overtake a still pending event of the old key.
  const tuple = change.op === 'DELETE' ? change.oldTuple : change.newTuple;
  // PostgreSQL text cannot contain NUL, so NUL separates the values. The marker after
  // it is 's' for a text value and 'n' for a missing one, so the two cannot collide.
  let key = keys.tableKey;
  for (const index of keys.keyColumns) {
    const value = tuple[index];
    key += typeof value === 'string' ? `\u0000s${value}` : '\u0000n';
  }
  return key;
}

/**
 * Rebuilds an update's envelope with its unchanged TOAST values read from the table by
 * key. The values are the row's current ones, which may be newer than the change. When
 * the row is gone, the original envelope (with `unchanged_columns`) is kept.
 */
async function reselectEnvelope(
  triggerName: string,
  change: Extract<RowChange, { op: 'UPDATE' }>,
  options: EnvelopeOptions,
  reselect: NonNullable<PipelineDeps['reselect']>,
): Promise<Envelope> {
  const columns = change.relation.columns;
  const key: { name: string; value: string }[] = [];
  const missing: string[] = [];
  columns.forEach((column, index) => {
    const value = change.newTuple[index];
    if (column.isKey && typeof value === 'string') key.push({ name: column.name, value });
    if (value === UNCHANGED_TOAST) missing.push(column.name);
  });
  const values = key.length === 0 ? null : await reselect(change.relation, key, missing);
  if (values === null) return buildEnvelope(triggerName, change, options);
  const newTuple = change.newTuple.map((value, index) => {
    const name = columns[index]?.name;
    return value === UNCHANGED_TOAST && name !== undefined && values.has(name) ? (values.get(name) ?? null) : value;
  });
  return buildEnvelope(triggerName, { ...change, newTuple }, options);
}
