/**
 * `walhook dead-letters list | redeliver | purge`: inspect and act on the events that
 * webhooks did not accept, stored in `<dead_letters.schema>.dead_letters`.
 *
 * Output never contains header values or the connection string. `list --json` prints
 * the stored envelopes, which contain row data.
 */
import type { Command } from 'commander';
import { Agent } from 'undici';

import { formatTableName } from '../config/identifier.js';
import { loadConfigOrExitCode } from './config-file.js';
import { parseDuration } from '../config/duration.js';
import type { WalhookConfig } from '../config/types.js';
import { redeliverDeadLetter, type RedeliveryOutcome } from '../sinks/dead-letter/redeliver.js';
import { DEFAULT_LIST_LIMIT, type DeadLetterRecord, DeadLetterStore } from '../sinks/dead-letter/store.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** Rows that `redeliver --all` reads from the table at a time. */
const REDELIVERY_PAGE_SIZE = 100;

/** PostgreSQL error codes for a missing table and a missing schema. */
const MISSING_RELATION_CODES = new Set(['42P01', '3F000']);

const TIME_HELP = 'a duration back from now (30m, 1h, 24h) or an ISO 8601 timestamp (2025-01-31T12:00:00Z)';

/** An invalid command-line value or combination of options. The message names the value. */
class UsageError extends Error {}

interface ListOptions {
  config: string;
  trigger?: string;
  since?: string;
  all?: boolean;
  limit: string;
  json?: boolean;
}

interface RedeliverOptions {
  config: string;
  all?: boolean;
  trigger?: string;
}

interface PurgeOptions {
  config: string;
  before: string;
  trigger?: string;
}

/** Adds the `dead-letters` command and its subcommands to the program. */
export function addDeadLetterCommands(program: Command): void {
  const deadLetters = program
    .command('dead-letters')
    .description('list, redeliver and purge events that webhooks did not accept');

  deadLetters
    .command('list')
    .description('print dead letters that were not redelivered, oldest first')
    .requiredOption('-c, --config <file>', 'path to the YAML configuration file')
    .option('--trigger <name>', 'only dead letters of this trigger')
    .option('--since <time>', `only dead letters created at or after this time: ${TIME_HELP}`)
    .option('--all', 'also print dead letters that were redelivered')
    .option('--limit <count>', 'maximum number of rows to print', String(DEFAULT_LIST_LIMIT))
    .option('--json', 'print a JSON array with every column, including the envelope')
    .action(async (options: ListOptions) => {
      process.exitCode = await runWithConfig(options.config, (config) => listCommand(config, options));
    });

  deadLetters
    .command('redeliver')
    .description("POST stored envelopes again with each webhook's current URL, headers and timeout")
    .argument('[ids...]', 'ids of the dead letters to redeliver, as printed by list')
    .requiredOption('-c, --config <file>', 'path to the YAML configuration file')
    .option('--all', 'redeliver every dead letter that was not redelivered yet')
    .option('--trigger <name>', 'with --all, only dead letters of this trigger')
    .action(async (ids: string[], options: RedeliverOptions) => {
      process.exitCode = await runWithConfig(options.config, (config) => redeliverCommand(config, ids, options));
    });

  deadLetters
    .command('purge')
    .description('delete dead letters created before a time, redelivered or not')
    .requiredOption('-c, --config <file>', 'path to the YAML configuration file')
    .requiredOption('--before <time>', `delete dead letters created before this time: ${TIME_HELP}`)
    .option('--trigger <name>', 'only dead letters of this trigger')
    .action(async (options: PurgeOptions) => {
      process.exitCode = await runWithConfig(options.config, (config) => purgeCommand(config, options));
    });
}

/**
 * Loads the configuration and runs `command`, turning a configuration or usage error
 * into exit code 2 and any other error into exit code 1.
 */
async function runWithConfig(
  configFile: string,
  command: (config: WalhookConfig) => Promise<number>,
): Promise<number> {
  const config = loadConfigOrExitCode(configFile);
  if (typeof config === 'number') return config;

  try {
    return await command(config);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`error: ${error.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_FAILURE;
  }
}

async function listCommand(config: WalhookConfig, options: ListOptions): Promise<number> {
  const since = options.since === undefined ? undefined : parseTimeArgument('--since', options.since, new Date());
  const limit = parseLimit(options.limit);

  const rows = await withStore(config, async (store) => {
    try {
      // One row more than printed shows whether the limit cut the list.
      return await store.list({
        ...(options.trigger === undefined ? {} : { trigger: options.trigger }),
        ...(since === undefined ? {} : { since }),
        includeRedelivered: options.all === true,
        limit: limit + 1,
      });
    } catch (error) {
      if (isMissingTable(error)) {
        reportMissingTable(store);
        return [];
      }
      throw error;
    }
  });

  const printed = rows.slice(0, limit);
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify(printed.map(toJsonRow), null, 2)}\n`);
  } else if (printed.length === 0) {
    process.stdout.write('no dead letters found\n');
  } else {
    process.stdout.write(formatTable(printed));
  }
  if (rows.length > limit) {
    process.stderr.write(`note: printed the first ${limit} dead letters; more exist, use --limit to print more\n`);
  }
  return EXIT_OK;
}

