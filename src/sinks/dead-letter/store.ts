/**
 * The dead-letter table: events that a webhook did not accept, kept in the source
 * database so that an operator can list, redeliver and purge them.
 *
 * The table lives in its own schema (`walhook` by default). The publication is created
 * FOR TABLE with only the configured tables, and the configuration rejects triggers on
 * tables in that schema, so writes here never come back as change events.
 */
import pg from 'pg';
import type { Logger } from 'pino';

import { WalhookError } from '../../core/errors.js';
import { parseLsn } from '../../core/lsn.js';
import { sessionOptions } from '../../source/session-settings.js';
import { qualifiedName, quoteIdentifier } from '../../source/sql.js';

export const DEAD_LETTER_TABLE = 'dead_letters';

const TRIGGER_INDEX = 'dead_letters_trigger_created_at_idx';
const PENDING_EVENT_INDEX = 'dead_letters_pending_event_id_idx';

/** Largest value of a PostgreSQL `int` column. */
const MAX_INT = 2_147_483_647;

/** Default number of rows that `list` returns. */
export const DEFAULT_LIST_LIMIT = 1000;

/** One event that a webhook did not accept, as the sink hands it over. */
export interface DeadLetterEntry {
  eventId: string;
  trigger: string;
  webhook: string;
  table: { schema: string; name: string } | null;
  op: string;
  /** WAL position of the change, as `X/Y` in hexadecimal. */
  lsn: string;
  /** The exact JSON body text of the event's envelope, stored unchanged. */
  envelope: string;
  /** Delivery attempts made before the event was given up. */
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  /** Reason the event was given up, such as 'attempts exhausted' or 'permanent status 404'. */
  reason: string;
  firstAttemptAt: Date;
  lastAttemptAt: Date;
}

/** A stored dead letter, with the columns that the table adds. */
export interface DeadLetterRecord extends DeadLetterEntry {
  /** The `bigserial` id as decimal text, because a bigint can exceed Number.MAX_SAFE_INTEGER. */
  id: string;
  createdAt: Date;
  /** Time of the last redelivery that the webhook accepted, or null. */
  redeliveredAt: Date | null;
  /** Manual redelivery attempts so far, successful or not. */
  redeliveryAttempts: number;
}

export interface ListOptions {
  /** Only rows of this trigger. */
  trigger?: string;
  /** Only rows created at or after this time. */
  since?: Date;
  /** Also return rows that were redelivered. Default false. */
  includeRedelivered?: boolean;
  /** Only rows with a larger id, for paging through the table. */
  afterId?: string;
  /** Maximum number of rows. Default DEFAULT_LIST_LIMIT. */
  limit?: number;
  /** Return the newest rows first (descending id). Default false: oldest first. */
  newestFirst?: boolean;
}

/** Dead letters of one trigger, as `summarizeByTrigger` counts them. */
export interface DeadLetterTriggerSummary {
  trigger: string;
  /** Rows not yet redelivered. */
  pending: number;
  /** All rows, redelivered or not. */
  total: number;
  /** Creation time of the newest row. */
  newestAt: Date;
}

export interface PurgeOptions {
  /** Delete rows created before this time. */
  before: Date;
  /** Only rows of this trigger. */
  trigger?: string;
}

export interface DeadLetterStoreOptions {
  /** Connection URL of the source database (`config.source.connection`). */
  connection: string;
  /** Schema of the table (`config.deadLetters.schema`), used as written. */
  schema: string;
  /** Maximum number of pooled connections. Default 4. */
  maxConnections?: number;
  /** Deadline for opening one connection, in milliseconds. Default 10 000. */
  connectionTimeoutMs?: number;
  /** Receives warnings about pooled connections that failed while idle. */
  logger?: Logger;
}

/**
 * A dead-letter entry that can never be stored, such as an LSN that is not `X/Y` or
 * text with a NUL character. Retrying the write cannot help.
 */
