/**
 * Mixed write load for the chaos runs: inserts, updates and deletes on three tables,
 * in single-row, multi-row and large transactions, some of them rolled back.
 *
 * Every committed change also writes a row to `chaos_ledger` in the same transaction,
 * so the ledger lists exactly the committed changes, including those whose COMMIT
 * reply was lost when the server went away. Changes are keyed as the receiver keys
 * events: `R<rev>` for an insert or update, whose `rev` comes from a sequence on every
 * write, and `D<id>` for a delete, because row ids are never reused.
 */
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';

import type { Rng } from './rng.js';

/** REPLICA IDENTITY DEFAULT: a delete carries only the key. */
const PLAIN = 'chaos_plain';
/** REPLICA IDENTITY FULL: a delete carries the whole old row. */
const FULL = 'chaos_full';
export const FULL_IDENTITY_TABLE = FULL;
/** Composite primary key and a text column that is sometimes large enough for TOAST. */
const WIDE = 'chaos_wide';

export const CHAOS_TABLES = [PLAIN, FULL, WIDE] as const;
export type ChaosTable = (typeof CHAOS_TABLES)[number];

/** Large values are stored out of line (TOAST) from about 2 kB on. */
const LARGE_DOC_CHARS = 6_000;

export const SCHEMA_SQL = `
-- Returns as many characters of hard-to-compress text as the first argument asks, so
-- that large values are stored out of line.
CREATE FUNCTION filler(length int, salt bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT left(string_agg(md5((salt + g)::text), ''), length)
    FROM generate_series(0, length / 32) AS g
$$;
CREATE SEQUENCE chaos_ids;
CREATE SEQUENCE chaos_revs;
CREATE TABLE ${PLAIN} (id bigint PRIMARY KEY, rev bigint NOT NULL, n int NOT NULL, note text);
CREATE TABLE ${FULL} (id bigint PRIMARY KEY, rev bigint NOT NULL, n int NOT NULL, note text);
ALTER TABLE ${FULL} REPLICA IDENTITY FULL;
CREATE TABLE ${WIDE} (tenant int NOT NULL, id bigint NOT NULL, rev bigint NOT NULL, doc text,
                      PRIMARY KEY (tenant, id));
CREATE UNIQUE INDEX ${WIDE}_id ON ${WIDE} (id);
CREATE TABLE chaos_ledger (
  change_key text PRIMARY KEY,
  table_name text NOT NULL,
  op text NOT NULL,
  row_id bigint NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
`;

/** One committed change, as the ledger stores it. */
export interface LedgerEntry {
  readonly changeKey: string;
  readonly table: string;
  readonly op: string;
  readonly rowId: string;
}

export interface LoadOptions {
  readonly connectionString: string;
  readonly rng: Rng;
  /** Pause between transactions, in milliseconds, drawn uniformly from this range. */
  readonly pauseMs: readonly [min: number, max: number];
}

export interface LoadStats {
  committedTransactions: number;
  rolledBackTransactions: number;
  /** Transactions that failed, mostly while the server was down. Some may have committed. */
  failedTransactions: number;
  /** Changes whose COMMIT was acknowledged. The ledger may contain more. */
  acknowledgedChanges: number;
}

type TransactionKind = 'insert' | 'update' | 'delete' | 'multi' | 'large' | 'rollback';

/** Keys of changes whose COMMIT was acknowledged, in commit order, with times. */
export class AcknowledgedChanges {
  readonly keys: string[] = [];
  readonly times: number[] = [];

  add(keys: readonly string[], at: number): void {
    for (const key of keys) {
      this.keys.push(key);
      this.times.push(at);
    }
  }

  /** Number of changes acknowledged at or before `time`. */
  countUntil(time: number): number {
    let low = 0;
    let high = this.times.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.times[middle]! <= time) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

/** Live row ids per table, with O(1) random pick and removal. */
class RowIds {
  readonly #ids: string[] = [];
  readonly #index = new Map<string, number>();

  get size(): number {
    return this.#ids.length;
  }

  add(id: string): void {
    if (this.#index.has(id)) return;
    this.#index.set(id, this.#ids.length);
    this.#ids.push(id);
  }

  remove(id: string): void {
    const index = this.#index.get(id);
    if (index === undefined) return;
    const last = this.#ids.pop()!;
    this.#index.delete(id);
    if (last !== id) {
      this.#ids[index] = last;
      this.#index.set(last, index);
    }
  }

  pick(rng: Rng, count: number): string[] {
    const picked = new Set<string>();
    for (let i = 0; i < count && this.#ids.length > 0; i += 1) {
      picked.add(this.#ids[rng.int(0, this.#ids.length - 1)]!);
    }
    return [...picked];
  }

  replaceAll(ids: readonly string[]): void {
    this.#ids.length = 0;
    this.#index.clear();
    for (const id of ids) this.add(id);
  }
}

/** Creates the chaos tables and the ledger. */
export async function createSchema(connectionString: string): Promise<void> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await client.query(SCHEMA_SQL);
  } finally {
    await client.end();
  }
}

/** Reads every committed change from the ledger. */
export async function readLedger(connectionString: string): Promise<LedgerEntry[]> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ change_key: string; table_name: string; op: string; row_id: string }>(
      'SELECT change_key, table_name, op, row_id FROM chaos_ledger',
    );
    return rows.map((row) => ({ changeKey: row.change_key, table: row.table_name, op: row.op, rowId: row.row_id }));
  } finally {
    await client.end();
  }
}