async function redeliverCommand(config: WalhookConfig, ids: string[], options: RedeliverOptions): Promise<number> {
  if (options.all === true && ids.length > 0) {
    throw new UsageError('give dead-letter ids or --all, not both');
  }
  if (options.all !== true && ids.length === 0) {
    throw new UsageError('give the ids of the dead letters to redeliver, or --all');
  }
  if (options.all !== true && options.trigger !== undefined) {
    throw new UsageError('--trigger only applies with --all');
  }
  for (const id of ids) {
    if (!/^[1-9][0-9]{0,18}$/.test(id)) {
      throw new UsageError(`invalid dead-letter id '${id}': expected a positive integer, as printed by list`);
    }
  }

  const dispatcher = new Agent();
  const tally = { delivered: 0, failed: 0 };
  try {
    await withStore(config, async (store) => {
      const redeliver = async (record: DeadLetterRecord): Promise<void> => {
        const succeeded = await redeliverAndReport(record, config, store, dispatcher);
        tally[succeeded ? 'delivered' : 'failed'] += 1;
      };
      try {
        if (options.all === true) {
          await forEachPendingRecord(store, options.trigger, redeliver);
        } else {
          const records = await store.get(ids);
          const found = new Set(records.map((record) => record.id));
          for (const id of ids.filter((candidate) => !found.has(candidate))) {
            process.stderr.write(`id ${id}: not found\n`);
            tally.failed += 1;
          }
          for (const record of records) {
            await redeliver(record);
          }
        }
      } catch (error) {
        if (!isMissingTable(error)) {
          throw error;
        }
        reportMissingTable(store);
        tally.failed += ids.length;
      }
    });
  } finally {
    await dispatcher.close();
  }

  const total = tally.delivered + tally.failed;
  if (total === 0) {
    process.stdout.write('no dead letters to redeliver\n');
    return EXIT_OK;
  }
  process.stdout.write(`redelivered ${tally.delivered} of ${total} dead letters, ${tally.failed} failed\n`);
  return tally.failed === 0 ? EXIT_OK : EXIT_FAILURE;
}

/** Calls `action` for every row not yet redelivered, in id order, one page at a time. */
async function forEachPendingRecord(
  store: DeadLetterStore,
  trigger: string | undefined,
  action: (record: DeadLetterRecord) => Promise<void>,
): Promise<void> {
  let afterId: string | undefined;
  for (;;) {
    const page = await store.list({
      ...(trigger === undefined ? {} : { trigger }),
      ...(afterId === undefined ? {} : { afterId }),
      limit: REDELIVERY_PAGE_SIZE,
    });
    for (const record of page) {
      await action(record);
    }
    const last = page.at(-1);
    if (last === undefined || page.length < REDELIVERY_PAGE_SIZE) {
      return;
    }
    afterId = last.id;
  }
}

/** Redelivers one row and prints the result. Returns true when the webhook accepted it. */
async function redeliverAndReport(
  record: DeadLetterRecord,
  config: WalhookConfig,
  store: DeadLetterStore,
  dispatcher: Agent,
): Promise<boolean> {
  let outcome: RedeliveryOutcome;
  try {
    outcome = await redeliverDeadLetter(record, config, store, { dispatcher });
  } catch (error) {
    // The request may have been accepted before the store failed to record it.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`id ${record.id}: failed to record the redelivery result: ${message}\n`);
    return false;
  }

  switch (outcome.kind) {
    case 'delivered':
      process.stdout.write(
        `id ${record.id}: delivered to webhook ${record.webhook}, status ${outcome.status}, current_retry ${outcome.currentRetry}\n`,
      );
      return true;
    case 'failed': {
      const { status, error } = outcome.result;
      const detail = status === null ? `request failed: ${error ?? 'unknown error'}` : `responded with status ${status}`;
      process.stderr.write(
        `id ${record.id}: failed: webhook ${record.webhook} ${detail}, current_retry ${outcome.currentRetry}\n`,
      );
      return false;
    }
    case 'not-sent':
      process.stderr.write(`id ${record.id}: cannot redeliver: ${outcome.reason}\n`);
      return false;
    default: {
      const unreachable: never = outcome;
      throw new Error(`unknown redelivery outcome ${JSON.stringify(unreachable)}`);
    }
  }
}

async function purgeCommand(config: WalhookConfig, options: PurgeOptions): Promise<number> {
  const before = parseTimeArgument('--before', options.before, new Date());
  const deleted = await withStore(config, async (store) => {
    try {
      return await store.purge({ before, ...(options.trigger === undefined ? {} : { trigger: options.trigger }) });
    } catch (error) {
      if (isMissingTable(error)) {
        reportMissingTable(store);
        return 0;
      }
      throw error;
    }
  });
  process.stdout.write(`deleted ${deleted} dead letters\n`);
  return EXIT_OK;
}

