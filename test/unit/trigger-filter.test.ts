import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import pino from 'pino';

import { parseConfig } from '../../src/config/load.js';
import type { TriggerConfig } from '../../src/config/types.js';
import {
  changedColumns,
  replicaIdentityFullStatement,
  requiresFullIdentity,
  tablesRequiringFullIdentity,
} from '../../src/filters/changed-columns.js';
import { projectColumns } from '../../src/filters/projection.js';
import { conditionRowOf, TriggerFilter } from '../../src/filters/trigger-filter.js';
import type { RowChange } from '../../src/pipeline/change.js';
import { type ColumnValue, type RelationInfo, UNCHANGED_TOAST } from '../../src/source/messages.js';

const relation: RelationInfo = {
  oid: 16384,
  schema: 'public',
  name: 'orders',
  replicaIdentity: 'full',
  columns: [
    { name: 'id', typeOid: 20, typeMod: -1, isKey: true },
    { name: 'status', typeOid: 25, typeMod: -1, isKey: false },
    { name: 'total', typeOid: 1700, typeMod: -1, isKey: false },
    { name: 'body', typeOid: 25, typeMod: -1, isKey: false },
  ],
};

const base = {
  transaction: { xid: 1, commitLsn: 100n, commitTimeMicros: 0n },
  relation,
  lsn: 90n,
  lsnOrdinal: 0,
};

function insert(newTuple: ColumnValue[]): RowChange {
  return { ...base, op: 'INSERT', newTuple };
}

function update(oldTuple: ColumnValue[] | null, newTuple: ColumnValue[], oldKind: 'key' | 'full' | null = 'full'): RowChange {
  return { ...base, op: 'UPDATE', oldKind: oldTuple === null ? null : oldKind, oldTuple, newTuple };
}

function remove(oldTuple: ColumnValue[], oldKind: 'key' | 'full'): RowChange {
  return { ...base, op: 'DELETE', oldKind, oldTuple };
}

/** Loads a trigger with the given extra YAML keys through the config loader. */
function trigger(keys: string): TriggerConfig {
  const config = parseConfig(
    'source:\n  connection: postgres://127.0.0.1/app\nwebhooks:\n  - name: hook\n    url: http://127.0.0.1:9/\n' +
      `triggers:\n  - name: order_events\n    table: orders\n    webhook: hook\n${keys}`,
    { file: 'test.yaml', env: {} },
  );
  const loaded = config.triggers[0];
  assert.ok(loaded !== undefined);
  return loaded;
}

/** Returns a filter and the warnings it logs, parsed from pino's JSON lines. */
function filterWithLog(keys: string): { filter: TriggerFilter; warnings: Record<string, unknown>[] } {
  const warnings: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      warnings.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  const logger = pino({ level: 'warn' }, destination);
  return { filter: new TriggerFilter(trigger(keys), { logger }), warnings };
}

async function flushLogs(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
}

test('changed columns compares text', () => {
  assert.deepEqual(changedColumns(relation, ['1', 'open', '1.0', 'x'], ['1', 'paid', '1.00', UNCHANGED_TOAST]), ['status', 'total']);
  assert.deepEqual(changedColumns(relation, ['1', null, '1', 'x'], ['1', 'open', '1', 'x']), ['status']);
  assert.deepEqual(changedColumns(relation, ['1', 'a', '1', 'x'], ['1', 'a', '1', 'x']), []);
  assert.deepEqual(changedColumns(relation, ['1', 'a', '1', UNCHANGED_TOAST], ['1', 'a', '1', 'x']), ['body']);
});

test('full identity is required only with columns', () => {
  assert.equal(requiresFullIdentity(trigger('    columns: [status]\n')), true);
  assert.equal(requiresFullIdentity(trigger('    where: { status: { _eq: paid } }\n')), false);
  assert.deepEqual(tablesRequiringFullIdentity([trigger('    columns: [status]\n'), trigger('    columns: [total]\n'), trigger('')]), [
    { schema: 'public', name: 'orders' },
  ]);
});

test('replica identity statement quotes names', () => {
  assert.equal(replicaIdentityFullStatement({ schema: 'public', name: 'orders' }), 'ALTER TABLE public.orders REPLICA IDENTITY FULL;');
  assert.equal(
    replicaIdentityFullStatement({ schema: 'Sales', name: 'Order "Items"' }),
    'ALTER TABLE "Sales"."Order ""Items""" REPLICA IDENTITY FULL;',
  );
});

test('projection keeps listed columns in table order', () => {
  assert.deepEqual(projectColumns(relation, ['total', 'id', 'missing']), {
    keep: [true, false, true, false],
    missing: ['missing'],
  });
});

test('filter without settings accepts everything', () => {
  const { filter } = filterWithLog('');
  assert.equal(filter.accepts(insert(['1', 'open', '5', 'x'])), true);
  assert.equal(filter.projection(relation), null);
  assert.equal(filter.bodyTransform, null);
});