/** One statement of a transaction and what it adds to or removes from the live rows. */
interface Step {
  readonly sql: string;
  readonly params: unknown[];
  readonly table: ChaosTable;
  readonly op: 'INSERT' | 'UPDATE' | 'DELETE';
}

/**
 * Runs transactions until `stop()`. Errors (the server stopped, the connection was
 * terminated) are counted, and the generator reconnects and reads the live rows
 * again, because a failed COMMIT may or may not have been applied.
 */
export class LoadGenerator {
  readonly stats: LoadStats = {
    committedTransactions: 0,
    rolledBackTransactions: 0,
    failedTransactions: 0,
    acknowledgedChanges: 0,
  };
  readonly acknowledged = new AcknowledgedChanges();
  readonly #options: LoadOptions;
  readonly #rows = new Map<ChaosTable, RowIds>(CHAOS_TABLES.map((table) => [table, new RowIds()]));
  readonly #stopped = new AbortController();
  #client: pg.Client | null = null;
  #needsResync = false;
  #running: Promise<void> | null = null;
  #lastError: string | null = null;

  constructor(options: LoadOptions) {
    this.#options = options;
  }

  get lastError(): string | null {
    return this.#lastError;
  }

  start(): void {
    if (this.#running !== null) throw new Error('load generator already started');
    this.#running = this.#run();
  }

  /** Stops after the transaction in progress and closes the connection. */
  async stop(): Promise<void> {
    this.#stopped.abort();
    await this.#running;
    await this.#client?.end().catch(() => undefined);
    this.#client = null;
  }

  async #run(): Promise<void> {
    const { rng, pauseMs } = this.#options;
    while (!this.#stopped.signal.aborted) {
      try {
        const client = await this.#connect();
        if (this.#needsResync) await this.#resync(client);
        await this.#transaction(client, this.#chooseKind());
      } catch (error) {
        this.stats.failedTransactions += 1;
        this.#lastError = error instanceof Error ? error.message : String(error);
        this.#needsResync = true;
        const client = this.#client;
        this.#client = null;
        await client?.end().catch(() => undefined);
        await pause(200, this.#stopped.signal);
        continue;
      }
      await pause(rng.int(pauseMs[0], pauseMs[1]), this.#stopped.signal);
    }
  }

  async #connect(): Promise<pg.Client> {
    if (this.#client !== null) return this.#client;
    const client = new pg.Client({ connectionString: this.#options.connectionString, connectionTimeoutMillis: 2_000 });
    // A server shutdown raises 'error' on an idle client; the next query fails anyway.
    client.on('error', () => undefined);
    await client.connect();
    this.#client = client;
    return client;
  }

  async #resync(client: pg.Client): Promise<void> {
    for (const table of CHAOS_TABLES) {
      const { rows } = await client.query<{ id: string }>(`SELECT id::text AS id FROM ${table}`);
      this.#rows.get(table)!.replaceAll(rows.map((row) => row.id));
    }
    this.#needsResync = false;
  }

  #chooseKind(): TransactionKind {
    return this.#options.rng.weighted<TransactionKind>({
      insert: 35,
      update: 18,
      delete: 8,
      multi: 28,
      large: 2,
      rollback: 8,
    });
  }

  async #transaction(client: pg.Client, kind: TransactionKind): Promise<void> {
    const rng = this.#options.rng;
    const steps: Step[] = [];
    switch (kind) {
      case 'insert':
        steps.push(this.#insertStep(rng.pick(CHAOS_TABLES), 1));
        break;
      case 'update':
        steps.push(...this.#updateSteps(rng.pick(CHAOS_TABLES), 1));
        break;
      case 'delete':
        steps.push(...this.#deleteSteps(rng.pick(CHAOS_TABLES), 1));
        break;
      case 'multi':
      case 'rollback':
        for (let i = rng.int(2, 8); i > 0; i -= 1) steps.push(...this.#randomSteps());
        break;
      case 'large':
        steps.push(this.#insertStep(rng.pick(CHAOS_TABLES), rng.int(50, 200)));
        steps.push(...this.#updateSteps(rng.pick(CHAOS_TABLES), rng.int(10, 40)));
        break;
    }

    await client.query('BEGIN');
    const keys: string[] = [];
    const inserted: [ChaosTable, string][] = [];
    const deleted: [ChaosTable, string][] = [];
    for (const step of steps) {
      const { rows } = await client.query<{ change_key: string; row_id: string }>(step.sql, step.params);
      for (const row of rows) {
        keys.push(row.change_key);
        if (step.op === 'INSERT') inserted.push([step.table, row.row_id]);
        if (step.op === 'DELETE') deleted.push([step.table, row.row_id]);
      }
    }
    if (kind === 'rollback') {
      await client.query('ROLLBACK');
      this.stats.rolledBackTransactions += 1;
      return;
    }
    await client.query('COMMIT');
    const now = Date.now();
    this.stats.committedTransactions += 1;
    this.stats.acknowledgedChanges += keys.length;
    this.acknowledged.add(keys, now);
    for (const [table, id] of inserted) this.#rows.get(table)!.add(id);
    for (const [table, id] of deleted) this.#rows.get(table)!.remove(id);
  }

  #randomSteps(): Step[] {
    const rng = this.#options.rng;
    const table = rng.pick(CHAOS_TABLES);
    const op = rng.weighted({ insert: 5, update: 3, delete: 2 });
    const count = rng.int(1, 6);
    if (op === 'insert') return [this.#insertStep(table, count)];
    if (op === 'update') return this.#updateSteps(table, count);
    return this.#deleteSteps(table, count);
  }

  #insertStep(table: ChaosTable, count: number): Step {
    const rng = this.#options.rng;
    if (table === WIDE) {
      const large = rng.chance(0.2);
      return {
        table,
        op: 'INSERT',
        params: [count, rng.int(1, 4), large ? LARGE_DOC_CHARS : rng.int(0, 40), rng.nextUint32()],
        sql: `WITH written AS (
                INSERT INTO ${WIDE} (tenant, id, rev, doc)
                SELECT $2, nextval('chaos_ids'), nextval('chaos_revs'), filler($3, $4::bigint + i)
                  FROM generate_series(1, $1) AS i
                RETURNING id, rev)
              INSERT INTO chaos_ledger (change_key, table_name, op, row_id)
              SELECT 'R' || rev, '${WIDE}', 'INSERT', id FROM written
              RETURNING change_key, row_id::text`,
      };
    }
    return {
      table,
      op: 'INSERT',
      params: [count, `note ${rng.nextUint32()}`],
      sql: `WITH written AS (
              INSERT INTO ${table} (id, rev, n, note)
              SELECT nextval('chaos_ids'), nextval('chaos_revs'), 0, $2 FROM generate_series(1, $1)
              RETURNING id, rev)
            INSERT INTO chaos_ledger (change_key, table_name, op, row_id)
            SELECT 'R' || rev, '${table}', 'INSERT', id FROM written
            RETURNING change_key, row_id::text`,
    };
  }

  #updateSteps(table: ChaosTable, count: number): Step[] {
    const rng = this.#options.rng;
    const ids = this.#rows.get(table)!.pick(rng, count);
    if (ids.length === 0) return [this.#insertStep(table, count)];
    // Half of the wide updates leave `doc` alone, so a large value arrives as an
    // unchanged TOAST column.
    const set =
      table === WIDE
        ? rng.chance(0.5)
          ? `rev = nextval('chaos_revs')`
          : `rev = nextval('chaos_revs'), doc = filler(${rng.chance(0.2) ? LARGE_DOC_CHARS : 10}, rev)`
        : `rev = nextval('chaos_revs'), n = n + 1`;
    return [
      {
        table,
        op: 'UPDATE',
        params: [ids],
        sql: `WITH written AS (
                UPDATE ${table} SET ${set} WHERE id = ANY($1::bigint[]) RETURNING id, rev)
              INSERT INTO chaos_ledger (change_key, table_name, op, row_id)
              SELECT 'R' || rev, '${table}', 'UPDATE', id FROM written
              RETURNING change_key, row_id::text`,
      },
    ];
  }

  #deleteSteps(table: ChaosTable, count: number): Step[] {
    const ids = this.#rows.get(table)!.pick(this.#options.rng, count);
    if (ids.length === 0) return [];
    return [
      {
        table,
        op: 'DELETE',
        params: [ids],
        sql: `WITH removed AS (DELETE FROM ${table} WHERE id = ANY($1::bigint[]) RETURNING id)
              INSERT INTO chaos_ledger (change_key, table_name, op, row_id)
              SELECT 'D' || id, '${table}', 'DELETE', id FROM removed
              RETURNING change_key, row_id::text`,
      },
    ];
  }
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return;
  await delay(ms, undefined, { signal }).catch(() => undefined);
}
