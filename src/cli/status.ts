/**
 * `walhook status`: reads the state of the slot, the publication, the leader lock, the
 * dead-letter table and the configured tables from the database, prints it, and lists
 * what needs attention. Exit code 0 when nothing does, 1 when something does or the
 * database cannot be read, 2 for an invalid configuration.
 *
 * The output never contains the connection string, header values or secrets.
 */
import type { Command } from 'commander';

import type { TableName, WalhookConfig } from '../config/types.js';
import {
  assessSlot,
  formatBytes,
  overLimitMessage,
  type SlotCondition,
  slotLostError,
  unreservedMessage,
} from '../ops/slot-status.js';
import { DeadLetterStore } from '../sinks/dead-letter/store.js';
import { checkTables, type Finding } from '../source/check.js';
import { loadConfigOrExitCode } from './config-file.js';
import {
  type DatabaseInfo,
  findLeader,
  type LeaderInfo,
  openCommandSession,
  type PublicationInfo,
  readDatabaseInfo,
  readPublication,
  readSlot,
  type SlotInfo,
} from './inspect.js';

const EXIT_OK = 0;
const EXIT_ATTENTION = 1;

/** PostgreSQL error codes for a missing table and a missing schema. */
const MISSING_RELATION_CODES = new Set(['42P01', '3F000']);

export interface StatusOptions {
  readonly config: string;
  readonly json?: boolean;
}

interface DeadLetterStatus {
  readonly table: string;
  readonly exists: boolean;
  /** Error message when the table exists but could not be read. */
  readonly error: string | null;
  readonly byTrigger: readonly { trigger: string; pending: number; total: number; newestAt: string }[];
}

/** Everything `status` read, as `--json` prints it. Byte counts are decimal strings. */
interface StatusReport {
  readonly healthy: boolean;
  /** Problems that need attention, one sentence each, with the remedy where one is known. */
  readonly attention: readonly string[];
  readonly database: DatabaseInfo;
  readonly slot: ReturnType<typeof slotJson>;
  readonly publication: PublicationInfo & { readonly missingTables: readonly string[] };
  readonly leader: (Omit<LeaderInfo, 'backendStart'> & { readonly backendStart: string | null }) | null;
  readonly deadLetters: DeadLetterStatus;
  readonly tables: { readonly checked: readonly string[]; readonly findings: readonly Finding[] };
}

const EXIT_CODE_HELP = `
Exit codes:
  0  everything is healthy
  1  something needs attention (listed at the end), or the database cannot be read
  2  invalid configuration or usage
`;

/** Adds the `status` command to the program. */
export function addStatusCommand(program: Command): void {
  program
    .command('status')
    .description('print the state of the slot, publication, leader, dead letters and tables')
    .requiredOption('-c, --config <file>', 'path to the YAML configuration file')
    .option('--json', 'print one JSON object instead of text')
    .addHelpText('after', EXIT_CODE_HELP)
    .action(async (options: StatusOptions) => {
      process.exitCode = await statusCommand(options);
    });
}

export async function statusCommand(options: StatusOptions): Promise<number> {
  const config = loadConfigOrExitCode(options.config);
  if (typeof config === 'number') return config;

  let report: StatusReport;
  try {
    report = await readStatus(config);
  } catch (error) {
    process.stderr.write(`error: reading the status failed: ${(error as Error).message}\n`);
    return EXIT_ATTENTION;
  }
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(formatReport(report, config));
  }
  return report.healthy ? EXIT_OK : EXIT_ATTENTION;
}

async function readStatus(config: WalhookConfig): Promise<StatusReport> {
  const { source } = config;
  const tables = uniqueTables(config);
  const client = await openCommandSession(source.connection);
  let database: DatabaseInfo;
  let slot: SlotInfo;
  let publication: PublicationInfo;
  let leader: LeaderInfo | null;
  const findings: Finding[] = [];
  try {
    database = await readDatabaseInfo(client);
    slot = await readSlot(client, source.slot, database.serverVersionNum);
    publication = await readPublication(client, source.publication);
    leader = await findLeader(client, database.name, source.slot);
    await checkTables(client, tables, findings);
  } finally {
    await client.end().catch(() => undefined);
  }
  const deadLetters = await readDeadLetters(config);

  const condition = assessSlot(slot, source.maxLagBytes);
  const missingTables = publication.allTables
    ? []
    : tables.map(formatTable).filter((table) => !publication.tables.includes(table));
  const attention = [
    ...databaseAttention(database),
    ...slotAttention(config, slot, condition),
    ...publicationAttention(publication, missingTables),
    ...leaderAttention(source.slot, slot, leader),
    ...findings.filter((finding) => finding.level === 'error').map((finding) => finding.message),
    ...deadLetterAttention(deadLetters),
  ];

  return {
    healthy: attention.length === 0,
    attention,
    database,
    slot: slotJson(slot, condition, source.maxLagBytes),
    publication: { ...publication, missingTables },
    leader: leader === null ? null : { ...leader, backendStart: leader.backendStart?.toISOString() ?? null },
    deadLetters,
    tables: { checked: tables.map(formatTable), findings },
  };
}

