/**
 * The long-running walhook process: the HTTP server (/healthz, /readyz, /metrics and
 * the status page), the slot monitor, and the leader election that decides whether
 * this replica streams.
 * Only the leader streams; a standby waits for the lock. A leader that loses its lock
 * session is fenced at once, because another replica may already stream.
 */
import type { Logger } from 'pino';
import { type RunningWalhook, startWalhook } from './app.js';
import type { WalhookConfig } from './config/types.js';
import { WalhookError } from './core/errors.js';
import { backoffDelayMs, sleep } from './core/retry.js';
import { ActivityLog } from './ops/activity.js';
import { OpsServer } from './ops/http-server.js';
import { LeaderElection } from './ops/leader.js';
import { Metrics } from './ops/metrics.js';
import { assessReadiness } from './ops/readiness.js';
import { SlotMonitor } from './ops/slot-monitor.js';
import { StatusReporter } from './ops/status-report.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;

/** Backoff of stream restarts after errors that retrying can fix, while this replica leads. */
const RESTART_BACKOFF = { initialDelayMs: 1000, maxDelayMs: 30_000 };

export interface WalhookService {
  /** Resolves with the exit code once the service stopped. */
  readonly done: Promise<number>;
  /** Stops streaming within the shutdown deadline, then everything else. Idempotent. */
  stop(): Promise<void>;
}

export async function startService(config: WalhookConfig, logger: Logger): Promise<WalhookService> {
  const metrics = new Metrics();
  metrics.declareWebhooks(config.webhooks.map((webhook) => webhook.name));

  let stopping = false;
  let running: RunningWalhook | null = null;
  let starting: Promise<void> | null = null;
  let restartFailures = 0;
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => {
    finish = resolve;
  });

  const stopStreaming = async (): Promise<void> => {
    await starting?.catch(() => undefined);
    const current = running;
    running = null;
    await current?.close();
  };

  const slotMonitor = new SlotMonitor(
    { connection: config.source.connection, slot: config.source.slot, maxRetainedBytes: config.source.maxLagBytes },
    {
      logger,
      metrics,
      onLost: (err) => {
        // Stay up and not ready instead of exiting, so an orchestrator does not restart
        // walhook into the same error again and again.
        logger.fatal({ err, code: err.code }, err.message);
        void stopStreaming();
      },
    },
  );

  const activity = new ActivityLog({ lagBytes: () => slotMonitor.latest?.lagBytes ?? null });
  activity.start();

  const election = new LeaderElection(
    { connection: config.source.connection, slot: config.source.slot, pollIntervalMs: config.leader.pollIntervalMs },
    {
      logger,
      onStateChange: (state) => metrics.setLeader(state === 'leader'),
      onElected: () => {
        startStreaming();
      },
      onLost: (loss) => {
        logger.error({ reason: loss.reason, err: loss.error }, `leadership lost: ${loss.message}`);
        running?.fence();
        return stopStreaming();
      },
    },
  );

  function startStreaming(): void {
    if (stopping || running !== null || starting !== null || slotMonitor.lostError !== null) return;
    starting = (async () => {
      try {
        const app = await startWalhook(config, logger, {
          metrics,
          deliveryObserver: (webhook) => activity.observer(webhook),
        });
        running = app;
        restartFailures = 0;
        app.done.then(
          () => undefined,
          (err: unknown) => onStreamFailed(app, err),
        );
      } catch (err) {
        onStreamFailed(null, err);
      } finally {
        starting = null;
      }
    })();
  }

  function onStreamFailed(app: RunningWalhook | null, err: unknown): void {
    if (app !== null && running === app) running = null;
    if (stopping) return;
    const fatal = (err instanceof WalhookError && !err.retryable) || isConfigurationError(err);
    if (fatal && (err as WalhookError).code === 'WALHOOK_SLOT_LOST') {
      logger.fatal({ err, code: (err as WalhookError).code }, (err as Error).message);
      return;
    }
    if (fatal) {
      logger.fatal({ err, code: (err as WalhookError).code }, `walhook cannot start: ${(err as Error).message}`);
      void stop(EXIT_FAILURE);
      return;
    }
    restartFailures += 1;
    const delayMs = backoffDelayMs(RESTART_BACKOFF, restartFailures, Math.random);
    logger.error({ err, delayMs }, 'streaming failed, will restart');
    void (app?.close() ?? Promise.resolve())
      .then(() => sleep(delayMs))
      .then(() => {
        if (election.isLeader) startStreaming();
      });
  }

  const readiness = () =>
    assessReadiness({ stopping, election, streaming: running?.streaming ?? false, slotMonitor });
  const statusReporter = config.server.enabled
    ? new StatusReporter({
        config,
        logger,
        activity,
        readiness,
        slot: () => {
          const snapshot = slotMonitor.latest;
          const condition = slotMonitor.condition;
          return snapshot === null || condition === null ? null : { snapshot, condition };
        },
        lockSessionPid: () => election.sessionPid,
      })
    : null;
  const server =
    statusReporter === null
      ? null
      : new OpsServer(
          { host: config.server.host, port: config.server.port },
          {
            logger,
            metrics,
            readiness,
            statusPage: {
              report: () => statusReporter.report(),
              redeliver: (id) => statusReporter.redeliver(id),
              adminToken: config.server.adminToken,
              slot: config.source.slot,
            },
          },
        );

  let stopped: Promise<void> | null = null;
  function stop(code: number = EXIT_OK): Promise<void> {
    stopped ??= (async () => {
      stopping = true;
      await stopStreaming();
      await election.close().catch((err: unknown) => logger.warn({ err }, 'closing the leader election failed'));
      await slotMonitor.close();
      await server?.close();
      activity.stop();
      await statusReporter?.close();
      finish(code);
    })();
    return stopped;
  }

  if (server !== null) {
    const address = await server.listen();
    logger.info(address, 'http server listening');
  }
  // The monitor runs first, so a lost slot is known before this replica would stream.
  await slotMonitor.start();
  await election.start();
  return { done, stop: () => stop(EXIT_OK) };
}

/**
 * PostgreSQL errors that retrying cannot fix: authentication (class 28), a missing
 * database (3D000) and missing privileges or objects (class 42, such as "must be owner").
 */
function isConfigurationError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || code.length !== 5) return false;
  return code.startsWith('28') || code.startsWith('42') || code === '3D000';
}
