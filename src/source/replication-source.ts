/**
 * The replication connection: streams decoded messages from the slot, replies to
 * keepalives and sends standby status updates carrying only the confirmed position,
 * and reconnects with backoff when the connection breaks.
 *
 * pg-logical-replication provides the connection and the CopyData plumbing. Its own
 * acknowledgements are switched off (`auto: false`, `timeoutSeconds: 0`) because they
 * confirm positions that were only received, and its `acknowledge()` adds one to the
 * LSN and uses a wrong epoch. Status updates are written here instead.
 *
 * The output plugin is pgoutput or wal2json. Both decoders produce the same
 * DecodedMessage shapes, each passed on with the WAL position of its XLogData message.
 */
import { LogicalReplicationService } from 'pg-logical-replication';
import type { Client } from 'pg';
import type { Logger } from 'pino';
import type { SourceConfig, TableName } from '../config/types.js';
import { SourceStateError, WalhookError } from '../core/errors.js';
import { type Lsn, formatLsn, parseLsn } from '../core/lsn.js';
import { backoffDelayMs, sleep } from '../core/retry.js';
import { PG_EPOCH_MS } from '../pipeline/envelope.js';
import type { DecodedMessage } from './messages.js';
import { PgoutputDecoder } from './pgoutput-decoder.js';
import { sessionOptions } from './session-settings.js';
import { pluginNotLoadable, slotLost, slotPredatesPublication } from './setup.js';
import { quoteIdentifier, quoteLiteral } from './sql.js';
import { type AmbiguousNullColumn, Wal2jsonDecoder } from './wal2json-decoder.js';
import { type ShapeRow, tableShapesFromRows, tableShapesQuery, wal2jsonStartOptions } from './wal2json-plugin.js';

export interface SourceHandlers {
  /** Receives each decoded message with the WAL position the server sent it at. */
  onMessage(lsn: Lsn, message: DecodedMessage): void;
  /** Receives the server's WAL end from each keepalive. */
  onKeepalive(walEnd: Lsn): void;
  /** Called after the connection broke, before reconnecting. */
  onConnectionLost(): void;
}

export interface ReplicationSourceDeps {
  readonly logger: Logger;
  readonly handlers: SourceHandlers;
  /** Returns the position that is safe to confirm; the only value status updates carry. */
  readonly confirmedLsn: () => Lsn;
  /** Interval of unprompted status updates; keeps the walsender from timing out. */
  readonly statusIntervalMs: number;
  readonly reconnect?: { readonly initialDelayMs: number; readonly maxDelayMs: number };
  /** Tables of the triggers. wal2json decodes only these (its `add-tables` option). */
  readonly tables: readonly TableName[];
  /** Ask pgoutput for logical decoding messages (PostgreSQL 14 or later). Default false. */
  readonly messages?: boolean;
}

/** The plugin-specific half of one replication session. */
interface PluginStream {
  /** Decodes one XLogData payload that the server sent at WAL position `lsn`. */
  decode(buffer: Buffer, lsn: Lsn): DecodedMessage[];
  /** Sends START_REPLICATION; settles when streaming ends. */
  start(client: Client, slot: string, lsn: string): Promise<unknown>;
}

/** Standby status update ('r'), from the streaming replication protocol page. */
const STANDBY_STATUS_UPDATE = 0x72;
const STATUS_UPDATE_BYTES = 34;
/** Delay that batches status updates after the confirmed position moves. */
const STATUS_COALESCE_MS = 50;

/** The parts of pg's internal Connection that status updates and backpressure use. */
interface WireConnection {
  sendCopyFromChunk(chunk: Buffer): void;
  stream: { pause(): void; resume(): void };
}

/** Builds a standby status update with `lsn` as written, flushed and applied position. */
export function standbyStatusUpdate(lsn: Lsn, nowMs: number, replyRequested = false): Buffer {
  const message = Buffer.alloc(STATUS_UPDATE_BYTES);
  message.writeUInt8(STANDBY_STATUS_UPDATE, 0);
  message.writeBigUInt64BE(lsn, 1);
  message.writeBigUInt64BE(lsn, 9);
  message.writeBigUInt64BE(lsn, 17);
  message.writeBigInt64BE(BigInt(nowMs - PG_EPOCH_MS) * 1000n, 25);
  message.writeUInt8(replyRequested ? 1 : 0, 33);
  return message;
}

