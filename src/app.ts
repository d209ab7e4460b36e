/**
 * Composition root: builds the source, pipeline and sinks from a validated config,
 * runs them, and shuts them down in the order that keeps the at-least-once rule.
 */
import type { Logger } from 'pino';
import type { Metrics } from './ops/metrics.js';
import { combineObservers } from './ops/activity.js';
import type { WalhookConfig } from './config/types.js';
import { formatLsn } from './core/lsn.js';
import { redactUrl } from './core/logger.js';
import pg from 'pg';
import type { EncodeFallback, EncodeOptions } from './pipeline/json-values.js';
import { TypeRegistry } from './pipeline/pg-types.js';
import { parseUrlTemplate, type UrlTemplate } from './filters/index.js';
import { Pipeline } from './pipeline/pipeline.js';
import { sessionOptions } from './source/session-settings.js';
import { qualifiedName, quoteIdentifier } from './source/sql.js';
import { ReplicationSource } from './source/replication-source.js';
import { prepareSource } from './source/setup.js';
import { DeliveryEngine, type DeliveryObserver } from './sinks/webhook/delivery-engine.js';
import type { DeliveryOptions } from './sinks/webhook/options.js';
import { DeadLetterStore } from './sinks/dead-letter/store.js';
import type { WebhookConfig } from './config/types.js';

const MAX_STATUS_INTERVAL_MS = 10_000;

export interface RunningWalhook {
  /** Settles when streaming stops: resolves after close(), rejects on a fatal error. */
  readonly done: Promise<void>;
  /** True while the replication connection streams. */
  readonly streaming: boolean;
  /** Stops reading, waits for in-flight requests up to the shutdown deadline, confirms, disconnects. */
  close(): Promise<void>;
  /**
   * Stops reading, status updates and new delivery attempts at once, for a leader that
   * lost its lock: another replica may already stream, so nothing more is confirmed.
   */
  fence(): void;
}

export interface WalhookDeps {
  /** Prometheus metrics; absent in commands that do not serve them. */
  readonly metrics?: Metrics;
  /** Returns a further observer for the delivery engine of a webhook, such as the status page's activity log. */
  readonly deliveryObserver?: (webhook: string) => DeliveryObserver;
}

export function summarizeConfig(config: WalhookConfig): Record<string, unknown> {
  return {
    slot: config.source.slot,
    publication: config.source.publication,
    plugin: config.source.plugin,
    database: redactUrl(config.source.connection),
    webhooks: config.webhooks.map((w) => ({ name: w.name, url: redactUrl(w.url), timeoutMs: w.timeoutMs })),
    triggers: config.triggers.map((t) => ({
      name: t.name,
      table: `${t.table.schema}.${t.table.name}`,
      operations: t.operations,
      webhook: t.webhook,
    })),
  };
}

