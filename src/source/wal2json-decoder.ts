/**
 * Decoder for wal2json format version 2 into the plugin-independent DecodedMessage
 * shapes that pgoutput also produces. Checked against wal2json 2.5 (Debian's
 * postgresql-15-wal2json) with the options that wal2jsonStartOptions() sets.
 *
 * wal2json writes one JSON object per message: "B" and "C" around each transaction,
 * "I", "U", "D" and "T" for changes and "M" for logical decoding messages. It sends no
 * Relation messages, so this decoder keeps the shape of each table (columns, key
 * columns, replica identity) from the catalog rows it starts with and from the
 * messages themselves, and emits a 'relation' message whenever that shape changes.
 *
 * Numbers are parsed with parseExactJson, never JSON.parse, so int8 and numeric
 * values keep every digit.
 */
import { createHash } from 'node:crypto';
import { type Lsn, formatLsn, parseLsn } from '../core/lsn.js';
import { PG_EPOCH_MS } from '../pipeline/envelope.js';
import {
  type ExactJson,
  JsonNumber,
  isAmbiguousWal2jsonNull,
  parseExactJson,
  wal2jsonColumnText,
} from '../pipeline/wal2json-parse.js';
import type {
  ColumnValue,
  DecodedMessage,
  OldRowKind,
  RelationColumn,
  RelationInfo,
  ReplicaIdentity,
} from './messages.js';
import { UNCHANGED_TOAST } from './messages.js';

/** A column whose null may stand for NaN, Infinity or -Infinity. */
export interface AmbiguousNullColumn {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  readonly typeOid: number;
}

export interface Wal2jsonDecoderOptions {
  /**
   * Shapes of the streamed tables as the catalog describes them when streaming starts,
   * with `isKey` on the replica identity key columns (the primary key under FULL).
   * They supply the columns that an update leaves out because their TOAST values did
   * not change, and the key columns before the first update or delete arrives.
   */
  readonly tables?: readonly RelationInfo[];
  /** Called once per column, on its first null that may be NaN or an infinity. */
  readonly onAmbiguousNull?: (column: AmbiguousNullColumn) => void;
}

/** One column of a wal2json "columns" or "identity" array. */
interface MessageColumn {
  readonly name: string;
  readonly typeOid: number;
  readonly value: ColumnValue;
}

/** Decoder state of one table. */
interface TableState {
  readonly schema: string;
  readonly name: string;
  readonly oid: number;
  replicaIdentity: ReplicaIdentity;
  /** Replica identity key columns: the primary key, or the identity index columns. */
  keyNames: ReadonlySet<string>;
  /** Type modifiers from the catalog by column name. Columns missing here get -1. */
  readonly typeMods: ReadonlyMap<string, { typeOid: number; typeMod: number }>;
  /** The shape of the last 'relation' message emitted for the table, if any. */
  relation: RelationInfo | null;
  /** Column names and types in table order, from the catalog or the last message. */
  columns: readonly { name: string; typeOid: number }[];
}

/** Matches timestamptz_to_str output, such as `2024-03-10 12:34:56.789123+05:30`. */
const TIMESTAMP =
  /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?([+-])(\d{2})(?::(\d{2}))?(?::(\d{2}))?( BC)?$/;

const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/**
 * Stateful decoder: table shapes carry over from message to message. Create one per
 * replication connection, seeded with the catalog shapes read on that connection.
 */
export class Wal2jsonDecoder {
  readonly #tables = new Map<string, TableState>();
  readonly #onAmbiguousNull: ((column: AmbiguousNullColumn) => void) | undefined;
  readonly #reportedColumns = new Set<string>();

