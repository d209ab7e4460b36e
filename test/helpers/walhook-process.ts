import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

import { trackResource } from './cleanup.js';

/** Repository root, the working directory of the walhook process. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** pino's numeric log levels. */
export const LOG_LEVEL = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
} as const;

/** One pino log line from the walhook process. `msg` is '' when the line has none. */
export interface LogEntry {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface ExitStatus {
  /** Exit code, or null when a signal ended the process. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface StartWalhookOptions {
  /** Configuration: an object, which is written as YAML, or YAML text. */
  config: object | string;
  /** Variables added to this process's environment. An undefined value removes one. */
  env?: Record<string, string | undefined>;
  /** Arguments after `run --config FILE`. */
  args?: string[];
  /** Script to run, relative to the repository root. Default `src/cli/main.ts`. */
  entryPoint?: string;
  /**
   * Test context, such as node:test's `t`. Its after hook kills the process if it is
   * still running. Without it, the process is killed when the test file ends.
   */
  t?: { after(fn: () => unknown): void };
}

export interface WaitForLogOptions {
  /** Deadline. Default 10 000 ms. */
  timeoutMs?: number;
  /** Index in `logs` where the search starts, to skip earlier matches. Default 0. */
  fromIndex?: number;
}

/** Number of stdout and stderr lines that an error message shows. */
const OUTPUT_TAIL_LINES = 20;

/**
 * Writes the configuration to a temporary file and starts
 * `node --import tsx src/cli/main.ts run --config FILE` in the repository root.
 */
export async function startWalhook(options: StartWalhookOptions): Promise<WalhookProcess> {
  const configDir = await mkdtemp(join(tmpdir(), 'walhook-config-'));
  const configPath = join(configDir, 'walhook.yaml');
  // Tests run several walhook processes at once: serve on a free loopback port unless
  // the test configures the server itself.
  const config =
    typeof options.config === 'object' && !('server' in options.config)
      ? { ...options.config, server: { host: '127.0.0.1', port: 0 } }
      : options.config;
  const text = typeof config === 'string' ? config : YAML.stringify(config);
  await writeFile(configPath, text, { mode: 0o600 });

  const entryPoint = options.entryPoint ?? 'src/cli/main.ts';
  const args = ['--import', 'tsx', entryPoint, 'run', '--config', configPath, ...(options.args ?? [])];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: childEnvironment(options.env ?? {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  const walhook = new WalhookProcess(child, configDir, configPath);
  options.t?.after(() => walhook.close());
  return walhook;
}

function childEnvironment(overrides: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...overrides };
  // node --test sets this in test files. A child that inherits it would act as a
  // test-runner child if it ever loaded node:test.
  delete env.NODE_TEST_CONTEXT;
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) {
      delete env[name];
    }
  }
  return env;
}

/** A running walhook process and everything it has written so far. */
export class WalhookProcess {
  readonly configPath: string;
  /** stdout lines that parsed as pino JSON, in order. */
  readonly logs: LogEntry[] = [];
  /** Every stdout line, including lines that are not JSON. */
  readonly stdoutLines: string[] = [];
  readonly stderrLines: string[] = [];

  readonly #child: ChildProcess;
  readonly #configDir: string;
  readonly #listeners = new Set<() => void>();
  #exitStatus: ExitStatus | undefined;
  #spawnError: Error | undefined;
  /** True after the process exited and stdout and stderr are fully read. */
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #untrack: () => void;