export async function startWalhook(config: WalhookConfig, logger: Logger, deps: WalhookDeps = {}): Promise<RunningWalhook> {
  const metrics = deps.metrics;
  logger.info({ config: summarizeConfig(config) }, 'walhook starting');

  const tables = uniqueTables(config);
  const setup = await prepareSource(config.source, tables, logger, config.triggers);
  logger.info({ slot: config.source.slot, lsn: formatLsn(setup.slot.confirmedFlushLsn) }, 'slot position read');

  // Catalog reads for column types run on a small pool of their own.
  const catalog = new pg.Pool({
    connectionString: config.source.connection,
    options: sessionOptions(),
    application_name: 'walhook',
    max: 2,
  });
  // pg attaches the client to pool errors; log the error's own fields only.
  catalog.on('error', (err) =>
    logger.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'catalog connection failed'),
  );
  const types = new TypeRegistry(async (sql, params) => (await catalog.query(sql, params as unknown[])).rows);
  await types.loadTables(tables);
  const encodeOptions = encodeOptionsFactory(config, types, logger);
  const primaryKeys = await readPrimaryKeys(catalog, tables);

  // The dead-letter table lives in the source database; it is never in the publication.
  let deadLetters: DeadLetterStore | null = null;
  if (config.webhooks.some((webhook) => webhook.onFailure === 'dead_letter')) {
    deadLetters = new DeadLetterStore({ connection: config.source.connection, schema: config.deadLetters.schema, logger });
    await deadLetters.ensureTable();
  }

  const sinks = new Map<string, DeliveryEngine>();
  for (const webhook of config.webhooks) {
    const observer = combineObservers(metrics?.observer(webhook.name), deps.deliveryObserver?.(webhook.name));
    sinks.set(webhook.name, new DeliveryEngine(webhook, deliveryOptionsOf(webhook), { logger, deadLetters, observer }));
  }

  let source: ReplicationSource | null = null;
  const pipeline = new Pipeline(setup.slot.confirmedFlushLsn, {
    logger,
    sinks,
    triggers: config.triggers,
    messageTriggers: config.messageTriggers,
    limits: { maxInflightEvents: config.maxInflightEvents, maxInflightBytes: config.maxInflightBytes },
    onConfirmedAdvance: () => source?.confirmedAdvanced(),
    onBackpressure: (paused) => {
      metrics?.setReadPaused(paused);
      source?.setPaused(paused);
    },
    onEventQueued: (trigger, webhook, op) => metrics?.eventCaptured(trigger, webhook, op),
    types,
    encodeOptions,
    urlTemplates: urlTemplatesOf(config),
    primaryKeys,
    reselect: async (table, key, columns) => {
      // Positional aliases keep column names with any characters out of the row keys.
      const list = columns.map((name, index) => `${quoteIdentifier(name)}::text AS c${index}`).join(', ');
      const where = key.map((part, index) => `${quoteIdentifier(part.name)} = $${index + 1}`).join(' AND ');
      const { rows } = await catalog.query<Record<string, string | null>>(
        `SELECT ${list} FROM ${qualifiedName(table.schema, table.name)} WHERE ${where} LIMIT 1`,
        key.map((part) => part.value),
      );
      const row = rows[0];
      if (row === undefined) return null;
      return new Map(columns.map((name, index) => [name, row[`c${index}`] ?? null]));
    },
    onFatal: (err) => {
      logger.fatal({ err }, 'processing held replication messages failed');
      void close();
    },
  });

  // Status updates must reach the server well within wal_sender_timeout, also while
  // reads are paused and no keepalive can be read.
  const statusIntervalMs =
    setup.walSenderTimeoutMs > 0
      ? Math.min(MAX_STATUS_INTERVAL_MS, Math.floor(setup.walSenderTimeoutMs / 3))
      : MAX_STATUS_INTERVAL_MS;
  source = new ReplicationSource(config.source, {
    logger,
    confirmedLsn: () => pipeline.tracker.confirmedLsn,
    statusIntervalMs,
    tables,
    messages: config.messageTriggers.length > 0,
    handlers: {
      onMessage: (lsn, message) => pipeline.handle(lsn, message),
      onKeepalive: (walEnd) => {
        if (pipeline.observeServerPosition(walEnd)) source?.confirmedAdvanced();
      },
      onConnectionLost: () => pipeline.connectionLost(),
    },
  });

  const done = source.run();
  const shutdownWatch = watchServerShutdown(catalog, statusIntervalMs, () => pipeline.tracker.heldTransactions > 0, (reason) =>
    source?.dropConnection(reason),
  );
  const removeMetricsHook = metrics?.beforeRender(() => {
    metrics.setInflight(pipeline.inflightEvents, pipeline.inflightBytes);
    metrics.setConfirmedLsn(pipeline.tracker.confirmedLsn);
  });
  let closing: Promise<void> | null = null;
  function fence(): void {
    logger.warn('fencing: no more reads, confirmations or delivery attempts');
    source?.fence();
    for (const sink of sinks.values()) void sink.close(0);
  }
  function close(): Promise<void> {
    closing ??= (async () => {
      logger.info({ inflightEvents: pipeline.inflightEvents }, 'walhook stopping');
      clearInterval(shutdownWatch);
      removeMetricsHook?.();
      source?.setPaused(true);
      await Promise.all([...sinks.values()].map((sink) => sink.close(config.shutdownTimeoutMs)));
      await source?.close();
      await done.catch(() => undefined);
      pipeline.close();
      await catalog.end().catch(() => undefined);
      await deadLetters?.close().catch(() => undefined);
      logger.info({ lsn: formatLsn(pipeline.tracker.confirmedLsn) }, 'walhook stopped');
    })();
    return closing;
  }
  return {
    done,
    close,
    fence,
    get streaming() {
      return source?.streaming ?? false;
    },
  };
}

function uniqueTables(config: WalhookConfig): { schema: string; name: string }[] {
  const seen = new Map<string, { schema: string; name: string }>();
  for (const trigger of config.triggers) {
    seen.set(`${trigger.table.schema}\u0000${trigger.table.name}`, trigger.table);
  }
  return [...seen.values()];
}