  constructor(options: Wal2jsonDecoderOptions = {}) {
    this.#onAmbiguousNull = options.onAmbiguousNull;
    for (const relation of options.tables ?? []) {
      this.#tables.set(tableKey(relation.schema, relation.name), {
        schema: relation.schema,
        name: relation.name,
        oid: relation.oid,
        replicaIdentity: relation.replicaIdentity,
        keyNames: new Set(relation.columns.filter((c) => c.isKey).map((c) => c.name)),
        typeMods: new Map(relation.columns.map((c) => [c.name, { typeOid: c.typeOid, typeMod: c.typeMod }])),
        relation: null,
        columns: relation.columns.map((c) => ({ name: c.name, typeOid: c.typeOid })),
      });
    }
  }

  /**
   * Decodes one wal2json message. `xlogLsn` is the WAL position of the XLogData
   * message that carried it. Returns the row message preceded by a 'relation' message
   * when the table's shape changed, so the pipeline loads new column types first.
   */
  decode(buffer: Buffer, xlogLsn: Lsn): DecodedMessage[] {
    const message = asObject(parseExactJson(utf8.decode(buffer)), 'message');
    const action = stringField(message, 'action');
    switch (action) {
      case 'B':
        return [
          {
            tag: 'begin',
            finalLsn: lsnField(message, 'lsn'),
            commitTime: parseCommitTime(stringField(message, 'timestamp')),
            xid: integerField(message, 'xid'),
          },
        ];
      case 'C':
        return [this.#commit(message, xlogLsn)];
      case 'I':
      case 'U':
      case 'D':
        return this.#change(action, message);
      case 'T':
        return [this.#truncate(message)];
      case 'M':
        return [
          {
            tag: 'message',
            transactional: booleanField(message, 'transactional'),
            lsn: lsnField(message, 'lsn'),
            prefix: stringField(message, 'prefix'),
            // NOTE: wal2json 2.5 copies the content up to its first NUL byte into a
            // JSON string, so binary content arrives cut and with invalid UTF-8 replaced.
            content: Buffer.from(stringField(message, 'content'), 'utf8'),
          },
        ];
      default:
        throw new RangeError(`wal2json: unknown action ${JSON.stringify(action)}`);
    }
  }

  /**
   * wal2json's "nextlsn" is the transaction's end_lsn, the end of its commit record:
   * the same position pgoutput sends as the Commit message's end LSN, and the one the
   * checkpoint confirms. The server also sends the commit at that WAL position
   * (logical decoding sets the write location of a commit to end_lsn), so the two must
   * agree. A mismatch means a wal2json version that this decoder does not understand,
   * and confirming a guessed position could skip a transaction, so it raises.
   */
  #commit(message: Map<string, ExactJson>, xlogLsn: Lsn): DecodedMessage {
    const endLsn = lsnField(message, 'nextlsn');
    if (endLsn !== xlogLsn) {
      throw new RangeError(
        `wal2json: commit "nextlsn" ${formatLsn(endLsn)} differs from its WAL position ${formatLsn(xlogLsn)}`,
      );
    }
    return {
      tag: 'commit',
      commitLsn: lsnField(message, 'lsn'),
      endLsn,
      commitTime: parseCommitTime(stringField(message, 'timestamp')),
    };
  }

  #truncate(message: Map<string, ExactJson>): DecodedMessage {
    const state = this.#state(stringField(message, 'schema'), stringField(message, 'table'));
    const relation = state.relation ?? this.#buildRelation(state, state.columns);
    // wal2json 2.5 does not report the CASCADE and RESTART IDENTITY options.
    return { tag: 'truncate', cascade: null, restartIdentity: null, relations: [relation] };
  }

  #change(action: 'I' | 'U' | 'D', message: Map<string, ExactJson>): DecodedMessage[] {
    const schema = stringField(message, 'schema');
    const table = stringField(message, 'table');
    const state = this.#state(schema, table);
    const pk = message.has('pk') ? arrayField(message, 'pk').map((item) => stringField(asObject(item, 'pk'), 'name')) : null;
    if (pk !== null && state.replicaIdentity === 'default') state.keyNames = new Set(pk);

    const newColumns = action === 'D' ? null : this.#columns(state, arrayField(message, 'columns'));
    const identity = message.has('identity') ? this.#columns(state, arrayField(message, 'identity')) : null;
    if (action === 'D' && identity === null) {
      throw new RangeError(`wal2json: DELETE on ${schema}.${table} without "identity"`);
    }
    const oldKind = identity === null ? null : this.#classifyIdentity(state, identity, newColumns, pk);

    const shape = action === 'I' ? shapeOf(newColumns!) : resolveShape(state, newColumns, identity, oldKind);
    const relation = this.#buildRelation(state, shape);
    const out: DecodedMessage[] = [];
    if (!sameRelation(relation, state.relation)) {
      state.relation = relation;
      out.push({ tag: 'relation', relation });
    }
    const current = state.relation!;
    state.columns = shape;

    if (action === 'I') {
      out.push({ tag: 'insert', relation: current, newTuple: tupleOf(shape, newColumns!) });
      return out;
    }
    if (action === 'D') {
      out.push({ tag: 'delete', relation: current, oldKind: oldKind!, oldTuple: oldTupleOf(shape, identity!, oldKind!) });
      return out;
    }

    const newTuple = tupleOf(shape, newColumns!);
    let oldTuple = identity === null ? null : oldTupleOf(shape, identity, oldKind!);
    let updateKind: OldRowKind | null = oldKind;
    // wal2json prints the key from the new row when PostgreSQL logged no old key,
    // which PostgreSQL does when the key did not change. pgoutput sends no old row
    // then, so an unchanged key means no old row here too.
    if (oldKind === 'key' && oldTuple !== null && sameKeyValues(current, oldTuple, newTuple)) {
      oldTuple = null;
      updateKind = null;
    }
    out.push({ tag: 'update', relation: current, oldKind: updateKind, oldTuple, newTuple });
    return out;
  }

  /**
   * Decides whether an "identity" array is the key or the whole old row. wal2json
   * prints the replica identity index columns, or every column under REPLICA IDENTITY
   * FULL, and does not mark which of the two it printed. A key-only identity contains exactly the
   * key columns, so columns beyond the known key, or the primary key, mean FULL.
   *
   * NOTE: for a table whose key covers every column, the two are identical, and the
   * table's replica identity at the start of streaming (or the last evidence) decides.
   */
  #classifyIdentity(
    state: TableState,
    identity: readonly MessageColumn[],
    newColumns: readonly MessageColumn[] | null,
    pk: readonly string[] | null,
  ): OldRowKind {
    const names = new Set(identity.map((c) => c.name));
    const isPrimaryKey = pk !== null && pk.length > 0 && setEquals(names, new Set(pk));
    const withinKey = names.size > 0 && [...names].every((name) => state.keyNames.has(name));
    const coversRow = newColumns === null || newColumns.every((c) => names.has(c.name));
    if ((isPrimaryKey || withinKey) && !(state.replicaIdentity === 'full' && coversRow)) {
      if (isPrimaryKey) {
        state.replicaIdentity = 'default';
      } else if (state.replicaIdentity === 'full') {
        state.replicaIdentity = 'index';
      }
      state.keyNames = names;
      return 'key';
    }
    state.replicaIdentity = 'full';
    return 'full';
  }

  #columns(state: TableState, items: readonly ExactJson[]): MessageColumn[] {
    return items.map((item) => {
      const column = asObject(item, 'column');
      const name = stringField(column, 'name');
      const typeOid = typeOidField(column);
      const raw = column.get('value');
      if (raw === undefined) throw new RangeError(`wal2json: column ${JSON.stringify(name)} has no "value"`);
      const value = wal2jsonColumnText(raw, typeOid);
      if (value === null && isAmbiguousWal2jsonNull(typeOid)) this.#reportAmbiguousNull(state, name, typeOid);
      return { name, typeOid, value };
    });
  }

  #reportAmbiguousNull(state: TableState, column: string, typeOid: number): void {
    const key = JSON.stringify([state.schema, state.name, column]);
    if (this.#reportedColumns.has(key)) return;
    this.#reportedColumns.add(key);
    this.#onAmbiguousNull?.({ schema: state.schema, table: state.name, column, typeOid });
  }

  #state(schema: string, name: string): TableState {
    const key = tableKey(schema, name);
    let state = this.#tables.get(key);
    if (state === undefined) {
      state = {
        schema,
        name,
        oid: syntheticOid(schema, name),
        replicaIdentity: 'default',
        keyNames: new Set(),
        typeMods: new Map(),
        relation: null,
        columns: [],
      };
      this.#tables.set(key, state);
    }
    return state;
  }

  #buildRelation(state: TableState, shape: readonly { name: string; typeOid: number }[]): RelationInfo {
    const full = state.replicaIdentity === 'full';
    const columns: RelationColumn[] = shape.map(({ name, typeOid }) => {
      const known = state.typeMods.get(name);
      return {
        name,
        typeOid,
        typeMod: known !== undefined && known.typeOid === typeOid ? known.typeMod : -1,
        // pgoutput flags every column as a key column under REPLICA IDENTITY FULL.
        isKey: full || state.keyNames.has(name),
      };
    });
    return { oid: state.oid, schema: state.schema, name: state.name, replicaIdentity: state.replicaIdentity, columns };
  }
}

