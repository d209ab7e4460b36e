// Database checks for trigger filters against a real PostgreSQL server: start rejects
// `columns` without REPLICA IDENTITY FULL, and validate --connect reports column problems.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import pino from 'pino';

import { parseConfig } from '../../src/config/load.js';
import type { WalhookConfig } from '../../src/config/types.js';
import { SourceStateError } from '../../src/core/errors.js';
import { checkDatabase } from '../../src/source/check.js';
import { prepareSource } from '../../src/source/setup.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

function config(connection: string, triggers: string): WalhookConfig {
  return parseConfig(
    `source:\n  connection: ${connection}\nwebhooks:\n  - name: hook\n    url: http://127.0.0.1:9/\ntriggers:\n${triggers}`,
    { file: 'test.yaml', env: {} },
  );
}

describe('trigger filter checks', () => {
  let server: TestPostgres;

  before(async () => {
    server = await startPostgres();
    await server.query('CREATE DOMAIN amount AS numeric');
    await server.query('CREATE DOMAIN positive_amount AS amount CHECK (VALUE > 0)');
    await server.query('CREATE TABLE orders (id int8 PRIMARY KEY, status text, total positive_amount, "Note" text)');
    await server.query('CREATE TABLE "Audit Log" (id int PRIMARY KEY, body text)');
    await server.query('ALTER TABLE "Audit Log" REPLICA IDENTITY FULL');
  });

  after(async () => {
    await server?.close();
  });

  test('validate reports columns without full identity', async () => {
    const loaded = config(
      server.connectionString,
      '  - name: order_status\n    table: orders\n    webhook: hook\n    columns: [status]\n' +
        '  - name: audit\n    table: \'"Audit Log"\'\n    webhook: hook\n    columns: [body]\n',
    );
    const findings = await checkDatabase(loaded.source, loaded.triggers.map((t) => t.table), loaded.triggers);
    const errors = findings.filter((finding) => finding.level === 'error');
    assert.deepEqual(errors, [
      {
        level: 'error',
        message:
          "trigger 'order_status' filters updates by 'columns', which needs whole old rows, but table public.orders " +
          'has REPLICA IDENTITY DEFAULT: run ALTER TABLE public.orders REPLICA IDENTITY FULL;',
      },
    ]);
  });

  test('validate notes column mismatches', async () => {
    const loaded = config(
      server.connectionString,
      '  - name: paid\n    table: orders\n    webhook: hook\n' +
        '    where: { total: { _gt: abc }, note: { _eq: x }, status: { _eq: paid } }\n' +
        '    payload: { columns: [id, missing] }\n' +
        '  - name: large\n    table: orders\n    webhook: hook\n    where: { total: { _gt: 5 }, "Note": { _like: "a%" } }\n',
    );
    const findings = await checkDatabase(loaded.source, loaded.triggers.map((t) => t.table), loaded.triggers);
    const filterNotes = findings.filter((finding) => finding.message.startsWith('trigger '));
    assert.deepEqual(filterNotes, [
      {
        level: 'note',
        message:
          "trigger 'paid' on table public.orders: where: _gt on column \"total\": operand 'abc' is not a valid number value; " +
          'the condition is unknown for every row, so those rows are skipped',
      },
      {
        level: 'note',
        message:
          "trigger 'paid' on table public.orders: where: column \"note\" is not in the table; " +
          'the condition is unknown for every row, so those rows are skipped',
      },
      {
        level: 'note',
        message: "trigger 'paid' on table public.orders: payload.columns: \"missing\" is not in the table, so events leave them out",
      },
    ]);
  });

  test('start rejects columns without full identity', async () => {
    const loaded = config(
      server.connectionString,
      '  - name: order_status\n    table: orders\n    webhook: hook\n    columns: [status]\n',
    );
    const logger = pino({ level: 'silent' });
    await assert.rejects(
      prepareSource(loaded.source, [loaded.triggers[0]!.table], logger, loaded.triggers),
      (error: unknown) => {
        assert.ok(error instanceof SourceStateError);
        assert.equal(error.code, 'WALHOOK_REPLICA_IDENTITY_NOT_FULL');
        assert.match(error.message, /table public\.orders has REPLICA IDENTITY DEFAULT; run ALTER TABLE public\.orders REPLICA IDENTITY FULL;$/);
        return true;
      },
    );
    const slots = await server.query('SELECT slot_name FROM pg_replication_slots');
    assert.equal(slots.length, 0, 'start created a slot before rejecting');

    await server.query('ALTER TABLE orders REPLICA IDENTITY FULL');
    try {
      const result = await prepareSource(loaded.source, [loaded.triggers[0]!.table], logger, loaded.triggers);
      assert.equal(result.slot.created, true);
    } finally {
      await server.query('ALTER TABLE orders REPLICA IDENTITY DEFAULT');
    }
  });
});
