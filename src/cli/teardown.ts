/**
 * `walhook teardown`: drops the replication slot and the publication, and with
 * `--dead-letters` the dead-letter table and then its schema if nothing else is left
 * in it. Without `--yes` it prints the plan and changes nothing.
 *
 * It rejects the teardown while a walhook replica leads or the slot is active, because
 * the replica would create the slot again. With `--yes` it holds the leader lock of the
 * slot while it drops, so no replica can start leading in between.
 */
import type { Command } from 'commander';
import type pg from 'pg';

import type { WalhookConfig } from '../config/types.js';
import { leaderLockKey } from '../ops/leader-lock.js';
import { formatBytes } from '../ops/slot-status.js';
import { quoteIdentifier } from '../source/sql.js';
import { loadConfigOrExitCode } from './config-file.js';
import {
  type DeadLetterTableInfo,
  findLeader,
  type LeaderInfo,
  openCommandSession,
  type PublicationInfo,
  readDatabaseInfo,
  readDeadLetterTable,
  readPublication,
  readSlot,
  type SlotInfo,
} from './inspect.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;

/** SQLSTATE of an object in use, such as a slot with a walsender. */
const OBJECT_IN_USE = '55006';
/** SQLSTATE of DROP SCHEMA on a schema that still contains objects. */
const DEPENDENT_OBJECTS_STILL_EXIST = '2BP01';

export interface TeardownOptions {
  readonly config: string;
  readonly yes?: boolean;
  readonly deadLetters?: boolean;
}

/** What teardown found in the database. */
interface TeardownState {
  readonly database: string;
  readonly slot: SlotInfo;
  readonly publication: PublicationInfo;
  readonly leader: LeaderInfo | null;
  /** Null without `--dead-letters`. */
  readonly deadLetters: DeadLetterTableInfo | null;
  /** Sessions named walhook-leader in this database, of this slot's replicas or of others. */
  readonly lockSessions: number;
}

/** One step of the plan: its description, and the statement that carries it out. */
interface Step {
  readonly description: string;
  readonly run: (client: pg.Client) => Promise<string>;
}

const STOP_REMEDY =
  'Stop every walhook replica of this slot first: scale its Deployment to 0 replicas ' +
  '(kubectl scale deployment/walhook --replicas=0) or send SIGTERM to each process, ' +
  'then run walhook teardown again.';

const EXIT_CODE_HELP = `
Without --yes, teardown prints the plan and changes nothing.

Exit codes:
  0  done, or with no --yes: the plan can be carried out
  1  rejected (a replica leads or the slot is active), or a statement failed
  2  invalid configuration or usage
`;

/** Adds the `teardown` command to the program. */
export function addTeardownCommand(program: Command): void {
  program
    .command('teardown')
    .description('drop the replication slot and the publication; print the plan unless --yes is given')
    .requiredOption('-c, --config <file>', 'path to the YAML configuration file')
    .option('--yes', 'carry out the plan; without it, teardown only prints it')
    .option('--dead-letters', 'also drop the dead-letter table, and its schema when that is then empty')
    .addHelpText('after', EXIT_CODE_HELP)
    .action(async (options: TeardownOptions) => {
      process.exitCode = await teardownCommand(options);
    });
}