export class InvalidDeadLetterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidDeadLetterError';
  }
}

/** Columns that walhook reads and writes, with the type `format_type` prints for each. */
const EXPECTED_COLUMNS: Readonly<Record<string, string>> = {
  id: 'bigint',
  event_id: 'text',
  trigger: 'text',
  webhook: 'text',
  table_schema: 'text',
  table_name: 'text',
  op: 'text',
  lsn: 'pg_lsn',
  envelope: 'text',
  attempts: 'integer',
  last_status: 'integer',
  last_error: 'text',
  reason: 'text',
  first_attempt_at: 'timestamp with time zone',
  last_attempt_at: 'timestamp with time zone',
  created_at: 'timestamp with time zone',
  redelivered_at: 'timestamp with time zone',
  redelivery_attempts: 'integer',
};

interface DeadLetterRow {
  id: string;
  event_id: string;
  trigger: string;
  webhook: string;
  table_schema: string | null;
  table_name: string | null;
  op: string;
  lsn: string;
  envelope: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  reason: string;
  first_attempt_at: Date;
  last_attempt_at: Date;
  created_at: Date;
  redelivered_at: Date | null;
  redelivery_attempts: number;
}

const SELECT_COLUMNS = Object.keys(EXPECTED_COLUMNS)
  .map((column) => (column === 'lsn' ? 'lsn::text AS lsn' : quoteIdentifier(column)))
  .join(', ');

/** Reads and writes `<schema>.dead_letters` through a connection pool on the source database. */
export class DeadLetterStore {
  /** Schema-qualified, quoted table name for SQL text. */
  readonly table: string;
  readonly #schema: string;
  readonly #pool: pg.Pool;