/** Builds the engine settings of one webhook from its configuration. */
function deliveryOptionsOf(webhook: WebhookConfig): DeliveryOptions {
  const retried = new Set(webhook.retry.onStatus);
  return {
    concurrency: webhook.concurrency,
    ordering: webhook.ordering,
    rateLimit: webhook.rateLimit,
    circuitBreaker: webhook.circuitBreaker,
    retry: {
      maxAttempts: webhook.retry.maxAttempts,
      initialDelayMs: webhook.retry.initialDelayMs,
      maxDelayMs: webhook.retry.maxDelayMs,
      multiplier: webhook.retry.multiplier,
      retryStatus: (status) =>
        retried.has(status) || (status >= 400 && status < 500 && retried.has('4xx')) || (status >= 500 && retried.has('5xx')),
    },
    onFailure: webhook.onFailure,
    batch: webhook.batch,
    maxBodyBytes: webhook.maxBodyBytes,
    signingSecret: webhook.signingSecret,
  };
}

/**
 * Returns the value rendering options per webhook. Values walhook cannot render as
 * to_jsonb does are logged once per type and reason, because the gap repeats per row.
 */
function encodeOptionsFactory(
  config: WalhookConfig,
  types: TypeRegistry,
  logger: Logger,
): (webhook: string) => EncodeOptions {
  const reported = new Set<string>();
  const onFallback = (fallback: EncodeFallback): void => {
    const key = `${fallback.typeOid}/${fallback.reason}`;
    if (reported.has(key)) return;
    reported.add(key);
    logger.warn(
      { typeOid: fallback.typeOid, reason: fallback.reason, err: fallback.error },
      'value delivered as its text output because it cannot be rendered as to_jsonb does',
    );
  };
  const byWebhook = new Map<string, EncodeOptions>();
  for (const webhook of config.webhooks) {
    byWebhook.set(webhook.name, { types, onFallback, stringifyNumeric: webhook.stringifyNumeric });
  }
  return (webhook) => byWebhook.get(webhook) ?? { types, onFallback };
}

/** Returns the parsed URL of each webhook whose URL has `{{ }}` placeholders. */
function urlTemplatesOf(config: WalhookConfig): Map<string, UrlTemplate> {
  const templates = new Map<string, UrlTemplate>();
  for (const webhook of config.webhooks) {
    if (!webhook.url.includes('{{')) continue;
    templates.set(webhook.name, parseUrlTemplate(webhook.url));
  }
  return templates;
}

/** SQLSTATEs of a server that is shutting down or restarting (class 57, operator intervention). */
const SERVER_GOING_DOWN = new Set(['57P01', '57P02', '57P03']);

/**
 * Checks, while deliveries are pending, whether PostgreSQL is shutting down. A fast
 * shutdown waits for each walsender until its client confirmed everything sent, and
 * walhook must not confirm past a pending delivery, so the shutdown would wait for the
 * receiver. Dropping the replication connection lets the server stop; walhook
 * reconnects when it is back, and the slot resends what was not confirmed.
 */
function watchServerShutdown(
  catalog: pg.Pool,
  intervalMs: number,
  hasPending: () => boolean,
  drop: (reason: string) => void,
): NodeJS.Timeout {
  let checking = false;
  const timer = setInterval(() => {
    if (checking || !hasPending()) return;
    checking = true;
    catalog
      .query('SELECT 1')
      .catch((err: { code?: string }) => {
        if (err.code !== undefined && SERVER_GOING_DOWN.has(err.code)) {
          drop(`PostgreSQL is shutting down (${err.code}) while deliveries are pending`);
        }
      })
      .finally(() => {
        checking = false;
      });
  }, intervalMs);
  timer.unref();
  return timer;
}

/** Reads the primary key column names of each table, keyed by `schema\u0000table`. */
async function readPrimaryKeys(
  catalog: pg.Pool,
  tables: readonly { schema: string; name: string }[],
): Promise<Map<string, string[]>> {
  const keys = new Map<string, string[]>();
  for (const table of tables) {
    const { rows } = await catalog.query<{ name: string }>(
      `SELECT a.attname AS name
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
       WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
       ORDER BY k.position`,
      [table.schema, table.name],
    );
    if (rows.length > 0) keys.set(`${table.schema}\u0000${table.name}`, rows.map((row) => row.name));
  }
  return keys;
}