export async function teardownCommand(options: TeardownOptions): Promise<number> {
  const config = loadConfigOrExitCode(options.config);
  if (typeof config === 'number') return config;

  let client: pg.Client;
  try {
    client = await openCommandSession(config.source.connection);
  } catch (error) {
    process.stderr.write(`error: connecting to the database failed: ${(error as Error).message}\n`);
    return EXIT_FAILURE;
  }
  try {
    return await teardown(client, config, options);
  } catch (error) {
    process.stderr.write(`error: ${(error as Error).message}\n`);
    return EXIT_FAILURE;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function teardown(client: pg.Client, config: WalhookConfig, options: TeardownOptions): Promise<number> {
  const state = await readState(client, config, options.deadLetters === true);
  const rejection = rejectionOf(state);
  const steps = planSteps(state, config);

  process.stdout.write(`teardown of slot '${config.source.slot}' in database '${state.database}'\n`);
  if (rejection !== null) {
    process.stderr.write(`error: ${rejection.reason}${rejection.stopFirst ? ` ${STOP_REMEDY}` : ''}\n`);
    return EXIT_FAILURE;
  }
  for (const note of notesOf(state)) process.stdout.write(`note: ${note}\n`);
  if (steps.length === 0) {
    process.stdout.write('nothing to drop\n');
    return EXIT_OK;
  }
  if (options.yes !== true) {
    process.stdout.write('would:\n');
    for (const step of steps) process.stdout.write(`  - ${step.description}\n`);
    process.stdout.write('nothing was changed; run again with --yes to do this\n');
    return EXIT_OK;
  }

  // While this session holds the leader lock, no replica can lead and create the slot again.
  const lockKey = leaderLockKey(state.database, config.source.slot).toString();
  const { rows } = await client.query<{ acquired: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS acquired', [
    lockKey,
  ]);
  if (rows[0]?.acquired !== true) {
    process.stderr.write(`error: a walhook replica took the leader lock of this slot meanwhile. ${STOP_REMEDY}\n`);
    return EXIT_FAILURE;
  }
  try {
    for (const step of steps) {
      const done = await runStep(client, step);
      if (done === null) return EXIT_FAILURE;
      process.stdout.write(`${done}\n`);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [lockKey]).catch(() => undefined);
  }
  return EXIT_OK;
}

async function readState(client: pg.Client, config: WalhookConfig, withDeadLetters: boolean): Promise<TeardownState> {
  const database = await readDatabaseInfo(client);
  const { rows } = await client.query<{ count: string }>(
    `SELECT count(*)::text AS count FROM pg_stat_activity
      WHERE application_name = 'walhook-leader' AND datname = current_database()`,
  );
  return {
    database: database.name,
    slot: await readSlot(client, config.source.slot, database.serverVersionNum),
    publication: await readPublication(client, config.source.publication),
    leader: await findLeader(client, database.name, config.source.slot),
    deadLetters: withDeadLetters ? await readDeadLetterTable(client, config.deadLetters.schema) : null,
    lockSessions: Number(rows[0]?.count ?? 0),
  };
}

/**
 * Returns why teardown must not run, and whether stopping walhook is the remedy, or
 * null when it may run.
 */
function rejectionOf(state: TeardownState): { reason: string; stopFirst: boolean } | null {
  const { slot, leader, database, deadLetters } = state;
  if (leader !== null) {
    const client = leader.clientAddr === null ? '' : ` from ${leader.clientAddr}`;
    return {
      reason: `a walhook replica leads (lock session pid ${leader.pid}${client}), and it would create the slot again.`,
      stopFirst: true,
    };
  }
  if (slot.exists && slot.active) {
    return {
      reason: `replication slot '${slot.name}' is active (walsender pid ${slot.activePid ?? 'unknown'}), and an active slot cannot be dropped.`,
      stopFirst: true,
    };
  }
  if (slot.exists && slot.slotType !== 'logical') {
    return {
      reason: `replication slot '${slot.name}' is a ${slot.slotType ?? 'unknown'} slot, which walhook did not create; teardown drops only logical slots.`,
      stopFirst: false,
    };
  }
  if (slot.exists && slot.database !== database) {
    return {
      reason: `replication slot '${slot.name}' belongs to database '${slot.database ?? 'unknown'}', not '${database}'; set source.connection to that database.`,
      stopFirst: false,
    };
  }
  if (deadLetters !== null && deadLetters.exists && !deadLetters.walhookLayout) {
    return {
      reason: `table ${deadLetters.table} does not have the columns of walhook's dead-letter table, so teardown does not drop it; drop it yourself or leave out --dead-letters.`,
      stopFirst: false,
    };
  }
  return null;
}

function notesOf(state: TeardownState): string[] {
  const notes: string[] = [];
  if (state.lockSessions > 0) {
    notes.push(
      `${state.lockSessions} walhook lock session(s) are connected to database '${state.database}'. ` +
        'A standby of this slot among them would lead after teardown and create the slot and the publication again.',
    );
  }
  if (state.deadLetters !== null && !state.deadLetters.exists) {
    notes.push(`table ${state.deadLetters.table} does not exist`);
  }
  return notes;
}

function planSteps(state: TeardownState, config: WalhookConfig): Step[] {
  const steps: Step[] = [];
  const { slot, publication, deadLetters } = state;
  if (slot.exists) {
    const retained = slot.retainedBytes === null ? '' : `, retains ${formatBytes(slot.retainedBytes)} of WAL`;
    steps.push({
      description:
        `drop replication slot '${slot.name}' (plugin ${slot.plugin ?? 'unknown'}, confirmed_flush_lsn ` +
        `${slot.confirmedFlushLsn ?? 'none'}${retained}); changes not yet delivered are lost`,
      run: async (client) => {
        await client.query('SELECT pg_drop_replication_slot($1)', [slot.name]);
        return `dropped replication slot '${slot.name}'`;
      },
    });
  }
  if (publication.exists) {
    const tables = publication.allTables ? 'all tables' : `${publication.tables.length} table(s)`;
    steps.push({
      description: `drop publication '${publication.name}' (${tables}); the tables stay`,
      run: async (client) => {
        await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdentifier(publication.name)}`);
        return `dropped publication '${publication.name}'`;
      },
    });
  }
  if (deadLetters !== null && deadLetters.exists) {
    steps.push({
      description: `drop table ${deadLetters.table} (${deadLetters.rows} row(s), ${deadLetters.pending} pending)`,
      run: async (client) => {
        await client.query(`DROP TABLE IF EXISTS ${deadLetters.table}`);
        return `dropped table ${deadLetters.table}`;
      },
    });
  }
  const schema = config.deadLetters.schema;
  if (deadLetters !== null && deadLetters.schemaExists && schema !== 'public') {
    steps.push({
      description: `drop schema ${quoteIdentifier(schema)} if it is then empty`,
      run: (client) => dropSchemaIfEmpty(client, schema),
    });
  }
  return steps;
}

/** Drops the schema with RESTRICT, which fails when anything is left in it; that failure keeps it. */
async function dropSchemaIfEmpty(client: pg.Client, schema: string): Promise<string> {
  const name = quoteIdentifier(schema);
  const { rows } = await client.query<{ exists: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS exists',
    [schema],
  );
  if (rows[0]?.exists !== true) return `schema ${name} does not exist`;
  try {
    await client.query(`DROP SCHEMA ${name} RESTRICT`);
  } catch (error) {
    if ((error as { code?: unknown }).code === DEPENDENT_OBJECTS_STILL_EXIST) {
      return `kept schema ${name}: it contains other objects`;
    }
    throw error;
  }
  return `dropped schema ${name}`;
}

/** Runs one step and returns its result line, or prints the failure and returns null. */
async function runStep(client: pg.Client, step: Step): Promise<string | null> {
  try {
    return await step.run(client);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message = (error as Error).message;
    if (code === OBJECT_IN_USE) {
      process.stderr.write(`error: failed to ${step.description}: ${message}. ${STOP_REMEDY}\n`);
    } else {
      process.stderr.write(`error: failed to ${step.description}: ${message}\n`);
    }
    return null;
  }
}
