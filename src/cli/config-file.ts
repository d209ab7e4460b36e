/** Configuration loading shared by the commands. */
import { loadConfig } from '../config/load.js';
import type { WalhookConfig } from '../config/types.js';
import { ConfigError } from '../core/errors.js';

/** Exit code for an invalid configuration file or invalid usage. */
export const EXIT_CONFIG = 2;

/**
 * Loads the file, or prints every configuration problem to stderr and returns
 * EXIT_CONFIG. Other errors propagate.
 */
export function loadConfigOrExitCode(configFile: string): WalhookConfig | number {
  try {
    return loadConfig(configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }
}
