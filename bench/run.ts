/**
 * `npm run bench`: measures walhook against pg_recvlogical and a trigger baseline on a
 * throwaway PostgreSQL server, writes bench/results/<timestamp>.json, prints it on
 * stdout and rewrites this scale's section of BENCHMARKS.md. Progress goes to stderr.
 *
 * Exit codes: 0 when every phase ran (targets may still fail), 1 when a phase or the
 * build failed, 2 for invalid options or missing PostgreSQL programs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs, promisify } from 'node:util';

import type { TestPostgres } from '../test/helpers/postgres.js';
import { measureDrain, type DrainResult } from './drain.js';
import { measureLatency, type LatencyRun } from './latency.js';
import { updateBenchmarksFile } from './markdown.js';
import { measureSlowReceiverMemory, type MemoryResult } from './memory.js';
import { measureOverhead, type OverheadResult } from './overhead.js';
import {
  DEBIAN_PG15_BIN_DIR,
  SERVER_SETTINGS,
  locateTools,
  programVersion,
  startBenchServer,
  type PostgresTools,
} from './postgres-tools.js';
import { BenchReceiver } from './receiver.js';
import { evaluateTargets, type BenchResults, type MachineInfo, type Versions } from './results.js';
import { FULL_SCALE, QUICK_SCALE, type BenchScale } from './scale.js';
import { drainWorkloads } from './workloads.js';
import { BENCH_BATCH_SETTINGS, REPO_ROOT, WALHOOK_NODE_OPTIONS, isBatchingConfigurable } from './walhook-runner.js';

const execFileAsync = promisify(execFile);

const PHASES = ['drain', 'memory', 'latency', 'overhead'] as const;
type Phase = (typeof PHASES)[number];

const USAGE = `usage: npm run bench -- [options]

Runs the walhook benchmark on a throwaway PostgreSQL server on 127.0.0.1.

options:
  --quick                 workloads at 1/10 and shorter timed runs (a few minutes)
  --pg-bin DIR            PostgreSQL bin directory with pgbench and pg_recvlogical
                          (default: $WALHOOK_BENCH_PG_BINDIR or ${DEBIAN_PG15_BIN_DIR})
  --only PHASES           comma-separated subset of: ${PHASES.join(', ')}
  --workloads IDS         comma-separated drain workloads (default: W1,W2,W3-default,W3-full,W4)
  --profile IDS           workloads whose walhook drain is also run under --cpu-prof
                          (default: W1; 'none' for none)
  --max-drain-seconds N   time limit of each walhook drain in seconds
                          (default: 600, or 60 with --quick)
  --no-build              use dist/ as it is instead of running npm run build first
  --no-markdown           do not rewrite BENCHMARKS.md (runs with --only or
                          --workloads never rewrite it)
  -h, --help              print this help

environment:
  WALHOOK_BENCH_PG_BINDIR     default of --pg-bin
  WALHOOK_BENCH_NODE_OPTIONS  Node.js options for every walhook process, separated
                              by spaces, such as --max-old-space-size=128
`;

interface Options {
  readonly scale: BenchScale;
  readonly pgBinDir: string;
  readonly phases: ReadonlySet<Phase>;
  readonly workloads: ReadonlySet<string> | null;
  readonly profileWorkloads: ReadonlySet<string>;
  readonly maxDrainSeconds: number;
  readonly build: boolean;
  readonly markdown: boolean;
}

function log(message: string): void {
  const time = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[bench ${time}] ${message}\n`);
}

function parseOptions(argv: string[]): Options | { error: string } | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean', default: false },
        'pg-bin': { type: 'string' },
        only: { type: 'string' },
        workloads: { type: 'string' },
        profile: { type: 'string' },
        'max-drain-seconds': { type: 'string' },
        'no-build': { type: 'boolean', default: false },
        'no-markdown': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    return { error: (error as Error).message };
  }
  const values = parsed.values;
  if (values.help) return 'help';
  const scale = values.quick ? QUICK_SCALE : FULL_SCALE;

  const phases = new Set<Phase>();
  for (const name of (values.only ?? PHASES.join(',')).split(',')) {
    if (!(PHASES as readonly string[]).includes(name)) {
      return { error: `invalid phase '${name}' in --only; expected some of ${PHASES.join(', ')}` };
    }
    phases.add(name as Phase);
  }

  const knownWorkloads = drainWorkloads(scale).map((workload) => workload.id);
  const listOf = (text: string | undefined, option: string): Set<string> | { error: string } | null => {
    if (text === undefined) return null;
    if (text === 'none') return new Set();
    const ids = text.split(',');
    const unknown = ids.filter((id) => !knownWorkloads.includes(id));
    if (unknown.length > 0) {
      return { error: `unknown workload ${unknown.join(', ')} in ${option}; expected some of ${knownWorkloads.join(', ')}` };
    }
    return new Set(ids);
  };
  const workloads = listOf(values.workloads, '--workloads');
  if (workloads !== null && 'error' in workloads) return workloads;
  const profileWorkloads = listOf(values.profile, '--profile') ?? new Set(['W1']);
  if ('error' in profileWorkloads) return profileWorkloads;

  const defaultLimit = scale.name === 'quick' ? 60 : 600;
  const maxDrainSeconds = values['max-drain-seconds'] === undefined ? defaultLimit : Number(values['max-drain-seconds']);
  if (!Number.isFinite(maxDrainSeconds) || maxDrainSeconds <= 0) {
    return { error: `invalid --max-drain-seconds '${values['max-drain-seconds']}': expected a positive number of seconds` };
  }

  return {
    scale,
    pgBinDir: values['pg-bin'] ?? (process.env.WALHOOK_BENCH_PG_BINDIR || DEBIAN_PG15_BIN_DIR),
    phases,
    workloads,
    profileWorkloads,
    maxDrainSeconds,
    build: !values['no-build'],
    markdown: !values['no-markdown'],
  };
}

/** Returns the command line that started this run, as the user typed it. */
function commandLine(argv: readonly string[]): string {
  const quoted = argv.map((arg) => (/^[\w./=,:-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`));
  if (process.env.npm_lifecycle_event === 'bench') {
    return quoted.length === 0 ? 'npm run bench' : `npm run bench -- ${quoted.join(' ')}`;
  }
  return ['node --import tsx bench/run.ts', ...quoted].join(' ');
}

function machineInfo(loadAtStart: number[]): MachineInfo {
  let cpuModel = 'unknown';
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    const field = (name: string): string | undefined => new RegExp(`^${name}\\s*:\\s*(.+)$`, 'm').exec(cpuinfo)?.[1]?.trim();
    const family = field('cpu family');
    const model = field('model');
    cpuModel = `${field('model name') ?? 'unknown'}${family === undefined ? '' : ` (family ${family}, model ${model})`}`;
  } catch {
    // Not Linux: the model stays unknown.
  }
  return {
    cpuModel,
    cores: availableParallelism(),
    memoryBytes: totalmem(),
    kernel: release(),
    loadAverage: { start: loadAtStart, end: loadavg() },
  };
}

async function git(args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', args, { cwd: REPO_ROOT });
  return stdout.trim();
}

async function sourceDigest(): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (directory: string): Promise<void> => {
    const entries = (await readdir(directory, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) {
        await walk(path);
      } else {
        hash.update(relative(REPO_ROOT, path)).update('\0').update(await readFile(path)).update('\0');
      }
    }
  };
  await walk(join(REPO_ROOT, 'src'));
  return hash.digest('hex');
}

async function versions(server: TestPostgres, tools: PostgresTools): Promise<Versions> {
  const rows = await server.query<{ version: string }>('SELECT version()');
  let commit = 'unknown';
  let uncommitted: string[] = [];
  try {
    commit = await git(['rev-parse', 'HEAD']);
    const status = await git(['status', '--porcelain', '--', 'src']);
    uncommitted = status === '' ? [] : status.split('\n').map((line) => line.slice(3));
  } catch {
    // Not a git checkout: the commit stays unknown.
  }
  return {
    node: process.version,
    postgres: rows[0]?.version.split(',')[0] ?? 'unknown',
    pgRecvlogical: await programVersion(tools.pgRecvlogical),
    pgbench: await programVersion(tools.pgbench),
    walhookCommit: commit,
    walhookUncommittedFiles: uncommitted,
    walhookSourceDigest: await sourceDigest(),
  };
}

async function build(): Promise<void> {
  log('building dist/ with npm run build');
  try {
    await execFileAsync('npm', ['run', 'build'], { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string };
    throw new Error(`npm run build failed:\n${failure.stdout ?? ''}${failure.stderr ?? ''}`);
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if ('error' in options) {
    process.stderr.write(`${options.error}\n\n${USAGE}`);
    return 2;
  }
  const tools = await locateTools(options.pgBinDir);
  if ('error' in tools) {
    process.stderr.write(`${tools.error}\n`);
    return 2;
  }

  const startedAt = new Date();
  const loadAtStart = loadavg();
  if ((loadAtStart[0] ?? 0) > 0.5) {
    log(`load average is ${loadAtStart.map((value) => value.toFixed(2)).join(', ')}: other processes use the CPUs, so the numbers will be noisier`);
  }
  const command = commandLine(argv);
  log(`${command}: ${options.scale.name} scale, phases ${[...options.phases].join(', ')}`);
  if (options.build) {
    try {
      await build();
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\n`);
      return 1;
    }
  }
  const batching = await isBatchingConfigurable();
  log(batching.available ? 'batching is configurable: measuring batched drains' : 'batching is not configurable yet: measuring per-event drains only');

  const timestamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(REPO_ROOT, 'bench', 'results');
  const profileDir = join(resultsDir, timestamp);
  await mkdir(resultsDir, { recursive: true });
  const workDir = await mkdtemp(join(tmpdir(), 'walhook-bench-work-'));

  log(`starting PostgreSQL from ${tools.binDir}`);
  const server = await startBenchServer(tools);
  const receiver = await BenchReceiver.start();
  const errors: string[] = [];
  const drain: DrainResult[] = [];
  let latency: LatencyRun[] | null = null;
  let overhead: OverheadResult | null = null;
  let slowReceiver: MemoryResult | null = null;
  let versionInfo: Versions;

  const runPhase = async (phase: Phase, work: () => Promise<void>): Promise<void> => {
    if (!options.phases.has(phase)) return;
    log(`phase ${phase}`);
    try {
      await work();
    } catch (error) {
      const message = `${phase}: ${(error as Error).stack ?? String(error)}`;
      errors.push(message);
      log(`phase ${phase} FAILED: ${message}`);
    }
  };

  try {
    versionInfo = await versions(server, tools);
    await runPhase('drain', async () => {
      for (const workload of drainWorkloads(options.scale)) {
        if (options.workloads !== null && !options.workloads.has(workload.id)) continue;
        drain.push(
          await measureDrain(
            {
              server,
              tools,
              receiver,
              batchingAvailable: batching.available,
              profileDir,
              profileWorkloads: options.profileWorkloads,
              maxDrainSeconds: options.maxDrainSeconds,
              profileSeconds: options.scale.name === 'quick' ? 15 : 30,
              log,
            },
            workload,
          ),
        );
      }
    });
    await runPhase('memory', async () => {
      slowReceiver = await measureSlowReceiverMemory({ server, receiver, scale: options.scale, log });
    });
    await runPhase('latency', async () => {
      latency = await measureLatency({ server, tools, receiver, scale: options.scale, workDir, log });
    });
    await runPhase('overhead', async () => {
      overhead = await measureOverhead({ server, tools, receiver, scale: options.scale, workDir, log });
    });
  } finally {
    await receiver.close();
    await server.close();
    await rm(workDir, { recursive: true, force: true });
  }

  const w2 = drain.find((result) => result.workload === 'W2')?.measurements.find((m) => m.consumer === 'walhook per-event');
  const partial = {
    formatVersion: 1 as const,
    startedAt: startedAt.toISOString(),
    command,
    scale: options.scale,
    maxDrainSeconds: options.maxDrainSeconds,
    machine: machineInfo(loadAtStart),
    versions: versionInfo,
    serverSettings: SERVER_SETTINGS,
    batching: { available: batching.available, detail: batching.detail, settings: BENCH_BATCH_SETTINGS },
    walhookNodeOptions: WALHOOK_NODE_OPTIONS,
    drain,
    latency,
    overhead,
    memory: { slowReceiver, w2PeakRssBytes: w2?.peakRssBytes ?? null },
    errors,
  };
  const finishedAt = new Date();
  const results: BenchResults = {
    ...partial,
    finishedAt: finishedAt.toISOString(),
    durationSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    targets: evaluateTargets(partial),
  };

  const resultsFile = join(resultsDir, `${timestamp}.json`);
  const json = JSON.stringify(results, null, 2);
  await writeFile(resultsFile, `${json}\n`);
  process.stdout.write(`${json}\n`);
  log(`results written to ${relative(REPO_ROOT, resultsFile)}`);
  // A run of some phases or workloads must not replace the published run of its scale.
  const completeRun = options.phases.size === PHASES.length && options.workloads === null;
  if (options.markdown && completeRun) {
    await updateBenchmarksFile(join(REPO_ROOT, 'BENCHMARKS.md'), results);
    log(`BENCHMARKS.md updated (${options.scale.name} run section)`);
  } else if (options.markdown) {
    log('BENCHMARKS.md not updated: --only or --workloads ran part of the benchmark');
  }
  for (const target of results.targets) log(`target ${target.id}: ${target.status} (${target.measured})`);
  return errors.length > 0 || drain.some((result) => result.errors.length > 0) ? 1 : 0;
}

process.exitCode = await main();
