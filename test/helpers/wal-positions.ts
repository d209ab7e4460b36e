import pg from 'pg';

import type { TestPostgres } from './postgres.js';

/** Where a committed transaction sits in the WAL. */
export interface CommittedTransaction {
  /** 32-bit transaction id, as the `xid` field of walhook's envelope carries it. */
  readonly xid: number;
  /**
   * Start of the commit record, which pgoutput's BEGIN message sends as its final LSN.
   * Logical decoding skips a transaction whose commit record starts before the slot's
   * `confirmed_flush_lsn` at the start of streaming (DecodeTXNNeedSkip in PostgreSQL's
   * decode.c). So after a restart the slot sends the transaction again exactly while
   * `confirmed_flush_lsn <= commitLsn`.
   */
  readonly commitLsn: string;
  /** End of the commit record: the position that confirms the whole transaction. */
  readonly endLsn: string;
}

/** The walsender that streams a slot, as pg_stat_replication reports it. */
export interface WalSenderState {
  /** Position up to which the walsender has read and sent the WAL. */
  readonly sentLsn: string;
  /** Flush position from the client's last standby status update. */
  readonly flushLsn: string | null;
  /** Client clock time of the last status update, or null before the first one. */
  readonly replyTime: Date | null;
}

const serversWithWalInspect = new WeakSet<TestPostgres>();

/**
 * Runs `statements` in one transaction on a connection of its own, commits it, and
 * returns its transaction id and the start and end of its commit record, which
 * pg_walinspect reads from the WAL.
 */
export async function commitTransaction(
  server: TestPostgres,
  statements: readonly string[],
): Promise<CommittedTransaction> {
  await installWalInspect(server);
  const client = new pg.Client({ connectionString: server.connectionString });
  await client.connect();
  try {
    await client.query('BEGIN');
    for (const statement of statements) {
      await client.query(statement);
    }
    // The commit record comes after every record the statements wrote, so the insert
    // position read here is a lower bound for it.
    const inside = await client.query<{ xid: string; lsn: string }>(
      'SELECT pg_current_xact_id()::text AS xid, pg_current_wal_insert_lsn()::text AS lsn',
    );
    await client.query('COMMIT');
    const afterCommit = await client.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    );

    const fullXid = BigInt(inside.rows[0]?.xid ?? '0');
    // pg_current_xact_id() includes the epoch in the upper 32 bits.
    const xid = Number(fullXid & 0xffff_ffffn);
    const from = inside.rows[0]?.lsn;
    const to = afterCommit.rows[0]?.lsn;
    const records = await client.query<{ start_lsn: string; end_lsn: string }>(
      `SELECT start_lsn::text AS start_lsn, end_lsn::text AS end_lsn
         FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)
        WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' AND xid::text = $3`,
      [from, to, String(xid)],
    );
    const record = records.rows[0];
    if (record === undefined || records.rows.length !== 1) {
      throw new Error(
        `expected one commit record of xid ${xid} between ${from} and ${to}, ` +
          `found ${records.rows.length}`,
      );
    }
    return { xid, commitLsn: record.start_lsn, endLsn: record.end_lsn };
  } finally {
    await client.end();
  }
}

async function installWalInspect(server: TestPostgres): Promise<void> {
  if (serversWithWalInspect.has(server)) {
    return;
  }
  await server.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect');
  serversWithWalInspect.add(server);
}

/** Reads the walsender that streams `slot`, or returns undefined when none does. */
export async function walSenderState(
  server: TestPostgres,
  slot: string,
): Promise<WalSenderState | undefined> {
  const rows = await server.query<{
    sent_lsn: string;
    flush_lsn: string | null;
    reply_time: Date | null;
  }>(
    `SELECT r.sent_lsn::text AS sent_lsn, r.flush_lsn::text AS flush_lsn, r.reply_time
       FROM pg_replication_slots s
       JOIN pg_stat_replication r ON r.pid = s.active_pid
      WHERE s.slot_name = $1`,
    [slot],
  );
  const row = rows[0];
  if (row === undefined) {
    return undefined;
  }
  return { sentLsn: row.sent_lsn, flushLsn: row.flush_lsn, replyTime: row.reply_time };
}

/** Slot positions that `watchSlot` read, in order. */
export interface SlotWatch {
  /** `confirmed_flush_lsn` of every reading so far. */
  readonly confirmed: readonly string[];
  /**
   * Stops reading and returns every reading. Rejects when a reading failed. Later
   * calls return the same promise.
   */
  stop(): Promise<readonly string[]>;
}

/**
 * Reads the slot's `confirmed_flush_lsn` every `intervalMs` until `stop()`, so a test
 * can check that a position was never passed at any time, not only at its end. Pass
 * the test context `t` so that a failed test stops the readings too.
 */
export function watchSlot(
  server: TestPostgres,
  slot: string,
  options: { intervalMs?: number; t?: { after(fn: () => unknown): void } } = {},
): SlotWatch {
  const confirmed: string[] = [];
  let failure: unknown;
  let stopping: Promise<readonly string[]> | undefined;
  let reading: Promise<void> = Promise.resolve();

  const read = async (): Promise<void> => {
    try {
      const rows = await server.query<{ lsn: string | null }>(
        'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      const lsn = rows[0]?.lsn;
      if (lsn === undefined || lsn === null) {
        throw new Error(`replication slot '${slot}' is missing or has no confirmed position`);
      }
      confirmed.push(lsn);
    } catch (error) {
      failure ??= error;
    }
  };
  const timer = setInterval(() => {
    reading = reading.then(read);
  }, options.intervalMs ?? 100);
  // The readings alone must not keep a test file's process alive.
  timer.unref();
  reading = read();

  const stop = (): Promise<readonly string[]> => {
    stopping ??= (async () => {
      clearInterval(timer);
      await reading;
      await read();
      if (failure !== undefined) {
        throw failure;
      }
      return confirmed;
    })();
    return stopping;
  };
  options.t?.after(() => {
    clearInterval(timer);
  });
  return { confirmed, stop };
}
