/** `walhook validate`: checks a configuration file, and with --connect the database. */
import { loadConfigOrExitCode } from './config-file.js';
import { checkDatabase } from '../source/check.js';

export async function validateCommand(configFile: string, options: { connect: boolean }): Promise<number> {
  const config = loadConfigOrExitCode(configFile);
  if (typeof config === 'number') return config;
  if (!options.connect) {
    process.stdout.write(`${configFile}: valid\n`);
    return 0;
  }

  const tables = config.triggers.map((trigger) => trigger.table);
  const findings = await checkDatabase(config.source, tables, config.triggers);
  for (const finding of findings) {
    const stream = finding.level === 'error' ? process.stderr : process.stdout;
    stream.write(`${finding.level}: ${finding.message}\n`);
  }
  const errors = findings.filter((finding) => finding.level === 'error').length;
  if (errors > 0) {
    process.stderr.write(`${configFile}: ${errors} database problem(s) found\n`);
    return 1;
  }
  process.stdout.write(`${configFile}: valid, database ready\n`);
  return 0;
}