/**
 * Returns the columns of the row in table order. An update leaves out the columns
 * whose TOAST values did not change, so those come from the identity under FULL (the
 * whole old row) and otherwise from the last known shape of the table.
 *
 * NOTE: under a key-only identity, a column dropped after the last insert (or the
 * start of streaming) and before an update is taken for an unchanged TOAST value and
 * named in `unchanged_columns` of that update.
 */
function resolveShape(
  state: TableState,
  newColumns: readonly MessageColumn[] | null,
  identity: readonly MessageColumn[] | null,
  oldKind: OldRowKind | null,
): { name: string; typeOid: number }[] {
  const reference = oldKind === 'full' && identity !== null ? identity : state.columns;
  const shape = shapeOf(newColumns ?? identity ?? []);
  if (newColumns === null && oldKind === 'full') return shape;
  const present = new Set(shape.map((c) => c.name));
  reference.forEach((column, index) => {
    if (present.has(column.name)) return;
    // Insert after the nearest earlier reference column that is in the shape.
    let position = 0;
    for (let before = index - 1; before >= 0; before--) {
      const found = shape.findIndex((c) => c.name === reference[before]!.name);
      if (found >= 0) {
        position = found + 1;
        break;
      }
    }
    shape.splice(position, 0, { name: column.name, typeOid: column.typeOid });
    present.add(column.name);
  });
  return shape;
}