async function withStore<T>(config: WalhookConfig, work: (store: DeadLetterStore) => Promise<T>): Promise<T> {
  const store = new DeadLetterStore({
    connection: config.source.connection,
    schema: config.deadLetters.schema,
    maxConnections: 1,
  });
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

function isMissingTable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && MISSING_RELATION_CODES.has(code);
}

function reportMissingTable(store: DeadLetterStore): void {
  process.stderr.write(`note: table ${store.table} does not exist yet; walhook run creates it at start\n`);
}

/** `YYYY-MM-DD`, optionally followed by `THH:MM[:SS[.fff]]` and `Z` or `±HH:MM`. */
const TIMESTAMP_PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:\d{2})?)?$/i;

/**
 * Parses a time option: a duration such as `1h`, counted back from `now`, or an ISO
 * 8601 timestamp with `Z` or an offset. A date alone (`2025-01-31`) means midnight UTC.
 * Throws UsageError for anything else, including a timestamp without a zone, whose
 * meaning would depend on the machine's time zone.
 */
export function parseTimeArgument(option: string, text: string, now: Date): Date {
  if (/^\d+(?:\.\d+)?(?:ms|s|m|h)$/.test(text)) {
    try {
      return new Date(now.getTime() - parseDuration(text));
    } catch (error) {
      throw new UsageError(`invalid ${option} '${text}': ${(error as Error).message}`);
    }
  }

  const match = TIMESTAMP_PATTERN.exec(text);
  if (match === null) {
    throw new UsageError(`invalid ${option} '${text}': expected ${TIME_HELP}`);
  }
  const [, year, month, day, hour, minute, second = '0', fraction = '0', zone] = match;
  if (hour !== undefined && zone === undefined) {
    throw new UsageError(`invalid ${option} '${text}': add Z or an offset such as +02:00 to the timestamp`);
  }

  const parts = {
    year: Number(year),
    month: Number(month) - 1,
    day: Number(day),
    hour: Number(hour ?? '0'),
    minute: Number(minute ?? '0'),
    second: Number(second),
  };
  const utc = Date.UTC(
    parts.year,
    parts.month,
    parts.day,
    parts.hour,
    parts.minute,
    parts.second,
    Number(fraction.padEnd(3, '0')),
  );
  // Date.UTC rolls over out-of-range fields (February 30 becomes March 2), so a
  // value is valid only when every field comes back unchanged.
  const check = new Date(utc);
  const valid =
    check.getUTCFullYear() === parts.year &&
    check.getUTCMonth() === parts.month &&
    check.getUTCDate() === parts.day &&
    check.getUTCHours() === parts.hour &&
    check.getUTCMinutes() === parts.minute &&
    check.getUTCSeconds() === parts.second;
  if (!valid) {
    throw new UsageError(`invalid ${option} '${text}': not a valid date or time`);
  }
  return new Date(utc - zoneOffsetMs(zone));
}

/** Returns the offset of `Z` or `±HH:MM` from UTC in milliseconds. */
function zoneOffsetMs(zone: string | undefined): number {
  if (zone === undefined || zone.toUpperCase() === 'Z') {
    return 0;
  }
  const sign = zone.startsWith('-') ? -1 : 1;
  const hours = Number(zone.slice(1, 3));
  const minutes = Number(zone.slice(4, 6));
  return sign * (hours * 60 + minutes) * 60_000;
}

function parseLimit(text: string): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) === 0) {
    throw new UsageError(`invalid --limit '${text}': expected a positive integer`);
  }
  return Number(text);
}

const TABLE_COLUMNS = ['id', 'created_at', 'trigger', 'webhook', 'op', 'table', 'attempts', 'last_status', 'reason'];

/** Formats rows as space-aligned columns with a header line. */
function formatTable(records: readonly DeadLetterRecord[]): string {
  const lines = [
    TABLE_COLUMNS,
    ...records.map((record) => [
      record.id,
      record.createdAt.toISOString(),
      record.trigger,
      record.webhook,
      record.op,
      record.table === null ? '-' : formatTableName(record.table),
      String(record.attempts),
      record.lastStatus === null ? '-' : String(record.lastStatus),
      record.reason,
    ]),
  ];
  const widths = TABLE_COLUMNS.map((_, column) => Math.max(...lines.map((cells) => (cells[column] ?? '').length)));
  return lines
    .map((cells) =>
      cells
        .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
        .join('  '),
    )
    .join('\n')
    .concat('\n');
}

/** Returns a row with the table's column names, for `list --json`. */
function toJsonRow(record: DeadLetterRecord): Record<string, unknown> {
  return {
    id: record.id,
    event_id: record.eventId,
    trigger: record.trigger,
    webhook: record.webhook,
    table: record.table,
    op: record.op,
    lsn: record.lsn,
    attempts: record.attempts,
    last_status: record.lastStatus,
    last_error: record.lastError,
    reason: record.reason,
    first_attempt_at: record.firstAttemptAt.toISOString(),
    last_attempt_at: record.lastAttemptAt.toISOString(),
    created_at: record.createdAt.toISOString(),
    redelivered_at: record.redeliveredAt?.toISOString() ?? null,
    redelivery_attempts: record.redeliveryAttempts,
    envelope: record.envelope,
  };
}
