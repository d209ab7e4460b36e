/**
 * Composition root: builds the source, pipeline and sinks from a validated config,
 * runs them, and shuts them down in the order that keeps the at-least-once rule.
 */
import type { Logger } from 'pino';
import type { WalhookConfig } from './config/types.js';
import { WalhookError } from './core/errors.js';
import { formatLsn } from './core/lsn.js';
import { redactUrl } from './core/logger.js';
import { Pipeline } from './pipeline/pipeline.js';
import { ReplicationSource } from './source/replication-source.js';
import { prepareSource } from './source/setup.js';
import { DeliveryEngine } from './sinks/webhook/delivery-engine.js';
import { DEFAULT_DELIVERY_OPTIONS, type DeliveryOptions } from './sinks/webhook/options.js';
import type { WebhookConfig } from './config/types.js';

/** Defaults for the in-flight budget that bounds memory while receivers are slow. */
const DEFAULT_MAX_INFLIGHT_EVENTS = 10_000;
const DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024;
const MAX_STATUS_INTERVAL_MS = 10_000;

export interface RunningWalhook {
  /** Settles when streaming stops: resolves after close(), rejects on a fatal error. */
  readonly done: Promise<void>;
  /** Stops reading, waits for in-flight requests up to the shutdown deadline, confirms, disconnects. */
  close(): Promise<void>;
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

export async function startWalhook(config: WalhookConfig, logger: Logger): Promise<RunningWalhook> {
  logger.info({ config: summarizeConfig(config) }, 'walhook starting');
  if (config.source.plugin !== 'pgoutput') {
    // NOTE: wal2json decoding is not built yet; the config accepts the name already.
    throw new WalhookError(
      'WALHOOK_PLUGIN_UNSUPPORTED',
      `source.plugin '${config.source.plugin}' is not supported yet; set source.plugin: pgoutput`,
    );
  }

  const tables = uniqueTables(config);
  const setup = await prepareSource(config.source, tables, logger);
  logger.info({ slot: config.source.slot, lsn: formatLsn(setup.slot.confirmedFlushLsn) }, 'slot position read');

  const sinks = new Map<string, DeliveryEngine>();
  for (const webhook of config.webhooks) {
    sinks.set(webhook.name, new DeliveryEngine(webhook, deliveryOptionsOf(webhook), { logger, deadLetters: null }));
  }

  let source: ReplicationSource | null = null;
  const pipeline = new Pipeline(setup.slot.confirmedFlushLsn, {
    logger,
    sinks,
    triggers: config.triggers,
    limits: { maxInflightEvents: DEFAULT_MAX_INFLIGHT_EVENTS, maxInflightBytes: DEFAULT_MAX_INFLIGHT_BYTES },
    onConfirmedAdvance: () => source?.confirmedAdvanced(),
    onBackpressure: (paused) => source?.setPaused(paused),
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
    handlers: {
      onMessage: (lsn, message) => pipeline.handle(lsn, message),
      onKeepalive: (walEnd) => {
        if (pipeline.observeServerPosition(walEnd)) source?.confirmedAdvanced();
      },
      onConnectionLost: () => pipeline.connectionLost(),
    },
  });

  const done = source.run();
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      logger.info({ inflightEvents: pipeline.inflightEvents }, 'walhook stopping');
      source?.setPaused(true);
      await Promise.all([...sinks.values()].map((sink) => sink.close(config.shutdownTimeoutMs)));
      await source?.close();
      await done.catch(() => undefined);
      logger.info({ lsn: formatLsn(pipeline.tracker.confirmedLsn) }, 'walhook stopped');
    })();
    return closing;
  };
  return { done, close };
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
  return {
    ...DEFAULT_DELIVERY_OPTIONS,
    retry: {
      ...DEFAULT_DELIVERY_OPTIONS.retry,
      initialDelayMs: webhook.retry.initialDelayMs,
      maxDelayMs: webhook.retry.maxDelayMs,
      // NOTE: until dead letters are configured, every failure is retried without limit.
      retryStatus: () => true,
    },
  };
}
