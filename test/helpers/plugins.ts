import pg from 'pg';

import type { TestPostgres } from './postgres.js';
import type { Receiver } from './receiver.js';
import { compareLsn, currentWalLsn, slotState } from './replication.js';
import { skipOrFail } from './skip.js';
import type { SkippableTest } from './skip.js';
import { waitFor } from './wait.js';
import type { WebhookEvent } from './webhook-events.js';

/** The output plugins that walhook decodes. Tests of row content run under each. */
export const PLUGINS = ['pgoutput', 'wal2json'] as const;
export type Plugin = (typeof PLUGINS)[number];

/** The fields that walhook adds to `event` for partial rows and truncates. */
export interface RowImageEvent extends WebhookEvent {
  readonly event: WebhookEvent['event'] & {
    readonly old_row?: 'key' | 'full';
    readonly unchanged_columns?: readonly string[];
    readonly truncate?: { readonly cascade: boolean | null; readonly restart_identity: boolean | null };
  };
}

/**
 * Skips the test (or fails it under WALHOOK_CI=1) when `plugin` is wal2json and the
 * server lacks it. Returns true when the test should return.
 */
export async function skipWithoutPlugin(t: SkippableTest, server: TestPostgres, plugin: Plugin): Promise<boolean> {
  if (plugin === 'pgoutput' || (await server.hasPlugin(plugin))) {
    return false;
  }
  skipOrFail(
    t,
    `the wal2json output plugin is not installed for ${server.binaries.binDir} ` +
      '(Debian: postgresql-15-wal2json, then WALHOOK_TEST_PG_BINDIR=/usr/lib/postgresql/15/bin)',
  );
  return true;
}

/** A database of its own for one test, so that tests and plugins never share tables. */
export interface TestDatabase {
  readonly connectionString: string;
  query<Row extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Row[]>;
}

/** Creates database `name` and returns it. `t.after` closes its connections. */
export async function openDatabase(
  t: { after(fn: () => unknown): void },
  server: TestPostgres,
  name: string,
): Promise<TestDatabase> {
  const connectionString = await server.createDatabase(name);
  const pool = new pg.Pool({ connectionString, max: 2 });
  pool.on('error', () => undefined);
  t.after(() => pool.end());
  return {
    connectionString,
    async query<Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<Row[]> {
      return (await pool.query<Row>(sql, params)).rows;
    },
  };
}

export interface PluginConfigOptions {
  readonly plugin: Plugin;
  readonly database: TestDatabase;
  readonly receiver: Receiver;
  /** Slot name; also the publication name unless `publication` is set. */
  readonly slot: string;
  readonly publication?: string;
  /** Table names as the trigger's `table` takes them; each trigger is named `t0`, `t1`, .... */
  readonly tables: readonly string[];
}

/** Builds a walhook configuration with one webhook and one trigger per table. */
export function pluginConfig(options: PluginConfigOptions): object {
  return {
    source: {
      connection: options.database.connectionString,
      slot: options.slot,
      publication: options.publication ?? options.slot,
      plugin: options.plugin,
    },
    webhooks: [
      {
        name: 'receiver',
        url: options.receiver.url,
        timeout: '30s',
        retry: { initial_delay: '100ms', max_delay: '1s' },
      },
    ],
    triggers: options.tables.map((table, index) => ({ name: `t${index}`, table, webhook: 'receiver' })),
    log: { level: 'debug' },
    shutdown_timeout: '10s',
  };
}

/** Waits until the slot has confirmed the current end of the WAL. */
export async function waitForSlotToCatchUp(server: TestPostgres, slot: string, timeoutMs = 20_000): Promise<string> {
  const end = await currentWalLsn(server);
  await waitFor(
    async () => {
      const state = await slotState(server, slot);
      return state?.confirmedFlushLsn != null && compareLsn(state.confirmedFlushLsn, end) >= 0;
    },
    { timeoutMs, message: `slot ${slot} to confirm ${end}` },
  );
  return end;
}
