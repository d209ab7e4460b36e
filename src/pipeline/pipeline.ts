/**
 * Connects decoded messages to deliveries and the checkpoint. Owns the in-flight
 * budget: when queued bodies exceed it, the source is told to stop reading from the
 * socket until deliveries drain below half of it.
 */
import type { Logger } from 'pino';
import type { TriggerConfig } from '../config/types.js';
import { CheckpointTracker, type TransactionHandle } from '../core/checkpoint.js';
import { type Lsn, formatLsn } from '../core/lsn.js';
import type { DecodedMessage } from '../source/messages.js';
import type { DeliveryItem } from '../sinks/webhook/delivery-engine.js';
import { UNCHANGED_TOAST } from '../source/messages.js';
import type { RowChange, TransactionInfo } from './change.js';
import { buildEnvelope, envelopeBody } from './envelope.js';
import { Router } from './router.js';

export interface PipelineLimits {
  /** Pause reading when this many events are undelivered. */
  readonly maxInflightEvents: number;
  /** Pause reading when undelivered bodies take this many bytes. */
  readonly maxInflightBytes: number;
}

/** What the pipeline needs of a webhook's delivery engine. */
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
  #open: OpenTransaction | null = null;
  /** Highest commit LSN received; transactions at or below it are resends. */
  #lastCommitLsn: Lsn;
  #inflightEvents = 0;
  #inflightBytes = 0;
  #paused = false;

  constructor(startLsn: Lsn, deps: PipelineDeps) {
    this.tracker = new CheckpointTracker(startLsn);
    this.#deps = deps;
    this.#router = new Router(deps.triggers);
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
    switch (message.tag) {
      case 'begin':
        this.#begin(message.xid, message.finalLsn, message.commitTime);
        return;
      case 'commit':
        this.#commit(message.endLsn, message.commitLsn);
        return;
      case 'insert':
        this.#route(lsn, (base) => ({ ...base, op: 'INSERT', newTuple: message.newTuple }), message.relation);
        return;
      case 'update':
        this.#route(
          lsn,
          (base) => ({
            ...base,
            op: 'UPDATE',
            oldKind: message.oldKind,
            oldTuple: message.oldTuple,
            newTuple: message.newTuple,
          }),
          message.relation,
        );
        return;
      case 'delete':
        this.#route(
          lsn,
          (base) => ({ ...base, op: 'DELETE', oldKind: message.oldKind, oldTuple: message.oldTuple }),
          message.relation,
        );
        return;
      case 'truncate':
        for (const relation of message.relations) {
          this.#route(
            lsn,
            (base) => ({ ...base, op: 'TRUNCATE', cascade: message.cascade, restartIdentity: message.restartIdentity }),
            relation,
          );
        }
        return;
      case 'relation':
      case 'type':
      case 'origin':
      case 'message':
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Takes the server position from a keepalive; returns true when the slot may follow it. */
  observeServerPosition(walEnd: Lsn): boolean {
    if (this.#open !== null) return false;
    return this.tracker.observeServerPosition(walEnd);
  }

  /** Forgets a transaction cut off by a lost connection; the server will resend it. */
  connectionLost(): void {
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

  #route(
    lsn: Lsn,
    build: (base: Omit<RowChange & { op: 'INSERT' }, 'op' | 'newTuple'>) => RowChange,
    relation: RowChange['relation'],
  ): void {
    const open = this.#open;
    if (open === null) throw new Error('row change outside a transaction');
    if (open.skip) return;
    if (lsn === open.lastLsn) {
      open.lsnOrdinal += 1;
    } else {
      open.lastLsn = lsn;
      open.lsnOrdinal = 0;
    }
    const change = build({ transaction: open.info, relation, lsn, lsnOrdinal: open.lsnOrdinal });
    const triggers = this.#router.match(relation.schema, relation.name, change.op);
    for (const trigger of triggers) this.#dispatch(open.handle, trigger, change);
  }

  #dispatch(handle: TransactionHandle, trigger: TriggerConfig, change: RowChange): void {
    const sink = this.#deps.sinks.get(trigger.webhook);
    if (sink === undefined) throw new Error(`trigger ${trigger.name}: no sink for webhook ${trigger.webhook}`);
    const envelope = buildEnvelope(trigger.name, change);
    const bytes = envelopeBody(envelope, null, 0).length;
    const table = { schema: change.relation.schema, name: change.relation.name };
    const tableKey = JSON.stringify([table.schema, table.name]);
    this.tracker.addPending(handle);
    this.#inflightEvents += 1;
    this.#inflightBytes += bytes;
    sink.enqueue({
      envelope,
      triggerName: trigger.name,
      rowKey: rowKeyOf(change) ?? tableKey,
      tableKey,
      barrier: change.op === 'TRUNCATE',
      bytes,
      table,
      op: change.op,
      lsn: formatLsn(change.lsn),
      onDone: () => this.#delivered(handle, bytes),
    });
    this.#checkBudget();
  }

  #delivered(handle: TransactionHandle, bytes: number): void {
    this.#inflightEvents -= 1;
    this.#inflightBytes -= bytes;
    if (this.tracker.complete(handle)) this.#deps.onConfirmedAdvance();
    this.#checkBudget();
  }

  #checkBudget(): void {
    const { maxInflightEvents, maxInflightBytes } = this.#deps.limits;
    if (!this.#paused) {
      if (this.#inflightEvents >= maxInflightEvents || this.#inflightBytes >= maxInflightBytes) {
        this.#paused = true;
        this.#deps.logger.debug(
          { inflightEvents: this.#inflightEvents, inflightBytes: this.#inflightBytes },
          'in-flight budget full, pausing replication reads',
        );
        this.#deps.onBackpressure(true);
      }
    } else if (this.#inflightEvents <= maxInflightEvents / 2 && this.#inflightBytes <= maxInflightBytes / 2) {
      this.#paused = false;
      this.#deps.onBackpressure(false);
    }
  }
}

/**
 * Returns the ordering key of a row change: its table and replica identity key values,
 * from the new row for inserts and updates and from the old row for deletes. Returns
 * undefined when the relation has no key columns, so the caller orders by table.
 */
function rowKeyOf(change: RowChange): string | undefined {
  if (change.op === 'TRUNCATE') return undefined;
  // NOTE: an update that changes the key is ordered under its new key, so it may
  // overtake a still pending event of the old key.
  const tuple = change.op === 'DELETE' ? change.oldTuple : change.newTuple;
  const parts: unknown[] = [change.relation.schema, change.relation.name];
  change.relation.columns.forEach((column, index) => {
    if (!column.isKey) return;
    const value = tuple[index];
    parts.push(value === UNCHANGED_TOAST ? null : (value ?? null));
  });
  return parts.length > 2 ? JSON.stringify(parts) : undefined;
}