async function readDeadLetters(config: WalhookConfig): Promise<DeadLetterStatus> {
  const store = new DeadLetterStore({
    connection: config.source.connection,
    schema: config.deadLetters.schema,
    maxConnections: 1,
  });
  try {
    const summaries = await store.summarizeByTrigger();
    return {
      table: store.table,
      exists: true,
      error: null,
      byTrigger: summaries.map((summary) => ({ ...summary, newestAt: summary.newestAt.toISOString() })),
    };
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && MISSING_RELATION_CODES.has(code)) {
      return { table: store.table, exists: false, error: null, byTrigger: [] };
    }
    return { table: store.table, exists: true, error: (error as Error).message, byTrigger: [] };
  } finally {
    await store.close().catch(() => undefined);
  }
}

function slotJson(slot: SlotInfo, condition: SlotCondition, maxRetainedBytes: bigint) {
  return {
    name: slot.name,
    condition,
    exists: slot.exists,
    active: slot.active,
    activePid: slot.activePid,
    plugin: slot.plugin,
    slotType: slot.slotType,
    database: slot.database,
    walStatus: slot.walStatus,
    invalidationReason: slot.invalidationReason,
    confirmedFlushLsn: slot.confirmedFlushLsn,
    lagBytes: textOrNull(slot.lagBytes),
    lagSeconds: slot.lagSeconds,
    retainedBytes: textOrNull(slot.retainedBytes),
    maxRetainedBytes: String(maxRetainedBytes),
    safeWalSizeBytes: textOrNull(slot.safeWalSizeBytes),
  };
}

function databaseAttention(database: DatabaseInfo): string[] {
  if (database.walLevel === 'logical') return [];
  return [
    `wal_level is '${database.walLevel}', but logical decoding needs 'logical': run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL`,
  ];
}

function slotAttention(config: WalhookConfig, slot: SlotInfo, condition: SlotCondition): string[] {
  const { source } = config;
  const name = source.slot;
  const messages: string[] = [];
  switch (condition) {
    case 'missing':
      return [`replication slot '${name}' does not exist; the walhook replica that leads creates it, so start walhook`];
    case 'lost':
      return [slotLostError(name, slot).message];
    case 'unreserved':
      messages.push(unreservedMessage(name, slot));
      break;
    case 'over_limit':
      messages.push(overLimitMessage(name, slot, source.maxLagBytes));
      break;
    case 'ok':
      break;
    default: {
      const unreachable: never = condition;
      throw new Error(`unhandled slot condition ${String(unreachable)}`);
    }
  }
  if (slot.slotType !== 'logical') {
    messages.push(`replication slot '${name}' is a ${slot.slotType ?? 'unknown'} slot; choose another source.slot name`);
  } else if (slot.plugin !== source.plugin) {
    messages.push(`replication slot '${name}' uses plugin '${slot.plugin}' but source.plugin is '${source.plugin}'`);
  }
  if (!slot.active) {
    messages.push(`replication slot '${name}' is not active: no walhook replica streams from it, so WAL accumulates`);
  }
  return messages;
}

function publicationAttention(publication: PublicationInfo, missingTables: readonly string[]): string[] {
  if (!publication.exists) {
    return [`publication '${publication.name}' does not exist; walhook creates it at start`];
  }
  return missingTables.map(
    (table) =>
      `table ${table} is not in publication '${publication.name}', so its changes are not streamed; ` +
      'walhook adds it at its next start',
  );
}

function leaderAttention(slotName: string, slot: SlotInfo, leader: LeaderInfo | null): string[] {
  if (leader !== null) return [];
  const holder = slot.active && slot.activePid !== null ? ` (the slot is used by process ${slot.activePid})` : '';
  return [`no walhook replica holds the leader lock of slot '${slotName}'${holder}; start walhook`];
}

