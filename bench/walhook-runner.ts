/**
 * Runs the compiled walhook CLI (`node dist/cli/main.js run --config FILE`), which is
 * what users run, and validates configurations with `walhook validate`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

/** Repository root, the working directory of every walhook process. */
export const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
export const WALHOOK_ENTRY_POINT = join(REPO_ROOT, 'dist', 'cli', 'main.js');

/**
 * Extra Node.js options for every walhook process, such as `--max-old-space-size=128`,
 * from WALHOOK_BENCH_NODE_OPTIONS, separated by spaces.
 */
export const WALHOOK_NODE_OPTIONS: readonly string[] = (process.env.WALHOOK_BENCH_NODE_OPTIONS ?? '')
  .split(' ')
  .filter((option) => option !== '');

/** Log message that walhook writes when the replication stream starts. */
const STREAMING_MESSAGE = 'streaming from the replication slot';
/** Lines of output kept for error messages. */
const OUTPUT_TAIL_LINES = 30;

/**
 * Batch settings the benchmark uses when the webhook schema accepts a `batch` key, in
 * the file's notation.
 */
export const BENCH_BATCH_SETTINGS = { max_events: 100, max_bytes: '1MiB', max_wait: '20ms' } as const;

export interface WalhookConfigOptions {
  readonly connection: string;
  readonly slot: string;
  readonly publication: string;
  /** Tables as `schema.table`; each gets a trigger for every operation. */
  readonly tables: readonly string[];
  readonly receiverUrl: string;
  readonly batched: boolean;
}

/** Builds a walhook configuration object, written to YAML by startBenchWalhook(). */
export function walhookConfig(options: WalhookConfigOptions): Record<string, unknown> {
  const webhook: Record<string, unknown> = {
    name: 'bench',
    url: options.receiverUrl,
    timeout: '60s',
  };
  if (options.batched) webhook.batch = { ...BENCH_BATCH_SETTINGS };
  return {
    source: { connection: options.connection, slot: options.slot, publication: options.publication },
    webhooks: [webhook],
    triggers: options.tables.map((table, index) => ({
      name: `bench_${index}`,
      table,
      webhook: 'bench',
    })),
    server: { enabled: false },
    log: { level: 'info' },
    // The benchmark stops walhook between runs without waiting for queued events. The
    // slot keeps them, and the next run uses another slot.
    shutdown_timeout: '5s',
  };
}

export interface StartBenchWalhookOptions {
  readonly config: Record<string, unknown>;
  /** Directory for `--cpu-prof` output; omitted runs without the profiler. */
  readonly cpuProfileDir?: string;
  /** CPUs for `taskset -c`; omitted runs on any CPU. */
  readonly cpuList?: string;
  /** File that receives walhook's stdout and stderr; omitted keeps only the last lines. */
  readonly logFile?: string;
}

/** walhook processes still running, killed when the benchmark exits early. */
const runningProcesses = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of runningProcesses) child.kill('SIGKILL');
});

export class BenchWalhook {
  readonly #child: ChildProcess;
  readonly #configDir: string;
  readonly #outputTail: string[] = [];
  readonly #exited: Promise<number | null>;
  #streamingAtMs: number | undefined;
  #onStreaming: (() => void) | undefined;

  private constructor(child: ChildProcess, configDir: string, logFile: string | undefined) {
    this.#child = child;
    this.#configDir = configDir;
    const log = logFile === undefined ? undefined : createWriteStream(logFile, { flags: 'a' });
    const remember = (line: string): void => {
      log?.write(`${line}\n`);
      this.#outputTail.push(line);
      if (this.#outputTail.length > OUTPUT_TAIL_LINES) this.#outputTail.shift();
    };
    createInterface({ input: child.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      remember(line);
      if (this.#streamingAtMs === undefined && line.includes(STREAMING_MESSAGE)) {
        this.#streamingAtMs = performance.now();
        this.#onStreaming?.();
      }
    });
    createInterface({ input: child.stderr!, crlfDelay: Infinity }).on('line', remember);
    runningProcesses.add(child);
    this.#exited = new Promise((resolve) => {
      child.once('error', () => resolve(null));
      child.once('exit', (code) => resolve(code));
    }).finally(() => runningProcesses.delete(child)) as Promise<number | null>;
  }

  static async start(options: StartBenchWalhookOptions): Promise<BenchWalhook> {
    const configDir = await mkdtemp(join(tmpdir(), 'walhook-bench-'));
    const configPath = join(configDir, 'walhook.yaml');
    await writeFile(configPath, YAML.stringify(options.config), { mode: 0o600 });

    const nodeArgs: string[] = [...WALHOOK_NODE_OPTIONS];
    if (options.cpuProfileDir !== undefined) {
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`);
    }
    nodeArgs.push(WALHOOK_ENTRY_POINT, 'run', '--config', configPath);
    const [command, args] =
      options.cpuList === undefined
        ? [process.execPath, nodeArgs]
        : ['taskset', ['--cpu-list', options.cpuList, process.execPath, ...nodeArgs]];
    const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    return new BenchWalhook(child, configDir, options.logFile);
  }

  /** Process id of walhook. taskset runs the program in its own process, so it is the same. */
  get pid(): number {
    return this.#child.pid ?? 0;
  }

  /**
   * Resolves with performance.now() at the moment walhook logged that it streams, or
   * rejects when it exits first or `timeoutMs` passes.
   */
  async waitForStreaming(timeoutMs = 60_000): Promise<number> {
    if (this.#streamingAtMs !== undefined) return this.#streamingAtMs;
    const streaming = new Promise<void>((resolve) => {
      this.#onStreaming = resolve;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([streaming.then(() => 'streaming' as const), this.#exited, timeout]);
    clearTimeout(timer);
    if (outcome !== 'streaming' || this.#streamingAtMs === undefined) {
      const reason = outcome === 'timeout' ? `did not stream within ${timeoutMs} ms` : `exited with ${outcome}`;
      throw new Error(`walhook ${reason}; last output:\n${this.outputTail()}`);
    }
    return this.#streamingAtMs;
  }

  outputTail(): string {
    return this.#outputTail.join('\n');
  }

  /**
   * Sends SIGTERM and waits for the exit. walhook waits for in-flight requests up to its
   * shutdown_timeout (30 s by default) before it exits; SIGKILL follows after `timeoutMs`.
   */
  async stop(timeoutMs = 45_000): Promise<number | null> {
    this.#child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([this.#exited, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#child.kill('SIGKILL');
      await this.#exited;
    }
    await rm(this.#configDir, { recursive: true, force: true });
    return outcome === 'timeout' ? null : outcome;
  }
}

/**
 * Tells whether `walhook validate` accepts a webhook with a `batch` key, so the
 * benchmark measures batched delivery as soon as the schema has it.
 */
export async function isBatchingConfigurable(): Promise<{ available: boolean; detail: string }> {
  const config = walhookConfig({
    connection: 'postgres://bench@127.0.0.1:5432/bench',
    slot: 'bench',
    publication: 'bench',
    tables: ['public.bench'],
    receiverUrl: 'http://127.0.0.1:9/hooks',
    batched: true,
  });
  const configDir = await mkdtemp(join(tmpdir(), 'walhook-bench-'));
  const configPath = join(configDir, 'walhook.yaml');
  await writeFile(configPath, YAML.stringify(config));
  try {
    const child = spawn(process.execPath, [WALHOOK_ENTRY_POINT, 'validate', '--config', configPath], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    return { available: code === 0, detail: output.trim() };
  } finally {
    await rm(configDir, { recursive: true, force: true });
  }
}
