/**
 * `walhook run`: streams until SIGTERM or SIGINT, then shuts down within the
 * configured deadline and exits 0.
 */
import { createLogger } from '../core/logger.js';
import { startService } from '../service.js';
import { loadConfigOrExitCode } from './config-file.js';

export async function runCommand(configFile: string): Promise<number> {
  const config = loadConfigOrExitCode(configFile);
  if (typeof config === 'number') return config;

  const logger = createLogger(config.log.level);
  let service;
  try {
    service = await startService(config, logger);
  } catch (err) {
    logger.fatal({ err }, `walhook cannot start: ${(err as Error).message}`);
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
    void service.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    return await service.done;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