function deadLetterAttention(deadLetters: DeadLetterStatus): string[] {
  if (deadLetters.error !== null) {
    return [`reading ${deadLetters.table} failed: ${deadLetters.error}`];
  }
  const pending = deadLetters.byTrigger.filter((entry) => entry.pending > 0);
  if (pending.length === 0) return [];
  const total = pending.reduce((sum, entry) => sum + entry.pending, 0);
  const perTrigger = pending.map((entry) => `${entry.trigger}: ${entry.pending}`).join(', ');
  return [
    `${total} dead letters are pending (${perTrigger}); inspect them with walhook dead-letters list, ` +
      'then redeliver or purge them',
  ];
}

/** Formats the report as aligned sections, with what needs attention at the end. */
function formatReport(report: StatusReport, config: WalhookConfig): string {
  const { slot, publication, leader, deadLetters, tables, database } = report;
  const lines: string[] = [
    `database ${database.name}, PostgreSQL ${database.serverVersion}, wal_level ${database.walLevel}`,
    '',
    'replication slot',
    ...aligned([
      ['name', slot.name],
      ['condition', slot.condition],
      ['exists', yesNo(slot.exists)],
      ['active', slot.active ? `yes (process ${slot.activePid ?? 'unknown'})` : 'no'],
      ['plugin', slot.plugin ?? '-'],
      ['wal_status', slot.walStatus ?? '-'],
      ['confirmed_flush_lsn', slot.confirmedFlushLsn ?? '-'],
      ['lag', bytesText(slot.lagBytes) + (slot.lagSeconds === null ? '' : `, ${slot.lagSeconds.toFixed(1)} s`)],
      ['retained WAL', `${bytesText(slot.retainedBytes)} (source.max_lag_bytes ${formatBytes(config.source.maxLagBytes)})`],
    ]),
    '',
    'publication',
    ...aligned([
      ['name', publication.name],
      ['exists', yesNo(publication.exists)],
      ['tables', publication.allTables ? 'all tables' : listText(publication.tables)],
      ['missing tables', listText(publication.missingTables)],
    ]),
    '',
    'leader',
    ...(leader === null
      ? ['  no replica holds the leader lock']
      : aligned([
          ['lock session pid', String(leader.pid)],
          ['application_name', leader.applicationName ?? '-'],
          ['client_addr', leader.clientAddr === null ? '-' : `${leader.clientAddr}:${leader.clientPort ?? '?'}`],
          ['backend_start', leader.backendStart ?? '-'],
        ])),
    '',
    `dead letters (${deadLetters.table})`,
    ...deadLetterLines(deadLetters),
    '',
    'tables',
    ...tableLines(tables),
    '',
  ];
  if (report.attention.length === 0) {
    lines.push('healthy: nothing needs attention');
  } else {
    lines.push('needs attention:', ...report.attention.map((message) => `  - ${message}`));
  }
  return `${lines.join('\n')}\n`;
}

function deadLetterLines(deadLetters: DeadLetterStatus): string[] {
  if (deadLetters.error !== null) return [`  reading the table failed: ${deadLetters.error}`];
  if (!deadLetters.exists) return ['  the table does not exist yet: no event was dead-lettered'];
  if (deadLetters.byTrigger.length === 0) return ['  none'];
  const rows = [
    ['trigger', 'pending', 'total', 'newest'],
    ...deadLetters.byTrigger.map((entry) => [entry.trigger, String(entry.pending), String(entry.total), entry.newestAt]),
  ];
  return columns(rows).map((line) => `  ${line}`);
}

function tableLines(tables: StatusReport['tables']): string[] {
  if (tables.checked.length === 0) return ['  no trigger reads a table'];
  const lines = [`  checked ${listText(tables.checked)}`];
  for (const finding of tables.findings) lines.push(`  ${finding.level}: ${finding.message}`);
  if (tables.findings.length === 0) lines.push('  every table exists and has a key for updates and deletes');
  return lines;
}

function aligned(pairs: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(...pairs.map(([label]) => label.length));
  return pairs.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`);
}

function columns(rows: readonly (readonly string[])[]): string[] {
  const widths = (rows[0] ?? []).map((_, column) => Math.max(...rows.map((cells) => (cells[column] ?? '').length)));
  return rows.map((cells) =>
    cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('  '),
  );
}

function uniqueTables(config: WalhookConfig): TableName[] {
  const seen = new Map<string, TableName>();
  for (const trigger of config.triggers) seen.set(formatTable(trigger.table), trigger.table);
  return [...seen.values()];
}

function formatTable(table: TableName): string {
  return `${table.schema}.${table.name}`;
}

function listText(items: readonly string[]): string {
  return items.length === 0 ? 'none' : items.join(', ');
}

function bytesText(text: string | null): string {
  return text === null ? '-' : `${formatBytes(BigInt(text))} (${text} bytes)`;
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

function textOrNull(value: bigint | null): string | null {
  return value === null ? null : String(value);
}
