/**
 * A row change inside a transaction, as the router and the envelope builder see it.
 */
import type { Lsn } from '../core/lsn.js';
import type { ColumnValue, OldRowKind, RelationInfo } from '../source/messages.js';

export type ChangeOp = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';

export interface TransactionInfo {
  readonly xid: number;
  /** LSN of the commit record (the Begin message's final LSN). */
  readonly commitLsn: Lsn;
  /** Commit time in microseconds since 2000-01-01 00:00 UTC, as PostgreSQL sends it. */
  readonly commitTimeMicros: bigint;
}

interface ChangeBase {
  readonly transaction: TransactionInfo;
  readonly relation: RelationInfo;
  /** WAL position of the change record. */
  readonly lsn: Lsn;
  /** Counts changes before this one that share its LSN (a multi-insert writes one record). */
  readonly lsnOrdinal: number;
}

export type RowChange =
  | (ChangeBase & { readonly op: 'INSERT'; readonly newTuple: readonly ColumnValue[] })
  | (ChangeBase & {
      readonly op: 'UPDATE';
      readonly oldKind: OldRowKind | null;
      readonly oldTuple: readonly ColumnValue[] | null;
      readonly newTuple: readonly ColumnValue[];
    })
  | (ChangeBase & {
      readonly op: 'DELETE';
      readonly oldKind: OldRowKind;
      readonly oldTuple: readonly ColumnValue[];
    })
  | (ChangeBase & {
      readonly op: 'TRUNCATE';
      /** TRUNCATE options; null when the plugin does not report them (wal2json). */
      readonly cascade: boolean | null;
      readonly restartIdentity: boolean | null;
    });
