import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseLsn } from '../../src/core/lsn.js';
import type { DecodedMessage, RelationInfo } from '../../src/source/messages.js';
import { UNCHANGED_TOAST } from '../../src/source/messages.js';
import {
  type AmbiguousNullColumn,
  Wal2jsonDecoder,
  parseCommitTime,
  syntheticOid,
} from '../../src/source/wal2json-decoder.js';
import { addTablesOption, escapeAddTablesName, wal2jsonStartOptions } from '../../src/source/wal2json-plugin.js';

const LSN = parseLsn('0/1000');

/** The catalog shape of `public.orders (id int PRIMARY KEY, status text, doc text)`. */
const ORDERS: RelationInfo = {
  oid: 16400,
  schema: 'public',
  name: 'orders',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
    { name: 'status', typeOid: 25, typeMod: -1, isKey: false },
    { name: 'doc', typeOid: 25, typeMod: -1, isKey: false },
  ],
};

function decode(decoder: Wal2jsonDecoder, json: object | string, lsn = LSN): DecodedMessage[] {
  const text = typeof json === 'string' ? json : JSON.stringify(json);
  return decoder.decode(Buffer.from(text, 'utf8'), lsn);
}

function column(name: string, typeoid: number, value: unknown): object {
  return { name, typeoid, value };
}

function only<T extends DecodedMessage['tag']>(
  messages: DecodedMessage[],
  tag: T,
): Extract<DecodedMessage, { tag: T }> {
  const found = messages.filter((m) => m.tag === tag);
  assert.equal(found.length, 1, `one ${tag} message in ${JSON.stringify(messages.map((m) => m.tag))}`);
  return found[0] as Extract<DecodedMessage, { tag: T }>;
}

const PK = [{ name: 'id', typeoid: 23 }];