  constructor(options: DeadLetterStoreOptions) {
    this.#schema = options.schema;
    this.table = qualifiedName(options.schema, DEAD_LETTER_TABLE);
    this.#pool = new pg.Pool({
      connectionString: options.connection,
      options: sessionOptions(),
      application_name: 'walhook',
      max: options.maxConnections ?? 4,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    });
    // Without a listener, an idle connection that the server closes would crash the process.
    this.#pool.on('error', (error) => {
      // pg attaches the client to pool errors; log the error's own fields only.
      const err = { message: error.message, code: (error as { code?: string }).code };
      options.logger?.warn({ err, table: this.table }, 'idle dead-letter store connection failed');
    });
  }

  /**
   * Creates the schema, table and indexes that are missing, then checks the columns
   * of the table. Objects that exist are not touched, so a role without CREATE
   * privileges works once an administrator has created them. Throws WalhookError
   * WALHOOK_DEAD_LETTER_TABLE when an existing table lacks a column walhook needs or
   * has it with another type.
   */
  async ensureTable(): Promise<void> {
    await this.#transaction(async (client) => {
      // Serializes walhook processes that start at once, because concurrent
      // CREATE ... IF NOT EXISTS statements can fail on a unique index of the catalog.
      await client.query("SELECT pg_advisory_xact_lock(hashtext('walhook dead letters'), hashtext($1))", [
        this.#schema,
      ]);

      const schemaExists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.#schema]);
      if (schemaExists.rowCount === 0) {
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(this.#schema)}`);
      }
      if (!(await this.#relationExists(client, DEAD_LETTER_TABLE))) {
        await client.query(createTableSql(this.table));
      }
      // Checked before the indexes, which need the columns.
      await this.#checkColumns(client);
      if (!(await this.#relationExists(client, TRIGGER_INDEX))) {
        await client.query(
          `CREATE INDEX IF NOT EXISTS ${quoteIdentifier(TRIGGER_INDEX)} ON ${this.table} (trigger, created_at)`,
        );
      }
      if (!(await this.#relationExists(client, PENDING_EVENT_INDEX))) {
        await client.query(
          `CREATE UNIQUE INDEX IF NOT EXISTS ${quoteIdentifier(PENDING_EVENT_INDEX)} ` +
            `ON ${this.table} (event_id) WHERE redelivered_at IS NULL`,
        );
      }
    });
  }

  /**
   * Inserts one dead letter and resolves once its commit is flushed to the WAL.
   *
   * A pending row (not yet redelivered) with the same event id is kept and the new
   * entry is dropped, so that retrying a write whose commit succeeded without a
   * response adds no second row. Rejects with InvalidDeadLetterError for an entry that
   * can never be stored, and with the driver's error when the database fails.
   */
  async write(entry: DeadLetterEntry): Promise<void> {
    validateEntry(entry);
    const lastError = entry.lastError === null ? null : toStorableText(entry.lastError);

    await this.#transaction(async (client) => {
      // The server, a database or a role may set synchronous_commit = off, which lets
      // COMMIT return before the WAL is flushed. Stricter settings are kept.
      await client.query(
        "SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') = 'off'",
      );
      await client.query(
        `INSERT INTO ${this.table} (event_id, trigger, webhook, table_schema, table_name, op, lsn, envelope,
           attempts, last_status, last_error, reason, first_attempt_at, last_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7::pg_lsn, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (event_id) WHERE redelivered_at IS NULL DO NOTHING`,
        [
          entry.eventId,
          entry.trigger,
          entry.webhook,
          entry.table?.schema ?? null,
          entry.table?.name ?? null,
          entry.op,
          entry.lsn,
          entry.envelope,
          entry.attempts,
          entry.lastStatus,
          lastError,
          entry.reason,
          entry.firstAttemptAt,
          entry.lastAttemptAt,
        ],
      );
    });
  }

  /**
   * Returns matching rows in id order, oldest first unless `newestFirst` is set. Rows
   * that were redelivered are left out unless asked for.
   */
  async list(options: ListOptions = {}): Promise<DeadLetterRecord[]> {
    const conditions: string[] = [];
    const values: unknown[] = [];
    const addCondition = (sql: (placeholder: string) => string, value: unknown): void => {
      values.push(value);
      conditions.push(sql(`$${values.length}`));
    };

    if (options.trigger !== undefined) {
      addCondition((p) => `trigger = ${p}`, options.trigger);
    }
    if (options.since !== undefined) {
      addCondition((p) => `created_at >= ${p}`, options.since);
    }
    if (options.includeRedelivered !== true) {
      conditions.push('redelivered_at IS NULL');
    }
    if (options.afterId !== undefined) {
      addCondition((p) => `id > ${p}::bigint`, checkId(options.afterId));
    }
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 0) {
      throw new RangeError(`invalid limit ${limit}: expected a non-negative integer`);
    }
    values.push(limit);

    const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
    const { rows } = await this.#pool.query<DeadLetterRow>(
      `SELECT ${SELECT_COLUMNS} FROM ${this.table} ${where} ORDER BY id ${options.newestFirst === true ? 'DESC' : 'ASC'} LIMIT $${values.length}`,
      values,
    );
    return rows.map(toRecord);
  }

  /** Counts the rows per trigger, in trigger name order. */
  async summarizeByTrigger(): Promise<DeadLetterTriggerSummary[]> {
    const { rows } = await this.#pool.query<{ trigger: string; pending: string; total: string; newest_at: Date }>(
      `SELECT trigger,
              count(*) FILTER (WHERE redelivered_at IS NULL)::text AS pending,
              count(*)::text AS total,
              max(created_at) AS newest_at
         FROM ${this.table}
        GROUP BY trigger
        ORDER BY trigger`,
    );
    return rows.map((row) => ({
      trigger: row.trigger,
      pending: Number(row.pending),
      total: Number(row.total),
      newestAt: row.newest_at,
    }));
  }

  /** Returns the rows with these ids, redelivered or not, in id order. Unknown ids are left out. */
  async get(ids: readonly string[]): Promise<DeadLetterRecord[]> {
    const { rows } = await this.#pool.query<DeadLetterRow>(
      `SELECT ${SELECT_COLUMNS} FROM ${this.table} WHERE id = ANY($1::bigint[]) ORDER BY id`,
      [ids.map(checkId)],
    );
    return rows.map(toRecord);
  }

  /** Records a redelivery that the webhook accepted. Returns false when no row has this id. */
  async markRedelivered(id: string, at: Date): Promise<boolean> {
    const result = await this.#pool.query(
      `UPDATE ${this.table}
       SET redelivered_at = $2, last_attempt_at = $2, redelivery_attempts = redelivery_attempts + 1
       WHERE id = $1::bigint`,
      [checkId(id), at],
    );
    return result.rowCount === 1;
  }

  /**
   * Records a redelivery that failed: the status (null when no response arrived) and
   * the error. Returns false when no row has this id.
   */
  async recordRedeliveryFailure(
    id: string,
    status: number | null,
    error: string | null,
    at: Date = new Date(),
  ): Promise<boolean> {
    const result = await this.#pool.query(
      `UPDATE ${this.table}
       SET last_status = $2, last_error = $3, last_attempt_at = $4, redelivery_attempts = redelivery_attempts + 1
       WHERE id = $1::bigint`,
      [checkId(id), status, error === null ? null : toStorableText(error), at],
    );
    return result.rowCount === 1;
  }

  /** Deletes rows created before `before`, redelivered or not, and returns how many. */
  async purge(options: PurgeOptions): Promise<number> {
    const values: unknown[] = [options.before];
    let sql = `DELETE FROM ${this.table} WHERE created_at < $1`;
    if (options.trigger !== undefined) {
      values.push(options.trigger);
      sql += ' AND trigger = $2';
    }
    const result = await this.#pool.query(sql, values);
    return result.rowCount ?? 0;
  }

  /** Closes every pooled connection. */
  async close(): Promise<void> {
    await this.#pool.end();
  }

  async #relationExists(client: pg.PoolClient, name: string): Promise<boolean> {
    const { rows } = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [
      qualifiedName(this.#schema, name),
    ]);
    return rows[0]?.exists === true;
  }

  async #checkColumns(client: pg.PoolClient): Promise<void> {
    const { rows } = await client.query<{ attname: string; type: string }>(
      `SELECT attname, format_type(atttypid, atttypmod) AS type
       FROM pg_attribute
       WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
      [this.table],
    );
    const actual = new Map(rows.map((row) => [row.attname, row.type]));
    const problems: string[] = [];
    for (const [column, type] of Object.entries(EXPECTED_COLUMNS)) {
      const actualType = actual.get(column);
      if (actualType === undefined) {
        problems.push(`column ${column} is missing`);
      } else if (actualType !== type) {
        problems.push(`column ${column} is ${actualType}, expected ${type}`);
      }
    }
    if (problems.length > 0) {
      throw new WalhookError(
        'WALHOOK_DEAD_LETTER_TABLE',
        `table ${this.table} exists but does not have walhook's dead-letter layout (${problems.join('; ')}); ` +
          'rename or drop that table, or set dead_letters.schema to another schema',
      );
    }
  }

  /** Runs `work` in a transaction on one pooled connection, and discards the connection on failure. */
  async #transaction(work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await work(client);
      await client.query('COMMIT');
    } catch (error) {
      // The connection may be broken or still in a transaction, so it is not reused.
      client.release(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
    client.release();
  }
}

