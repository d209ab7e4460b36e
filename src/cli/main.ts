#!/usr/bin/env node
/**
 * walhook command line. Exit codes: 0 success, 1 runtime failure (database state,
 * connection), an unhealthy `status` or a rejected `teardown`, 2 invalid configuration
 * or usage.
 */
import { Command, CommanderError } from 'commander';
import { addDeadLetterCommands } from './dead-letters.js';
import { runCommand } from './run.js';
import { addStatusCommand } from './status.js';
import { addTeardownCommand } from './teardown.js';
import { validateCommand } from './validate.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_CONFIG = 2;

const program = new Command()
  .name('walhook')
  .description('Stream PostgreSQL row changes to webhooks through logical replication, at least once.')
  .addHelpText(
    'after',
    [
      '',
      'Exit codes:',
      '  0  success; for status: everything is healthy',
      '  1  runtime failure (database state, connection, fatal error); for status: something',
      '     needs attention; for teardown: rejected because a replica leads or the slot is active',
      '  2  invalid configuration or usage',
      '',
    ].join('\n'),
  )
  .exitOverride();

program
  .command('run')
  .description('stream changes from the replication slot to the configured webhooks')
  .requiredOption('-c, --config <file>', 'path to the YAML configuration file')
  .action(async (options: { config: string }) => {
    // Exit explicitly: a library handle left open must not keep a stopped service alive.
    process.exit(await runCommand(options.config));
  });

program
  .command('validate')
  .description('check a configuration file and exit 0 when it is valid')
  .requiredOption('-c, --config <file>', 'path to the YAML configuration file')
  .option('--connect', 'also connect to the database and check wal_level, tables, slot and publication')
  .action(async (options: { config: string; connect?: boolean }) => {
    process.exitCode = await validateCommand(options.config, { connect: options.connect === true });
  });

addDeadLetterCommands(program);
addStatusCommand(program);
addTeardownCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? EXIT_OK : EXIT_CONFIG;
  } else {
    throw err;
  }
}
