/**
 * Decoder for the pgoutput logical replication protocol, version 1, following
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html.
 *
 * Column values stay in PostgreSQL's text output form. Nothing here parses them into
 * JavaScript numbers or dates, because that loses digits, microseconds and time zones.
 */
import type { Lsn } from '../core/lsn.js';
import type {
  ColumnValue,
  DecodedMessage,
  RelationColumn,
  RelationInfo,
  ReplicaIdentity,
} from './messages.js';
import { UNCHANGED_TOAST } from './messages.js';

/** First byte of each pgoutput message. */
const enum MessageTag {
  Begin = 0x42, // 'B'
  Commit = 0x43, // 'C'
  Origin = 0x4f, // 'O'
  Relation = 0x52, // 'R'
  Type = 0x59, // 'Y'
  Insert = 0x49, // 'I'
  Update = 0x55, // 'U'
  Delete = 0x44, // 'D'
  Truncate = 0x54, // 'T'
  Message = 0x4d, // 'M'
}

/** Marker bytes inside Update and Delete messages. */
const enum TupleMarker {
  New = 0x4e, // 'N'
  Key = 0x4b, // 'K'
  Old = 0x4f, // 'O'
}

/** Kind byte of each column in TupleData. */
const enum ColumnKind {
  Null = 0x6e, // 'n'
  UnchangedToast = 0x75, // 'u'
  Text = 0x74, // 't'
  Binary = 0x62, // 'b'
}

const TRUNCATE_CASCADE = 1;
const TRUNCATE_RESTART_IDENTITY = 2;
const MESSAGE_TRANSACTIONAL = 1;
const COLUMN_FLAG_KEY = 1;

class Reader {
  #buffer: Buffer;
  #offset = 0;

  constructor(buffer: Buffer) {
    this.#buffer = buffer;
  }

  uint8(): number {
    const value = this.#buffer.readUInt8(this.#offset);
    this.#offset += 1;
    return value;
  }

  int16(): number {
    const value = this.#buffer.readInt16BE(this.#offset);
    this.#offset += 2;
    return value;
  }

  int32(): number {
    const value = this.#buffer.readInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  uint32(): number {
    const value = this.#buffer.readUInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  int64(): bigint {
    const value = this.#buffer.readBigInt64BE(this.#offset);
    this.#offset += 8;
    return value;
  }

  lsn(): Lsn {
    const value = this.#buffer.readBigUInt64BE(this.#offset);
    this.#offset += 8;
    return value;
  }

  /** Reads a NUL-terminated string. */
  cstring(): string {
    const end = this.#buffer.indexOf(0, this.#offset);
    if (end < 0) throw new RangeError('pgoutput: unterminated string');
    const value = this.#buffer.toString('utf8', this.#offset, end);
    this.#offset = end + 1;
    return value;
  }

  /**
   * Reads `length` bytes of UTF-8 text. Buffer's decoder keeps a leading byte order
   * mark, which TextDecoder would drop from the value.
   */
  text(length: number): string {
    const end = this.#offset + length;
    if (length < 0 || end > this.#buffer.length) {
      throw new RangeError('pgoutput: message shorter than its length fields');
    }
    const value = this.#buffer.toString('utf8', this.#offset, end);
    this.#offset = end;
    return value;
  }

  bytes(length: number): Buffer {
    if (this.#offset + length > this.#buffer.length) {
      throw new RangeError('pgoutput: message shorter than its length fields');
    }
    const value = this.#buffer.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }
}

const REPLICA_IDENTITIES: Record<number, ReplicaIdentity> = {
  0x64: 'default', // 'd'
  0x6e: 'nothing', // 'n'
  0x66: 'full', // 'f'
  0x69: 'index', // 'i'
};

/**
 * Stateful decoder: Relation and Type messages fill caches that later row messages
 * refer to by OID. One decoder belongs to one replication connection, because the
 * server resends Relation messages after each reconnect.
 */
export class PgoutputDecoder {
  readonly #relations = new Map<number, RelationInfo>();
  readonly #typeNames = new Map<number, { schema: string; name: string }>();

  decode(buffer: Buffer): DecodedMessage {
    const reader = new Reader(buffer);
    const tag = reader.uint8();
    switch (tag) {
      case MessageTag.Begin:
        return {
          tag: 'begin',
          finalLsn: reader.lsn(),
          commitTime: reader.int64(),
          xid: reader.uint32(),
        };
      case MessageTag.Commit: {
        reader.uint8(); // flags, unused by the protocol
        return {
          tag: 'commit',
          commitLsn: reader.lsn(),
          endLsn: reader.lsn(),
          commitTime: reader.int64(),
        };
      }
      case MessageTag.Origin:
        return { tag: 'origin', originLsn: reader.lsn(), name: reader.cstring() };
      case MessageTag.Relation:
        return this.#relation(reader);
      case MessageTag.Type: {
        const oid = reader.uint32();
        const schema = reader.cstring();
        const name = reader.cstring();
        this.#typeNames.set(oid, { schema, name });
        return { tag: 'type', oid, schema, name };
      }
      case MessageTag.Insert:
        return this.#insert(reader);
      case MessageTag.Update:
        return this.#update(reader);
      case MessageTag.Delete:
        return this.#delete(reader);
      case MessageTag.Truncate:
        return this.#truncate(reader);
      case MessageTag.Message: {
        const flags = reader.uint8();
        const lsn = reader.lsn();
        const prefix = reader.cstring();
        const content = Buffer.from(reader.bytes(reader.int32()));
        return { tag: 'message', transactional: (flags & MESSAGE_TRANSACTIONAL) !== 0, lsn, prefix, content };
      }
      default:
        throw new RangeError(`pgoutput: unknown message tag 0x${tag.toString(16)}`);
    }
  }