function shapeOf(columns: readonly MessageColumn[]): { name: string; typeOid: number }[] {
  return columns.map(({ name, typeOid }) => ({ name, typeOid }));
}

/** Lays the message's values out in `shape` order; absent columns are unchanged TOAST values. */
function tupleOf(
  shape: readonly { name: string }[],
  columns: readonly MessageColumn[],
  absent: ColumnValue = UNCHANGED_TOAST,
): ColumnValue[] {
  const byName = new Map<string, ColumnValue>(columns.map((c) => [c.name, c.value]));
  return shape.map(({ name }) => {
    const value = byName.get(name);
    return value === undefined ? absent : value;
  });
}

/** Lays out an old row. A key-only old row has null in its other columns, as pgoutput sends it. */
function oldTupleOf(shape: readonly { name: string }[], identity: readonly MessageColumn[], kind: OldRowKind): ColumnValue[] {
  return tupleOf(shape, identity, kind === 'key' ? null : UNCHANGED_TOAST);
}

function sameKeyValues(relation: RelationInfo, oldTuple: readonly ColumnValue[], newTuple: readonly ColumnValue[]): boolean {
  return relation.columns.every((column, index) => {
    if (!column.isKey) return true;
    const before = oldTuple[index];
    const after = newTuple[index];
    return before !== UNCHANGED_TOAST && after !== UNCHANGED_TOAST && before === after;
  });
}

