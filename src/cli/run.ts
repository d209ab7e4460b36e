/**
 * `walhook run`: streams until SIGTERM or SIGINT, then shuts down within the
 * configured deadline and exits 0.
 */
import { startWalhook } from '../app.js';
import { loadConfigOrExitCode } from './config-file.js';
import type { WalhookError } from '../core/errors.js';
import { createLogger } from '../core/logger.js';

export async function runCommand(configFile: string): Promise<number> {
  const config = loadConfigOrExitCode(configFile);
  if (typeof config === 'number') return config;

  const logger = createLogger(config.log.level);
  let app;
  try {
    app = await startWalhook(config, logger);
  } catch (err) {
    logger.fatal({ err, code: (err as WalhookError).code }, `walhook cannot start: ${(err as Error).message}`);
    return 1;
  }

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      logger.warn({ signal }, 'second signal, exiting without waiting');
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, 'signal received, shutting down');
    void app.close();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    await app.done;
    await app.close();
    return 0;
  } catch (err) {
    logger.fatal({ err, code: (err as WalhookError).code }, `walhook stopped: ${(err as Error).message}`);
    await app.close().catch(() => undefined);
    return 1;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