  #relation(reader: Reader): DecodedMessage {
    const oid = reader.uint32();
    const schema = reader.cstring();
    const name = reader.cstring();
    const identityByte = reader.uint8();
    const replicaIdentity = REPLICA_IDENTITIES[identityByte];
    if (replicaIdentity === undefined) {
      throw new RangeError(`pgoutput: unknown replica identity 0x${identityByte.toString(16)}`);
    }
    const count = reader.int16();
    const columns: RelationColumn[] = [];
    for (let i = 0; i < count; i++) {
      const flags = reader.uint8();
      const columnName = reader.cstring();
      const typeOid = reader.uint32();
      const typeMod = reader.int32();
      columns.push({ name: columnName, typeOid, typeMod, isKey: (flags & COLUMN_FLAG_KEY) !== 0 });
    }
    const relation: RelationInfo = { oid, schema, name, replicaIdentity, columns };
    this.#relations.set(oid, relation);
    return { tag: 'relation', relation };
  }

  #relationFor(oid: number): RelationInfo {
    const relation = this.#relations.get(oid);
    if (relation === undefined) {
      throw new RangeError(`pgoutput: row for relation ${oid} arrived before its Relation message`);
    }
    return relation;
  }

  #insert(reader: Reader): DecodedMessage {
    const relation = this.#relationFor(reader.uint32());
    expectMarker(reader, TupleMarker.New);
    return { tag: 'insert', relation, newTuple: readTuple(reader) };
  }

  #update(reader: Reader): DecodedMessage {
    const relation = this.#relationFor(reader.uint32());
    let marker = reader.uint8();
    let oldTuple: ColumnValue[] | null = null;
    let oldKind: 'key' | 'full' | null = null;
    if (marker === TupleMarker.Key || marker === TupleMarker.Old) {
      oldKind = marker === TupleMarker.Key ? 'key' : 'full';
      oldTuple = readTuple(reader);
      marker = reader.uint8();
    }
    if (marker !== TupleMarker.New) {
      throw new RangeError(`pgoutput: expected 'N' in Update, got 0x${marker.toString(16)}`);
    }
    return { tag: 'update', relation, oldKind, oldTuple, newTuple: readTuple(reader) };
  }

  #delete(reader: Reader): DecodedMessage {
    const relation = this.#relationFor(reader.uint32());
    const marker = reader.uint8();
    if (marker !== TupleMarker.Key && marker !== TupleMarker.Old) {
      throw new RangeError(`pgoutput: expected 'K' or 'O' in Delete, got 0x${marker.toString(16)}`);
    }
    const oldKind = marker === TupleMarker.Key ? 'key' : 'full';
    return { tag: 'delete', relation, oldKind, oldTuple: readTuple(reader) };
  }

  #truncate(reader: Reader): DecodedMessage {
    const count = reader.int32();
    const options = reader.uint8();
    const relations: RelationInfo[] = [];
    for (let i = 0; i < count; i++) relations.push(this.#relationFor(reader.uint32()));
    return {
      tag: 'truncate',
      cascade: (options & TRUNCATE_CASCADE) !== 0,
      restartIdentity: (options & TRUNCATE_RESTART_IDENTITY) !== 0,
      relations,
    };
  }
}

function expectMarker(reader: Reader, expected: TupleMarker): void {
  const marker = reader.uint8();
  if (marker !== expected) {
    throw new RangeError(`pgoutput: expected marker 0x${expected.toString(16)}, got 0x${marker.toString(16)}`);
  }
}

function readTuple(reader: Reader): ColumnValue[] {
  const count = reader.int16();
  const values: ColumnValue[] = [];
  for (let i = 0; i < count; i++) {
    const kind = reader.uint8();
    switch (kind) {
      case ColumnKind.Null:
        values.push(null);
        break;
      case ColumnKind.UnchangedToast:
        values.push(UNCHANGED_TOAST);
        break;
      case ColumnKind.Text:
        values.push(reader.text(reader.int32()));
        break;
      case ColumnKind.Binary:
        // Only sent when the subscriber requests binary mode, which walhook never does.
        throw new RangeError('pgoutput: binary column values are not supported');
      default:
        throw new RangeError(`pgoutput: unknown column kind 0x${kind.toString(16)}`);
    }
  }
  return values;
}