test('filter columns needs a listed change', () => {
  const { filter } = filterWithLog('    columns: [status, total]\n');
  assert.equal(filter.accepts(update(['1', 'open', '5', 'x'], ['1', 'paid', '5', 'x'])), true);
  assert.equal(filter.accepts(update(['1', 'open', '5', 'x'], ['1', 'open', '5', 'y'])), false);
  assert.equal(filter.accepts(update(['1', 'open', '5', 'x'], ['1', 'open', '5', UNCHANGED_TOAST])), false);
  // columns filters updates only.
  assert.equal(filter.accepts(insert(['1', 'open', '5', 'x'])), true);
  assert.equal(filter.accepts(remove(['1', null, null, null], 'key')), true);
});

test('filter columns without full old row', async () => {
  const { filter, warnings } = filterWithLog('    columns: [status]\n');
  assert.equal(filter.accepts(update(null, ['1', 'open', '5', 'x'])), true);
  assert.equal(filter.accepts(update(['1', null, null, null], ['2', 'open', '5', 'x'], 'key')), true);
  await flushLogs();
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]?.['trigger'], 'order_events');
  assert.equal(warnings[0]?.['table'], 'public.orders');
  assert.match(String(warnings[0]?.['reason']), /ALTER TABLE public\.orders REPLICA IDENTITY FULL;/);
});

test('filter columns warns on absent columns', async () => {
  const { filter, warnings } = filterWithLog('    columns: [Status]\n');
  assert.equal(filter.accepts(update(['1', 'open', '5', 'x'], ['1', 'paid', '5', 'x'])), false);
  assert.equal(filter.accepts(update(['1', 'open', '5', 'x'], ['1', 'paid', '5', 'x'])), false);
  await flushLogs();
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]?.['reason'], 'columns: "Status" is not in the table');
});

test('filter where picks new or old', () => {
  const { filter } = filterWithLog('    where: { status: { _eq: paid } }\n');
  assert.equal(filter.accepts(insert(['1', 'paid', '5', 'x'])), true);
  assert.equal(filter.accepts(insert(['1', 'open', '5', 'x'])), false);
  assert.equal(filter.accepts(update(['1', 'open', '5', 'x'], ['1', 'paid', '5', 'x'])), true);
  assert.equal(filter.accepts(update(['1', 'paid', '5', 'x'], ['1', 'open', '5', 'x'])), false);
  assert.equal(filter.accepts(remove(['1', 'paid', '5', 'x'], 'full')), true);
  assert.equal(filter.accepts(remove(['1', 'open', '5', 'x'], 'full')), false);
});

test('filter where skips key-only deletes', async () => {
  const { filter, warnings } = filterWithLog('    where: { status: { _eq: paid } }\n');
  assert.equal(filter.accepts(remove(['1', null, null, null], 'key')), false);
  assert.equal(filter.accepts(remove(['2', null, null, null], 'key')), false);
  await flushLogs();
  assert.equal(warnings.length, 1);
  assert.match(String(warnings[0]?.['reason']), /^where: column "status" is not in the old row/);
  assert.match(String(warnings[0]?.['msg']), /event skipped/);
});

test('filter where key columns on deletes', () => {
  const { filter } = filterWithLog('    where: { id: { _gt: 1 } }\n');
  assert.equal(filter.accepts(remove(['2', null, null, null], 'key')), true);
  assert.equal(filter.accepts(remove(['1', null, null, null], 'key')), false);
});

test('filter where fills unchanged TOAST', () => {
  const { filter } = filterWithLog("    where: { body: { _like: 'x%' } }\n");
  assert.equal(filter.accepts(update(['1', 'open', '5', 'xyz'], ['1', 'paid', '5', UNCHANGED_TOAST])), true);
  assert.equal(filter.accepts(update(['1', 'open', '5', 'abc'], ['1', 'paid', '5', UNCHANGED_TOAST])), false);
  assert.equal(filter.accepts(update(null, ['1', 'paid', '5', UNCHANGED_TOAST])), false);
});

test('filter passes truncates', () => {
  const { filter } = filterWithLog('    columns: [status]\n    where: { status: { _eq: paid } }\n');
  assert.equal(filter.accepts({ ...base, op: 'TRUNCATE', cascade: false, restartIdentity: false }), true);
});

test('filter combines columns and where', () => {
  const { filter } = filterWithLog('    columns: [status]\n    where: { status: { _eq: paid } }\n');
  assert.equal(filter.accepts(update(['1', 'open', '5', 'x'], ['1', 'paid', '5', 'x'])), true);
  assert.equal(filter.accepts(update(['1', 'paid', '5', 'x'], ['1', 'paid', '6', 'x'])), false);
  assert.equal(filter.accepts(update(['1', 'paid', '5', 'x'], ['1', 'void', '5', 'x'])), false);
});

test('filter projection caches and warns', async () => {
  const { filter, warnings } = filterWithLog('    payload: { columns: [id, status, gone] }\n');
  const projection = filter.projection(relation);
  assert.deepEqual(projection?.keep, [true, true, false, false]);
  assert.equal(filter.projection(relation), projection);
  await flushLogs();
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]?.['reason'], 'payload.columns: "gone" is not in the table');
});

test('filter compiles the body transform', async () => {
  const { filter } = filterWithLog("    transform: { body: 'event.op' }\n");
  assert.equal(await filter.bodyTransform?.renderBody('{"event":{"op":"INSERT"}}'), '"INSERT"');
});

test('condition row of a truncate raises', () => {
  assert.throws(() => conditionRowOf({ ...base, op: 'TRUNCATE', cascade: false, restartIdentity: false }));
});