function sameRelation(a: RelationInfo, b: RelationInfo | null): boolean {
  if (b === null || a.oid !== b.oid || a.replicaIdentity !== b.replicaIdentity) return false;
  if (a.columns.length !== b.columns.length) return false;
  return a.columns.every((column, index) => {
    const other = b.columns[index]!;
    return (
      column.name === other.name &&
      column.typeOid === other.typeOid &&
      column.typeMod === other.typeMod &&
      column.isKey === other.isKey
    );
  });
}

function setEquals(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((item) => b.has(item));
}

function tableKey(schema: string, name: string): string {
  return JSON.stringify([schema, name]);
}

/**
 * Returns a relation OID for a table the catalog rows did not describe, derived from
 * its schema and name so that event ids stay the same across restarts. It is not the
 * table's real OID.
 */
export function syntheticOid(schema: string, name: string): number {
  return createHash('sha256').update(tableKey(schema, name)).digest().readUInt32BE(0);
}

/**
 * Parses wal2json's commit timestamp (timestamptz_to_str output in the session's
 * TimeZone) into microseconds since 2000-01-01 00:00 UTC, as pgoutput sends it.
 */
export function parseCommitTime(text: string): bigint {
  const match = TIMESTAMP.exec(text);
  if (match === null) throw new RangeError(`wal2json: invalid timestamp ${JSON.stringify(text)}`);
  const [, year, month, day, hour, minute, second, fraction = '', sign, offsetHours, offsetMinutes, offsetSeconds, bc] =
    match;
  const date = new Date(0);
  // PostgreSQL numbers 1 BC as year 0 of the proleptic Gregorian calendar.
  const fullYear = bc === undefined ? Number(year) : 1 - Number(year);
  date.setUTCFullYear(fullYear, Number(month) - 1, Number(day));
  date.setUTCHours(Number(hour), Number(minute), Number(second), 0);
  const offset =
    (Number(offsetHours) * 3600 + Number(offsetMinutes ?? '0') * 60 + Number(offsetSeconds ?? '0')) *
    (sign === '-' ? -1 : 1);
  const unixMicros = BigInt(date.getTime()) * 1000n + BigInt(fraction.padEnd(6, '0')) - BigInt(offset) * 1_000_000n;
  return unixMicros - BigInt(PG_EPOCH_MS) * 1000n;
}

function asObject(value: ExactJson | undefined, what: string): Map<string, ExactJson> {
  if (!(value instanceof Map)) throw new RangeError(`wal2json: expected a JSON object for ${what}`);
  return value;
}

function stringField(object: Map<string, ExactJson>, name: string): string {
  const value = object.get(name);
  if (typeof value !== 'string') throw new RangeError(`wal2json: field "${name}" is missing or not a string`);
  return value;
}

function booleanField(object: Map<string, ExactJson>, name: string): boolean {
  const value = object.get(name);
  if (typeof value !== 'boolean') throw new RangeError(`wal2json: field "${name}" is missing or not a boolean`);
  return value;
}

function integerField(object: Map<string, ExactJson>, name: string): number {
  const value = object.get(name);
  if (!(value instanceof JsonNumber) || !/^\d+$/.test(value.text)) {
    throw new RangeError(`wal2json: field "${name}" is missing or not an unsigned integer`);
  }
  return Number(value.text);
}

/**
 * Reads a column's "typeoid". wal2json prints it with `%d` (as its 2.6 source does),
 * so an OID above 2^31 - 1 arrives negative and is mapped back to the unsigned value.
 */
function typeOidField(object: Map<string, ExactJson>): number {
  const value = object.get('typeoid');
  if (!(value instanceof JsonNumber) || !/^-?\d+$/.test(value.text)) {
    throw new RangeError('wal2json: field "typeoid" is missing or not an integer; walhook sets include-type-oids');
  }
  const signed = Number(value.text);
  return signed < 0 ? signed + 2 ** 32 : signed;
}

function lsnField(object: Map<string, ExactJson>, name: string): Lsn {
  return parseLsn(stringField(object, name));
}

function arrayField(object: Map<string, ExactJson>, name: string): ExactJson[] {
  const value = object.get(name);
  if (!Array.isArray(value)) throw new RangeError(`wal2json: field "${name}" is missing or not an array`);
  return value;
}
