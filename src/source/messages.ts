/**
 * Decoded logical replication messages, independent of the output plugin. Column
 * values are PostgreSQL text output, `null` for SQL NULL, or UNCHANGED_TOAST.
 */
import type { Lsn } from '../core/lsn.js';

/** Stands for a TOASTed value that an update left unchanged; PostgreSQL does not resend it. */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged TOAST value');

export type ColumnValue = string | null | typeof UNCHANGED_TOAST;

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationColumn {
  readonly name: string;
  readonly typeOid: number;
  readonly typeMod: number;
  /** Part of the replica identity key. */
  readonly isKey: boolean;
}

export interface RelationInfo {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  readonly replicaIdentity: ReplicaIdentity;
  readonly columns: readonly RelationColumn[];
}

/** How much of the old row an update or delete carries: the key columns or all of them. */
export type OldRowKind = 'key' | 'full';

export type DecodedMessage =
  | { readonly tag: 'begin'; readonly finalLsn: Lsn; readonly commitTime: bigint; readonly xid: number }
  | { readonly tag: 'commit'; readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: bigint }
  | { readonly tag: 'origin'; readonly originLsn: Lsn; readonly name: string }
  | { readonly tag: 'relation'; readonly relation: RelationInfo }
  | { readonly tag: 'type'; readonly oid: number; readonly schema: string; readonly name: string }
  | { readonly tag: 'insert'; readonly relation: RelationInfo; readonly newTuple: ColumnValue[] }
  | {
      readonly tag: 'update';
      readonly relation: RelationInfo;
      readonly oldKind: OldRowKind | null;
      readonly oldTuple: ColumnValue[] | null;
      readonly newTuple: ColumnValue[];
    }
  | {
      readonly tag: 'delete';
      readonly relation: RelationInfo;
      readonly oldKind: OldRowKind;
      readonly oldTuple: ColumnValue[];
    }
  | {
      readonly tag: 'truncate';
      /** TRUNCATE options; null when the plugin does not report them (wal2json). */
      readonly cascade: boolean | null;
      readonly restartIdentity: boolean | null;
      readonly relations: readonly RelationInfo[];
    }
  | {
      readonly tag: 'message';
      readonly transactional: boolean;
      readonly lsn: Lsn;
      readonly prefix: string;
      readonly content: Buffer;
    };
