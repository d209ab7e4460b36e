/**
 * The at-least-once rule lives here.
 *
 * The slot may be confirmed up to the commit end LSN of transaction T only when T and
 * every transaction received before T have all their matching events delivered. A
 * transaction without matching events counts as delivered once its commit arrives.
 * When nothing received is undelivered and no transaction is open, the position the
 * server reports in a keepalive may be confirmed too, so the slot follows the server
 * and WAL does not pile up. The tracker never confirms a position merely received.
 */
import { type Lsn, maxLsn } from './lsn.js';

interface TrackedTransaction {
  /** Commit end LSN; null while the transaction is open, or when it was abandoned. */
  endLsn: Lsn | null;
  committed: boolean;
  pending: number;
  /** Whether the transaction sits in the held queue (it had at least one event). */
  queued: boolean;
}

/** A transaction handle returned by `begin()`. Opaque to callers. */
export type TransactionHandle = object;

export class CheckpointTracker {
  #confirmed: Lsn;
  /** Transactions in stream order that still block the confirmed position. */
  #queue: TrackedTransaction[] = [];
  #head = 0;
  #open: TrackedTransaction | null = null;
  #pendingTotal = 0;

  constructor(startLsn: Lsn) {
    this.#confirmed = startLsn;
  }

  /** Position that is safe to send as written, flushed and applied. */
  get confirmedLsn(): Lsn {
    return this.#confirmed;
  }

  /** Deliveries started and not yet finished, over all transactions. */
  get pendingEvents(): number {
    return this.#pendingTotal;
  }

  /** Transactions held because an event of theirs or of an earlier one is pending. */
  get heldTransactions(): number {
    return this.#queue.length - this.#head;
  }

  get hasOpenTransaction(): boolean {
    return this.#open !== null;
  }

  begin(): TransactionHandle {
    if (this.#open !== null) {
      throw new Error('checkpoint: BEGIN while a transaction is open');
    }
    const tx: TrackedTransaction = { endLsn: null, committed: false, pending: 0, queued: false };
    this.#open = tx;
    return tx;
  }

  /** Registers one delivery that must finish before the transaction counts as delivered. */
  addPending(handle: TransactionHandle): void {
    const tx = handle as TrackedTransaction;
    if (tx.committed) throw new Error('checkpoint: event added after COMMIT');
    if (!tx.queued) {
      tx.queued = true;
      this.#queue.push(tx);
    }
    tx.pending += 1;
    this.#pendingTotal += 1;
  }

  /** Records the commit; returns true when the confirmed position moved. */
  commit(handle: TransactionHandle, endLsn: Lsn): boolean {
    const tx = handle as TrackedTransaction;
    if (tx !== this.#open) throw new Error('checkpoint: COMMIT for a transaction that is not open');
    this.#open = null;
    tx.committed = true;
    tx.endLsn = endLsn;

    if (tx.queued) return this.#advance();

    // A transaction without pending events only moves the position once everything
    // before it is delivered, so it can ride on the last held transaction.
    const tail = this.#tail();
    if (tail !== undefined) {
      tail.endLsn = tail.endLsn === null ? endLsn : maxLsn(tail.endLsn, endLsn);
      return false;
    }
    return this.#moveTo(endLsn);
  }

  /**
   * Drops the open transaction after the connection broke mid-transaction. The server
   * resends it from the start, so the abandoned copy may finish its deliveries but
   * never moves the confirmed position.
   */
  abandonOpen(): void {
    const tx = this.#open;
    if (tx === null) return;
    this.#open = null;
    tx.committed = true;
    tx.endLsn = null;
    if (tx.queued) this.#advance();
  }

  /** Marks one delivery of the transaction as finished; returns true when the position moved. */
  complete(handle: TransactionHandle): boolean {
    const tx = handle as TrackedTransaction;
    if (tx.pending <= 0) throw new Error('checkpoint: more completions than events');
    tx.pending -= 1;
    this.#pendingTotal -= 1;
    return this.#advance();
  }

  /**
   * Takes the server's WAL position from a keepalive. It is confirmed only when
   * nothing received is undelivered and no transaction is open.
   */
  observeServerPosition(walEnd: Lsn): boolean {
    if (this.#open !== null || this.heldTransactions > 0) return false;
    return this.#moveTo(walEnd);
  }

  #tail(): TrackedTransaction | undefined {
    return this.#queue.length > this.#head ? this.#queue[this.#queue.length - 1] : undefined;
  }

  #advance(): boolean {
    let moved = false;
    while (this.#head < this.#queue.length) {
      const front = this.#queue[this.#head]!;
      if (!front.committed || front.pending > 0) break;
      this.#head += 1;
      if (front.endLsn !== null && this.#moveTo(front.endLsn)) moved = true;
    }
    this.#compact();
    return moved;
  }

  #moveTo(lsn: Lsn): boolean {
    if (lsn <= this.#confirmed) return false;
    this.#confirmed = lsn;
    return true;
  }

  #compact(): void {
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
