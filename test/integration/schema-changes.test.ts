import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setUpSuiteServers } from '../helpers/suite-servers.js';
import { testConfig } from '../helpers/walhook-config.js';
import { parseEvent } from '../helpers/webhook-events.js';
import { startWalhook } from '../helpers/walhook-process.js';

const servers = setUpSuiteServers();

/** Waits for the next event and returns its new (or old) row. */
async function nextRow(): Promise<{ op: string; row: Record<string, unknown> | null; raw: string }> {
  const index = nextRow.seen;
  await servers.receiver.waitForRequests(index + 1, { timeoutMs: 15_000 });
  nextRow.seen += 1;
  const request = servers.receiver.requests[index]!;
  const event = parseEvent(request);
  return { op: event.event.op, row: event.event.data.new ?? event.event.data.old, raw: request.body };
}
nextRow.seen = 0;

test('schema changes show up in the next event without a restart', async (t) => {
  await servers.postgres.query('CREATE TABLE evolving (id int PRIMARY KEY, a text)');
  const config = testConfig({ server: servers.postgres, receiver: servers.receiver, slot: 'evolving', tables: ['evolving'] });
  let walhook = await startWalhook({ config, t });
  await walhook.waitForLog('streaming from the replication slot', { timeoutMs: 20_000 });

  await servers.postgres.query("INSERT INTO evolving VALUES (1, 'one')");
  assert.deepEqual((await nextRow()).row, { id: 1, a: 'one' });

  await servers.postgres.query("ALTER TABLE evolving ADD COLUMN b text DEFAULT 'd'");
  await servers.postgres.query("INSERT INTO evolving (id, a) VALUES (2, 'two')");
  assert.deepEqual((await nextRow()).row, { id: 2, a: 'two', b: 'd' });

  await servers.postgres.query('ALTER TABLE evolving RENAME COLUMN a TO alpha');
  await servers.postgres.query("UPDATE evolving SET alpha = 'uno' WHERE id = 1");
  assert.deepEqual((await nextRow()).row, { id: 1, alpha: 'uno', b: 'd' });

  await servers.postgres.query('ALTER TABLE evolving DROP COLUMN b');
  await servers.postgres.query("ALTER TABLE evolving ALTER COLUMN alpha TYPE numeric USING length(alpha)");
  await servers.postgres.query('INSERT INTO evolving VALUES (3, 12345678901234567890.5)');
  const retyped = await nextRow();
  assert.deepEqual(Object.keys(retyped.row ?? {}), ['id', 'alpha']);
  assert.match(retyped.raw, /"alpha":12345678901234567890\.5/);

  // A user type created while streaming is loaded before its first row is encoded.
  await servers.postgres.query("CREATE TYPE mood AS ENUM ('calm', 'upbeat')");
  await servers.postgres.query("CREATE TYPE point3 AS (x int8, y int8, label text)");
  await servers.postgres.query('ALTER TABLE evolving ADD COLUMN moods mood[], ADD COLUMN at point3');
  await servers.postgres.query(
    "INSERT INTO evolving VALUES (4, 4, ARRAY['calm', 'upbeat']::mood[], ROW(9007199254740993, -1, 'a \"b\"'))",
  );
  const typed = await nextRow();
  assert.deepEqual(typed.row?.moods, ['calm', 'upbeat']);
  assert.match(typed.raw, /"at":\{"x":9007199254740993,"y":-1,"label":"a \\"b\\""\}/);

  const exit = await walhook.stop({ timeoutMs: 15_000 });
  assert.equal(exit.code, 0);

  await servers.postgres.query('INSERT INTO evolving (id, alpha) VALUES (5, 5)');
  walhook = await startWalhook({ config, t });
  assert.deepEqual((await nextRow()).row, { id: 5, alpha: 5, moods: null, at: null });

  await servers.postgres.query('VACUUM ANALYZE evolving');
  await servers.postgres.query('INSERT INTO evolving (id, alpha) VALUES (6, 6)');
  const afterVacuum = await nextRow();
  assert.equal(afterVacuum.op, 'INSERT');
  assert.deepEqual(afterVacuum.row, { id: 6, alpha: 6, moods: null, at: null });
  assert.equal(servers.receiver.requests.length, nextRow.seen, 'no extra events');
});