function createTableSql(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    trigger text NOT NULL,
    webhook text NOT NULL,
    table_schema text,
    table_name text,
    op text NOT NULL,
    lsn pg_lsn NOT NULL,
    envelope text NOT NULL,
    attempts integer NOT NULL,
    last_status integer,
    last_error text,
    reason text NOT NULL,
    first_attempt_at timestamptz NOT NULL,
    last_attempt_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    redelivered_at timestamptz,
    redelivery_attempts integer NOT NULL DEFAULT 0
  )`;
}

function toRecord(row: DeadLetterRow): DeadLetterRecord {
  return {
    id: row.id,
    eventId: row.event_id,
    trigger: row.trigger,
    webhook: row.webhook,
    table:
      row.table_schema === null || row.table_name === null
        ? null
        : { schema: row.table_schema, name: row.table_name },
    op: row.op,
    lsn: row.lsn,
    envelope: row.envelope,
    attempts: row.attempts,
    lastStatus: row.last_status,
    lastError: row.last_error,
    reason: row.reason,
    firstAttemptAt: row.first_attempt_at,
    lastAttemptAt: row.last_attempt_at,
    createdAt: row.created_at,
    redeliveredAt: row.redelivered_at,
    redeliveryAttempts: row.redelivery_attempts,
  };
}

/** Returns `id` when it is a positive decimal integer, else throws RangeError. */
function checkId(id: string): string {
  if (!/^[1-9][0-9]{0,18}$/.test(id)) {
    throw new RangeError(`invalid dead-letter id '${id}': expected a positive integer`);
  }
  return id;
}

/** Matches a UTF-16 surrogate without its partner, which UTF-8 cannot encode. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Throws InvalidDeadLetterError naming the first field that PostgreSQL would reject
 * or store differently. Text columns cannot contain NUL, and node-postgres replaces
 * a lone surrogate with U+FFFD, which would change the envelope.
 */
function validateEntry(entry: DeadLetterEntry): void {
  const texts: [string, string][] = [
    ['eventId', entry.eventId],
    ['trigger', entry.trigger],
    ['webhook', entry.webhook],
    ['op', entry.op],
    ['reason', entry.reason],
    ['envelope', entry.envelope],
  ];
  if (entry.table !== null) {
    texts.push(['table.schema', entry.table.schema], ['table.name', entry.table.name]);
  }
  for (const [field, value] of texts) {
    if (value.includes('\0')) {
      throw new InvalidDeadLetterError(`dead-letter ${field} contains a NUL character, which PostgreSQL text cannot store`);
    }
    if (LONE_SURROGATE.test(value)) {
      throw new InvalidDeadLetterError(`dead-letter ${field} contains an unpaired UTF-16 surrogate`);
    }
  }
  if (entry.envelope === '') {
    throw new InvalidDeadLetterError('dead-letter envelope is empty');
  }

  try {
    parseLsn(entry.lsn);
  } catch (error) {
    throw new InvalidDeadLetterError(`dead-letter lsn: ${(error as Error).message}`);
  }

  if (!Number.isInteger(entry.attempts) || entry.attempts < 0 || entry.attempts > MAX_INT) {
    throw new InvalidDeadLetterError(`dead-letter attempts must be an integer from 0 to ${MAX_INT}, got ${entry.attempts}`);
  }
  if (entry.lastStatus !== null && (!Number.isInteger(entry.lastStatus) || entry.lastStatus < 0 || entry.lastStatus > MAX_INT)) {
    throw new InvalidDeadLetterError(`dead-letter lastStatus must be null or an HTTP status, got ${entry.lastStatus}`);
  }
  for (const [field, date] of [
    ['firstAttemptAt', entry.firstAttemptAt],
    ['lastAttemptAt', entry.lastAttemptAt],
  ] as const) {
    if (Number.isNaN(date.getTime())) {
      throw new InvalidDeadLetterError(`dead-letter ${field} is an invalid Date`);
    }
  }
}

/**
 * Replaces NUL characters and lone surrogates with U+FFFD. Used for error messages,
 * which come from the network and are kept for reading, not byte for byte.
 */
function toStorableText(text: string): string {
  return text.replace(/\0|\p{Cs}/gu, '\uFFFD');
}