describe('wal2json decoder', () => {
  test('begin and commit carry xid, LSNs and time', () => {
    const decoder = new Wal2jsonDecoder();
    const begin = only(
      decode(decoder, {
        action: 'B',
        xid: 4294967295,
        timestamp: '2000-01-01 00:00:01.000002+00',
        lsn: '0/16B3748',
        nextlsn: '0/16B3778',
      }),
      'begin',
    );
    assert.equal(begin.xid, 4294967295);
    assert.equal(begin.finalLsn, parseLsn('0/16B3748'));
    assert.equal(begin.commitTime, 1_000_002n);

    const commit = only(
      decode(
        decoder,
        { action: 'C', xid: 1, timestamp: '2000-01-01 00:00:01+00', lsn: '0/16B3748', nextlsn: '0/16B3778' },
        parseLsn('0/16B3778'),
      ),
      'commit',
    );
    assert.equal(commit.commitLsn, parseLsn('0/16B3748'));
    assert.equal(commit.endLsn, parseLsn('0/16B3778'));
  });

  test('commit rejects nextlsn unlike its position', () => {
    const decoder = new Wal2jsonDecoder();
    const message = { action: 'C', xid: 1, timestamp: '2000-01-01 00:00:00+00', lsn: '0/10', nextlsn: '0/40' };
    assert.throws(() => decode(decoder, message, parseLsn('0/30')), /differs from its WAL position 0\/30/);
  });

  test('commit time honours the offset', () => {
    assert.equal(parseCommitTime('2000-01-01 05:30:00.5+05:30'), 500_000n);
    assert.equal(parseCommitTime('1999-12-31 23:59:59-00:00:01'), 0n);
    // PostgreSQL gives the same number: extract(epoch from the difference to 2000-01-01) * 1e6.
    assert.equal(parseCommitTime('2024-03-10 12:34:56.789123+00'), 763_389_296_789_123n);
    assert.throws(() => parseCommitTime('2024-03-10T12:34:56Z'), /invalid timestamp/);
  });

  test('insert emits relation then row', () => {
    const decoder = new Wal2jsonDecoder({ tables: [ORDERS] });
    const messages = decode(decoder, {
      action: 'I',
      schema: 'public',
      table: 'orders',
      columns: [column('id', 23, 1), column('status', 25, 'new'), column('doc', 25, 'x')],
      pk: PK,
    });
    assert.deepEqual(
      messages.map((m) => m.tag),
      ['relation', 'insert'],
    );
    const insert = only(messages, 'insert');
    assert.equal(insert.relation.oid, 16400, 'the catalog OID is kept');
    assert.deepEqual(insert.newTuple, ['1', 'new', 'x']);
    assert.deepEqual(
      insert.relation.columns.map((c) => c.isKey),
      [true, false, false],
    );

    const again = decode(decoder, {
      action: 'I',
      schema: 'public',
      table: 'orders',
      columns: [column('id', 23, 2), column('status', 25, 'new'), column('doc', 25, 'y')],
      pk: PK,
    });
    assert.deepEqual(
      again.map((m) => m.tag),
      ['insert'],
      'an unchanged shape sends no second relation',
    );
  });

  test('insert keeps exact digits', () => {
    const decoder = new Wal2jsonDecoder();
    const insert = only(
      decode(
        decoder,
        '{"action":"I","schema":"public","table":"n","columns":[' +
          '{"name":"a","typeoid":20,"value":9007199254740993},' +
          '{"name":"b","typeoid":1700,"value":12345678901234567890.123456789012345678},' +
          '{"name":"c","typeoid":17,"value":"00ff"},{"name":"d","typeoid":16,"value":true}],"pk":[]}',
      ),
      'insert',
    );
    assert.deepEqual(insert.newTuple, ['9007199254740993', '12345678901234567890.123456789012345678', '\\x00ff', 't']);
  });

  test('update marks left-out columns unchanged', () => {
    const decoder = new Wal2jsonDecoder({ tables: [ORDERS] });
    const update = only(
      decode(decoder, {
        action: 'U',
        schema: 'public',
        table: 'orders',
        columns: [column('id', 23, 1), column('status', 25, 'paid')],
        identity: [column('id', 23, 1)],
        pk: PK,
      }),
      'update',
    );
    assert.deepEqual(
      update.relation.columns.map((c) => c.name),
      ['id', 'status', 'doc'],
    );
    assert.deepEqual(update.newTuple, ['1', 'paid', UNCHANGED_TOAST]);
    assert.equal(update.oldKind, null, 'an unchanged key means no old row');
    assert.equal(update.oldTuple, null);
  });

  test('update of the key has key old row', () => {
    const decoder = new Wal2jsonDecoder({ tables: [ORDERS] });
    const update = only(
      decode(decoder, {
        action: 'U',
        schema: 'public',
        table: 'orders',
        columns: [column('id', 23, 2), column('status', 25, 'paid'), column('doc', 25, 'x')],
        identity: [column('id', 23, 1)],
        pk: PK,
      }),
      'update',
    );
    assert.equal(update.oldKind, 'key');
    assert.deepEqual(update.oldTuple, ['1', null, null]);
  });

  test('full identity gives full old rows', () => {
    const decoder = new Wal2jsonDecoder({ tables: [ORDERS] });
    const messages = decode(decoder, {
      action: 'U',
      schema: 'public',
      table: 'orders',
      columns: [column('id', 23, 1), column('status', 25, 'paid')],
      identity: [column('id', 23, 1), column('status', 25, 'new'), column('doc', 25, 'long')],
      pk: PK,
    });
    const update = only(messages, 'update');
    assert.equal(update.oldKind, 'full');
    assert.deepEqual(update.oldTuple, ['1', 'new', 'long']);
    assert.deepEqual(update.newTuple, ['1', 'paid', UNCHANGED_TOAST]);
    assert.equal(update.relation.replicaIdentity, 'full');
    assert.ok(
      update.relation.columns.every((c) => c.isKey),
      'every column is a key column under FULL, as pgoutput flags them',
    );

    const remove = only(
      decode(decoder, {
        action: 'D',
        schema: 'public',
        table: 'orders',
        identity: [column('id', 23, 1), column('status', 25, 'paid'), column('doc', 25, 'long')],
        pk: PK,
      }),
      'delete',
    );
    assert.equal(remove.oldKind, 'full');
    assert.deepEqual(remove.oldTuple, ['1', 'paid', 'long']);
  });

  test('delete with key identity is key-only', () => {
    const decoder = new Wal2jsonDecoder({ tables: [ORDERS] });
    const remove = only(
      decode(decoder, {
        action: 'D',
        schema: 'public',
        table: 'orders',
        identity: [column('id', 23, 7)],
        pk: PK,
      }),
      'delete',
    );
    assert.equal(remove.oldKind, 'key');
    assert.deepEqual(remove.oldTuple, ['7', null, null]);
  });

  test('index identity stays key-only', () => {
    const byCode: RelationInfo = {
      ...ORDERS,
      replicaIdentity: 'index',
      columns: ORDERS.columns.map((c) => ({ ...c, isKey: c.name === 'status' })),
    };
    const decoder = new Wal2jsonDecoder({ tables: [byCode] });
    const remove = only(
      decode(decoder, {
        action: 'D',
        schema: 'public',
        table: 'orders',
        identity: [column('status', 25, 'gone')],
        pk: PK,
      }),
      'delete',
    );
    assert.equal(remove.oldKind, 'key');
    assert.deepEqual(remove.oldTuple, [null, 'gone', null]);
    assert.deepEqual(
      remove.relation.columns.map((c) => c.isKey),
      [false, true, false],
    );
  });

  test('truncate reports unknown options', () => {
    const decoder = new Wal2jsonDecoder({ tables: [ORDERS] });
    const truncate = only(decode(decoder, { action: 'T', schema: 'public', table: 'orders' }), 'truncate');
    assert.equal(truncate.cascade, null);
    assert.equal(truncate.restartIdentity, null);
    assert.deepEqual(
      truncate.relations.map((r) => [r.schema, r.name, r.oid]),
      [['public', 'orders', 16400]],
    );
  });

  test('unknown table gets a stable OID', () => {
    const first = new Wal2jsonDecoder();
    const second = new Wal2jsonDecoder();
    const message = { action: 'T', schema: 'Sales.EU', table: 'Order Items' };
    const a = only(decode(first, message), 'truncate').relations[0]!;
    const b = only(decode(second, message), 'truncate').relations[0]!;
    assert.equal(a.oid, b.oid);
    assert.equal(a.oid, syntheticOid('Sales.EU', 'Order Items'));
    assert.notEqual(syntheticOid('Sales', 'EU.Order Items'), a.oid);
  });

  test('ambiguous nulls reported once per column', () => {
    const reports: AmbiguousNullColumn[] = [];
    const decoder = new Wal2jsonDecoder({ onAmbiguousNull: (c) => reports.push(c) });
    const insert = {
      action: 'I',
      schema: 'public',
      table: 'm',
      columns: [column('f', 701, null), column('n', 1700, 1.5), column('t', 25, null)],
      pk: [],
    };
    const row = only(decode(decoder, insert), 'insert');
    decode(decoder, insert);
    assert.deepEqual(row.newTuple, [null, '1.5', null]);
    assert.deepEqual(reports, [{ schema: 'public', table: 'm', column: 'f', typeOid: 701 }]);
  });

  test('message carries prefix and content', () => {
    const decoder = new Wal2jsonDecoder();
    const message = only(
      decode(decoder, {
        action: 'M',
        xid: null,
        timestamp: null,
        lsn: '0/20',
        transactional: false,
        prefix: 'outbox',
        content: 'héllo',
      }),
      'message',
    );
    assert.equal(message.transactional, false);
    assert.equal(message.prefix, 'outbox');
    assert.equal(message.lsn, parseLsn('0/20'));
    assert.equal(message.content.toString('utf8'), 'héllo');
  });

  test('negative type OID reads unsigned', () => {
    const decoder = new Wal2jsonDecoder();
    const insert = only(
      decode(decoder, { action: 'I', schema: 'public', table: 'u', columns: [column('c', -2, 'x')], pk: [] }),
      'insert',
    );
    assert.equal(insert.relation.columns[0]?.typeOid, 4294967294);
  });

  test('malformed messages raise', () => {
    const decoder = new Wal2jsonDecoder();
    assert.throws(() => decode(decoder, { action: 'X' }), /unknown action/);
    assert.throws(() => decode(decoder, { action: 'B', xid: 1 }), /field "lsn" is missing/);
    assert.throws(() => decode(decoder, { action: 'D', schema: 'public', table: 't', pk: [] }), /without "identity"/);
    assert.throws(() => decode(decoder, '{"action":"B",'), /invalid JSON/);
  });
});

describe('wal2json add-tables', () => {
  test('names escape separators and wildcards', () => {
    assert.equal(escapeAddTablesName('orders'), 'orders');
    assert.equal(escapeAddTablesName('Sales.EU'), 'Sales\\.EU');
    assert.equal(escapeAddTablesName('Order Items'), 'Order\\ Items');
    assert.equal(escapeAddTablesName('a,b\\c'), 'a\\,b\\\\c');
    assert.equal(escapeAddTablesName('*'), '\\*');
    assert.equal(escapeAddTablesName('quote"d'), 'quote\\"d');
    assert.equal(escapeAddTablesName('naïve😀'), 'naïve😀');
  });

  test('option lists every table', () => {
    const tables = [
      { schema: 'Sales.EU', name: 'Order Items' },
      { schema: 'public', name: 'orders' },
    ];
    assert.equal(addTablesOption(tables), 'Sales\\.EU.Order\\ Items,public.orders');
    const options = wal2jsonStartOptions(tables);
    assert.match(options, /"format-version" '2'/);
    assert.match(options, /"add-tables" 'Sales\\\.EU\.Order\\ Items,public\.orders'/);
  });
});