  constructor(child: ChildProcess, configDir: string, configPath: string) {
    this.#child = child;
    this.#configDir = configDir;
    this.configPath = configPath;

    createInterface({ input: child.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      this.#addStdoutLine(line);
    });
    createInterface({ input: child.stderr!, crlfDelay: Infinity }).on('line', (line) => {
      this.stderrLines.push(line);
    });
    child.once('exit', (code, signal) => {
      this.#exitStatus = { code, signal };
    });
    child.once('error', (error) => {
      this.#spawnError = error;
      this.#markClosed();
    });
    child.once('close', () => this.#markClosed());

    this.#untrack = trackResource({
      description: `walhook process ${child.pid ?? '(not started)'}`,
      close: () => this.close(),
      closeSync: () => this.#closeSync(),
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Exit code and signal, or undefined while the process runs. */
  get exitStatus(): ExitStatus | undefined {
    return this.#exitStatus;
  }

  /**
   * Resolves with the first log entry at or after `fromIndex` whose `msg` contains
   * `match`, or for which `match` returns true. Rejects when the deadline passes or the
   * process exits first, with the output tail in the message.
   */
  waitForLog(
    match: string | ((entry: LogEntry) => boolean),
    options: WaitForLogOptions = {},
  ): Promise<LogEntry> {
    const matches =
      typeof match === 'string' ? (entry: LogEntry) => entry.msg.includes(match) : match;
    const description =
      typeof match === 'string'
        ? `a log entry whose msg contains '${match}'`
        : 'a log entry that satisfies the predicate';
    let nextIndex = options.fromIndex ?? 0;

    return this.#waitUntil(
      () => {
        for (; nextIndex < this.logs.length; nextIndex += 1) {
          const entry = this.logs[nextIndex];
          if (entry !== undefined && matches(entry)) {
            return entry;
          }
        }
        return undefined;
      },
      description,
      options.timeoutMs ?? 10_000,
    );
  }

  /** Resolves with the exit status once the process has exited and its output is read. */
  waitForExit(options: { timeoutMs?: number } = {}): Promise<ExitStatus> {
    return this.#waitUntil(
      () => (this.#closed ? this.#finalStatus() : undefined),
      'the process to exit',
      options.timeoutMs ?? 10_000,
    );
  }

  /** Sends `signal` to the process. Returns false when it has already exited. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.#exitStatus !== undefined || this.#closed) {
      return false;
    }
    return this.#child.kill(signal);
  }

  /**
   * Sends SIGTERM and waits for the exit. When the process outlives `timeoutMs`, kills
   * it with SIGKILL and rejects, because walhook must shut down on SIGTERM.
   */
  async stop(options: { timeoutMs?: number } = {}): Promise<ExitStatus> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    this.kill('SIGTERM');
    try {
      return await this.waitForExit({ timeoutMs });
    } catch (error) {
      this.kill('SIGKILL');
      await this.waitForExit({ timeoutMs: 5_000 }).catch(() => undefined);
      throw new Error(
        `walhook did not exit within ${timeoutMs} ms of SIGTERM, so it was killed with SIGKILL`,
        { cause: error },
      );
    }
  }

  /** Kills the process with SIGKILL if it still runs and deletes the config file. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#untrack();
    if (this.kill('SIGKILL')) {
      await this.waitForExit({ timeoutMs: 10_000 });
    }
    await rm(this.#configDir, { recursive: true, force: true });
  }

  #closeSync(): void {
    this.kill('SIGKILL');
    rmSync(this.#configDir, { recursive: true, force: true });
  }

  #addStdoutLine(line: string): void {
    this.stdoutLines.push(line);
    const entry = parseLogLine(line);
    if (entry !== undefined) {
      this.logs.push(entry);
    }
    this.#notify();
  }

  #markClosed(): void {
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) {
      listener();
    }
  }

  #finalStatus(): ExitStatus {
    return this.#exitStatus ?? { code: null, signal: null };
  }

  /**
   * Resolves with the first value that `check` returns other than undefined. `check`
   * runs now, on every output line and when the process closes.
   */
  #waitUntil<T>(check: () => T | undefined, description: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const finish = (error: Error | undefined, value?: T): void => {
        clearTimeout(timer);
        this.#listeners.delete(listener);
        if (error === undefined) {
          resolve(value as T);
        } else {
          reject(error);
        }
      };
      const listener = (): void => {
        let value: T | undefined;
        try {
          value = check();
        } catch (error) {
          finish(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (value !== undefined) {
          finish(undefined, value);
        } else if (this.#closed) {
          finish(new Error(`walhook ${this.#describeEnd()} before ${description}\n${this.#outputTail()}`));
        }
      };
      const timer = setTimeout(() => {
        const message = `timed out after ${timeoutMs} ms waiting for ${description}`;
        finish(new Error(`${message}\n${this.#outputTail()}`));
      }, timeoutMs);

      this.#listeners.add(listener);
      listener();
    });
  }

  #describeEnd(): string {
    if (this.#spawnError !== undefined) {
      return `failed to start (${this.#spawnError.message})`;
    }
    const status = this.#finalStatus();
    return status.signal === null
      ? `exited with code ${status.code}`
      : `was ended by ${status.signal}`;
  }

  #outputTail(): string {
    const stdout = this.stdoutLines.slice(-OUTPUT_TAIL_LINES);
    const stderr = this.stderrLines.slice(-OUTPUT_TAIL_LINES);
    return [
      `last ${stdout.length} stdout line(s):`,
      ...stdout.map((line) => `  ${line}`),
      `last ${stderr.length} stderr line(s):`,
      ...stderr.map((line) => `  ${line}`),
    ].join('\n');
  }
}

/** Parses a pino JSON line. Returns undefined for a line without a numeric `level`. */
export function parseLogLine(line: string): LogEntry | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return undefined;
  }
  const fields = parsed as Record<string, unknown>;
  if (typeof fields.level !== 'number') {
    return undefined;
  }
  return { ...fields, level: fields.level, msg: typeof fields.msg === 'string' ? fields.msg : '' };
}