export class ReplicationSource {
  readonly #config: SourceConfig;
  readonly #deps: ReplicationSourceDeps;
  readonly #logger: Logger;
  readonly #closed = new AbortController();
  #service: LogicalReplicationService | null = null;
  #paused = false;
  #statusTimer: NodeJS.Timeout | undefined;
  #coalesceTimer: NodeJS.Timeout | undefined;
  #lastSentLsn: Lsn = -1n;
  #streaming = false;
  #fenced = false;
  /** Columns already warned about, so the warning appears once per column. */
  readonly #ambiguousNullsReported = new Set<string>();

  constructor(config: SourceConfig, deps: ReplicationSourceDeps) {
    this.#config = config;
    this.#deps = deps;
    this.#logger = deps.logger.child({ slot: config.slot });
  }

  get streaming(): boolean {
    return this.#streaming;
  }

  /**
   * Streams until close() (resolves) or a fatal error (rejects). Connection losses
   * are retried with exponential backoff and full jitter.
   */
  async run(): Promise<void> {
    const reconnect = this.#deps.reconnect ?? { initialDelayMs: 500, maxDelayMs: 30_000 };
    let failures = 0;
    while (!this.#closed.signal.aborted && !this.#fenced) {
      let started = false;
      try {
        await this.#session(() => {
          started = true;
          failures = 0;
        });
        if (this.#closed.signal.aborted || this.#fenced) return;
        this.#logger.warn('replication stream ended by the server');
      } catch (err) {
        if (this.#closed.signal.aborted || this.#fenced) return;
        const fatal = classifyStreamError(err, this.#config);
        if (fatal !== null) throw fatal;
        this.#logger.warn({ err }, 'replication connection failed');
      }
      this.#streaming = false;
      this.#deps.handlers.onConnectionLost();
      if (!started) failures += 1;
      const delayMs = backoffDelayMs(reconnect, failures, Math.random);
      this.#logger.info({ delayMs, failures }, 'reconnecting to the replication slot');
      try {
        await sleep(delayMs, this.#closed.signal);
      } catch {
        return;
      }
    }
  }

  /** Stops reading from the socket (true) or resumes (false). Status updates continue. */
  setPaused(paused: boolean): void {
    this.#paused = paused;
    const connection = this.#connection();
    if (connection === null) return;
    if (paused) connection.stream.pause();
    else connection.stream.resume();
  }

  /** Schedules a status update soon, batching bursts of confirmations. */
  confirmedAdvanced(): void {
    if (this.#coalesceTimer !== undefined) return;
    this.#coalesceTimer = setTimeout(() => {
      this.#coalesceTimer = undefined;
      this.sendStatus();
    }, STATUS_COALESCE_MS);
  }

  /**
   * Stops reading and sending status updates for good and drops the connection
   * without a last status update, so nothing more is confirmed. run() then returns.
   */
  fence(): void {
    this.#fenced = true;
    this.setPaused(true);
    // Disconnect too: a walsender left waiting for confirmations would hold up a
    // PostgreSQL shutdown and keep the slot busy for the next leader.
    void this.#stopService();
  }

  /** Sends the confirmed position now. Returns false when no connection is up. */
  sendStatus(replyRequested = false): boolean {
    const connection = this.#connection();
    if (connection === null || !this.#streaming || this.#fenced) return false;
    const lsn = this.#deps.confirmedLsn();
    connection.sendCopyFromChunk(standbyStatusUpdate(lsn, Date.now(), replyRequested));
    if (lsn !== this.#lastSentLsn) {
      this.#logger.debug({ lsn: formatLsn(lsn) }, 'confirmed position sent');
      this.#lastSentLsn = lsn;
    }
    return true;
  }

  /** Sends a last status update and closes the connection. Idempotent. */
  /**
   * Drops the replication connection without confirming more; run() reconnects with
   * backoff. Used when PostgreSQL is shutting down: its walsender waits for the client
   * to confirm everything sent, which walhook must not do while deliveries are pending.
   */
  dropConnection(reason: string): void {
    if (!this.#streaming) return;
    this.#logger.warn({ reason }, 'dropping the replication connection');
    void this.#stopService();
  }

  async close(): Promise<void> {
    if (this.#closed.signal.aborted) return;
    this.sendStatus();
    this.#closed.abort(new WalhookError('WALHOOK_CLOSED', 'replication source closed'));
    clearTimeout(this.#coalesceTimer);
    await this.#stopService();
  }

  #connection(): WireConnection | null {
    // pg keeps the wire connection on a field the library does not expose.
    const internal = this.#service as unknown as { _connection: WireConnection | null } | null;
    return internal?._connection ?? null;
  }

  async #session(onStarted: () => void): Promise<void> {
    const service = new LogicalReplicationService(
      { connectionString: this.#config.connection, options: sessionOptions(), application_name: 'walhook' },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.#service = service;
    let handlerError: unknown = null;
    const fail = (err: unknown): void => {
      handlerError = err;
      void this.#stopService();
    };
    const failed = (): boolean => handlerError !== null;
    const stream =
      this.#config.plugin === 'wal2json' ? this.#wal2jsonStream(failed) : this.#pgoutputStream(failed, fail);

    service.on('error', (err: Error) => {
      this.#logger.debug({ err }, 'replication client error');
    });
    service.on('start', () => {
      this.#streaming = true;
      if (this.#paused) this.#connection()?.stream.pause();
      onStarted();
      this.#logger.info({ lsn: formatLsn(startLsn) }, 'streaming from the replication slot');
      this.#statusTimer = setInterval(() => this.sendStatus(), this.#deps.statusIntervalMs);
    });
    service.on('data', (lsnText: string, buffer: Buffer) => {
      if (handlerError !== null) return;
      try {
        const lsn = parseLsn(lsnText);
        for (const message of stream.decode(buffer, lsn)) this.#deps.handlers.onMessage(lsn, message);
      } catch (err) {
        fail(err);
      }
    });
    service.on('heartbeat', (lsnText: string, _timestamp: number, shouldRespond: boolean) => {
      if (handlerError !== null) return;
      this.#deps.handlers.onKeepalive(parseLsn(lsnText));
      if (shouldRespond) this.sendStatus();
    });

    // Decoding happens in the 'data' handler, where the XLogData position is known.
    const plugin = {
      options: {},
      name: this.#config.plugin,
      parse: (buffer: Buffer): Buffer => buffer,
      start: (client: Client, slot: string, lsn: string): Promise<unknown> => stream.start(client, slot, lsn),
    };

    const startLsn = this.#deps.confirmedLsn();
    try {
      await service.subscribe(plugin as never, this.#config.slot, formatLsn(startLsn));
    } finally {
      clearInterval(this.#statusTimer);
      this.#streaming = false;
      await this.#stopService();
    }
    if (handlerError !== null) throw handlerError;
  }

  #pgoutputStream(failed: () => boolean, fail: (err: unknown) => void): PluginStream {
    const decoder = new PgoutputDecoder();
    return {
      decode: (buffer) => [decoder.decode(buffer)],
      start: (client, slot, lsn) => {
        client.on('notice', (notice: NoticeMessage) => {
          if (failed()) return;
          if (isSkippedPublicationNotice(notice, this.#config.publication)) {
            // The notice arrives before any later message of the stream, so stopping
            // here confirms nothing past the changes that the server skipped.
            fail(slotPredatesPublication(this.#config));
            return;
          }
          this.#logNotice(notice);
        });
        return client.query(
          `START_REPLICATION SLOT ${quoteIdentifier(slot)} LOGICAL ${lsn} ` +
            `(proto_version '1', publication_names ${quoteLiteral(quoteIdentifier(this.#config.publication))}` +
            `${this.#deps.messages === true ? ", messages 'true'" : ''})`,
        );
      },
    };
  }

  /**
   * Reads the tables' catalog shapes on the replication connection, then streams with
   * a decoder seeded with them. The shapes are read again on every reconnect.
   */
  #wal2jsonStream(failed: () => boolean): PluginStream {
    const tables = this.#deps.tables;
    let decoder: Wal2jsonDecoder | null = null;
    return {
      decode: (buffer, lsn) => {
        if (decoder === null) throw new Error('wal2json message before START_REPLICATION');
        return decoder.decode(buffer, lsn);
      },
      start: async (client, slot, lsn) => {
        client.on('notice', (notice: NoticeMessage) => {
          if (!failed()) this.#logNotice(notice);
        });
        const shapes = tables.length === 0 ? [] : (await client.query<ShapeRow>(tableShapesQuery(tables))).rows;
        decoder = new Wal2jsonDecoder({
          tables: tableShapesFromRows(shapes),
          onAmbiguousNull: (column) => this.#reportAmbiguousNull(column),
        });
        return client.query(
          `START_REPLICATION SLOT ${quoteIdentifier(slot)} LOGICAL ${lsn} (${wal2jsonStartOptions(tables)})`,
        );
      },
    };
  }

  #logNotice(notice: NoticeMessage): void {
    this.#logger.warn({ severity: notice.severity, code: notice.code }, `server notice: ${notice.message}`);
  }

  /**
   * wal2json 2.5 writes NaN, Infinity and -Infinity of float4, float8 and numeric
   * columns as null, so such a null cannot be told from SQL NULL. walhook delivers
   * null and warns once per column.
   */
  #reportAmbiguousNull(column: AmbiguousNullColumn): void {
    const key = JSON.stringify([column.schema, column.table, column.column]);
    if (this.#ambiguousNullsReported.has(key)) return;
    this.#ambiguousNullsReported.add(key);
    this.#logger.warn(
      { schema: column.schema, table: column.table, column: column.column, typeOid: column.typeOid },
      'wal2json sent null for a float or numeric column, which stands for NULL, NaN, Infinity or -Infinity; ' +
        'walhook delivers null (pgoutput tells them apart)',
    );
  }

  async #stopService(): Promise<void> {
    const service = this.#service;
    if (service === null) return;
    this.#service = null;
    this.#streaming = false;
    await service.destroy().catch((err: unknown) => {
      this.#logger.debug({ err }, 'closing the replication client failed');
    });
  }
}

/** The fields of a NoticeResponse that pg passes to 'notice' listeners. */
interface NoticeMessage {
  readonly severity?: string;
  readonly code?: string;
  readonly message?: string;
}

/**
 * Recognizes the WARNING 'skipped loading publication "NAME"' (SQLSTATE 55000), which
 * pgoutput sends from PostgreSQL 18 on (seen with 18.4) when the publication did not
 * exist yet at a decoded change. PostgreSQL 15 (seen with 15.18) raises the ERROR
 * 'publication "NAME" does not exist' instead, which classifyStreamError handles. Either
 * way the slot predates its publication, and PostgreSQL 18 would go on without the
 * skipped changes. The message is matched by the quoted publication name because the
 * rest of the text may be translated.
 */
function isSkippedPublicationNotice(notice: NoticeMessage, publication: string): boolean {
  return notice.code === '55000' && (notice.message ?? '').includes(`"${publication}"`);
}

/** Maps errors that retrying cannot fix to a SourceStateError; returns null for retryable ones. */
function classifyStreamError(err: unknown, config: SourceConfig): WalhookError | null {
  if (err instanceof WalhookError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string } | null)?.code;
  if (/can no longer get changes from replication slot/i.test(message) || /has been invalidated/i.test(message)) {
    return slotLost(config.slot);
  }
  if (/publication .* does not exist/i.test(message)) return slotPredatesPublication(config);
  const pluginError = pluginNotLoadable(err, config.plugin);
  if (pluginError !== null) return pluginError;
  if (/replication slot .* does not exist/i.test(message)) {
    return new SourceStateError(
      'WALHOOK_SLOT_DROPPED',
      `replication slot '${config.slot}' was dropped while walhook was running, so undelivered changes are lost; ` +
        'start walhook again to create a new slot',
      { cause: err },
    );
  }
  if (code === '28P01' || code === '28000' || code === '3D000' || code === '42501') {
    return new SourceStateError('WALHOOK_SOURCE_REJECTED', `PostgreSQL rejected the replication connection: ${message}`, {
      cause: err,
    });
  }
  return null;
}
