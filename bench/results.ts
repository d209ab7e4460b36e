/**
 * The benchmark's result file (bench/results/<timestamp>.json) and the evaluation of
 * the targets that walhook's benchmark issue sets for a 2-core machine.
 */
import type { DrainResult } from './drain.js';
import type { LatencyRun } from './latency.js';
import type { MemoryResult } from './memory.js';
import type { OverheadResult } from './overhead.js';
import type { BenchScale } from './scale.js';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryBytes: number;
  readonly kernel: string;
  /**
   * 1, 5 and 15 minute load averages when the run started and ended. Values well above
   * 0 at the start mean other processes shared the machine and the numbers are noisier.
   */
  readonly loadAverage: { readonly start: number[]; readonly end: number[] };
}

export interface Versions {
  readonly node: string;
  readonly postgres: string;
  readonly pgRecvlogical: string;
  readonly pgbench: string;
  readonly walhookCommit: string;
  /** Files under src/ that differ from the commit when the run started. */
  readonly walhookUncommittedFiles: string[];
  /** SHA-256 over the paths and contents of src/, to tell apart runs of uncommitted code. */
  readonly walhookSourceDigest: string;
}

export type TargetStatus = 'pass' | 'fail' | 'not measured' | 'not yet configurable';

export interface TargetResult {
  readonly id: string;
  /** The target as the issue states it. */
  readonly target: string;
  /** The measured value in words, such as `0.012 × pg_recvlogical (W1)`. */
  readonly measured: string;
  /** The measured ratio or value that the threshold applies to. */
  readonly value: number | null;
  /** `≥ 0.8`, `≤ 10 ms` and the like. */
  readonly required: string;
  readonly status: TargetStatus;
}

export interface BenchResults {
  readonly formatVersion: 1;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationSeconds: number;
  readonly command: string;
  readonly scale: BenchScale;
  readonly maxDrainSeconds: number;
  readonly machine: MachineInfo;
  readonly versions: Versions;
  readonly serverSettings: Readonly<Record<string, string>>;
  readonly batching: { readonly available: boolean; readonly detail: string; readonly settings: unknown };
  /** Node.js options added to every walhook process (WALHOOK_BENCH_NODE_OPTIONS). */
  readonly walhookNodeOptions: readonly string[];
  readonly drain: DrainResult[];
  readonly latency: LatencyRun[] | null;
  readonly overhead: OverheadResult | null;
  readonly memory: { readonly slowReceiver: MemoryResult | null; readonly w2PeakRssBytes: number | null };
  readonly targets: TargetResult[];
  /** Phases that failed as a whole. */
  readonly errors: string[];
}

/** Decimal megabytes, the stricter reading of "150 MB". */
const MB = 1_000_000;

export function evaluateTargets(
  results: Omit<BenchResults, 'targets' | 'finishedAt' | 'durationSeconds'>,
): TargetResult[] {
  return [
    drainTarget(results, 'walhook batched', 0.8, 'drain-batched'),
    drainTarget(results, 'walhook per-event', 0.3, 'drain-per-event'),
    p99Target(results.latency),
    p50Target(results.latency),
    overheadTarget(results.overhead),
    memoryTarget(
      'memory-slow-receiver',
      'peak RSS at most 150 MB draining a 1,000,000-change backlog into a slow receiver',
      results.memory.slowReceiver?.peakRssBytes ?? null,
      150,
    ),
    memoryTarget('memory-w2', 'peak RSS at most 200 MB during W2', results.memory.w2PeakRssBytes, 200),
  ];
}

/** Returns drain rate of `consumer` divided by pg_recvlogical's, per workload. */
export function drainRatios(drain: readonly DrainResult[], consumer: string): { workload: string; ratio: number; complete: boolean }[] {
  const ratios: { workload: string; ratio: number; complete: boolean }[] = [];
  for (const result of drain) {
    const baseline = result.measurements.find((m) => m.consumer === 'pg_recvlogical');
    const measured = result.measurements.find((m) => m.consumer === consumer);
    if (baseline === undefined || measured === undefined) continue;
    ratios.push({
      workload: result.workload,
      ratio: measured.eventsPerSecond / baseline.eventsPerSecond,
      complete: measured.complete,
    });
  }
  return ratios;
}

function drainTarget(
  results: Pick<BenchResults, 'drain' | 'batching'>,
  consumer: 'walhook batched' | 'walhook per-event',
  threshold: number,
  id: string,
): TargetResult {
  const target =
    consumer === 'walhook batched'
      ? 'batched drain at least 0.8 times the pg_recvlogical rate'
      : 'per-event drain at least 0.3 times the pg_recvlogical rate';
  const required = `≥ ${threshold}`;
  if (consumer === 'walhook batched' && !results.batching.available) {
    return { id, target, measured: 'webhook `batch` key not in the config schema yet', value: null, required, status: 'not yet configurable' };
  }
  const ratios = drainRatios(results.drain, consumer);
  if (ratios.length === 0) return { id, target, measured: 'no drain measured', value: null, required, status: 'not measured' };
  const lowest = ratios.reduce((min, entry) => (entry.ratio < min.ratio ? entry : min));
  return {
    id,
    target,
    measured: `${lowest.ratio.toFixed(3)} × pg_recvlogical (lowest, ${lowest.workload}; ${ratios.map((r) => `${r.workload} ${r.ratio.toFixed(3)}`).join(', ')})`,
    value: lowest.ratio,
    required,
    status: lowest.ratio >= threshold ? 'pass' : 'fail',
  };
}

function p99Target(latency: readonly LatencyRun[] | null): TargetResult {
  const target = 'p99 commit-to-receipt at most 10 ms at 1,000 transactions per second';
  const required = '≤ 10 ms';
  const run = latency?.find((entry) => entry.capture === 'walhook' && entry.targetRate === 1000);
  if (run === undefined) return { id: 'latency-p99', target, measured: 'no walhook run at 1,000 tps', value: null, required, status: 'not measured' };
  if (run.p99Ms === null) {
    return {
      id: 'latency-p99',
      target,
      measured: `above every arrived event: ${run.missing} of ${run.samples} events had not arrived`,
      value: null,
      required,
      status: 'fail',
    };
  }
  return {
    id: 'latency-p99',
    target,
    measured: `${run.p99Ms.toFixed(1)} ms`,
    value: run.p99Ms,
    required,
    status: run.p99Ms <= 10 ? 'pass' : 'fail',
  };
}

function p50Target(latency: readonly LatencyRun[] | null): TargetResult {
  const target = "p50 at least 50 times lower than the trigger baseline's";
  const required = '≥ 50';
  if (latency === null) return { id: 'latency-p50-vs-trigger', target, measured: 'latency not measured', value: null, required, status: 'not measured' };
  const factors: { rate: number; factor: number | null }[] = [];
  for (const run of latency.filter((entry) => entry.capture === 'walhook')) {
    const trigger = latency.find((entry) => entry.capture === 'trigger' && entry.targetRate === run.targetRate);
    if (trigger === undefined) continue;
    const factor = run.p50Ms === null || trigger.p50Ms === null ? null : trigger.p50Ms / run.p50Ms;
    factors.push({ rate: run.targetRate, factor });
  }
  if (factors.length === 0) return { id: 'latency-p50-vs-trigger', target, measured: 'no pair of runs at one rate', value: null, required, status: 'not measured' };
  const known = factors.filter((entry) => entry.factor !== null) as { rate: number; factor: number }[];
  const lowest = known.length === factors.length ? Math.min(...known.map((entry) => entry.factor)) : null;
  const parts = factors.map((entry) => `${entry.rate} tps ${entry.factor === null ? 'n/a' : `${entry.factor.toFixed(1)}×`}`);
  return {
    id: 'latency-p50-vs-trigger',
    target,
    measured: `trigger p50 ÷ walhook p50: ${parts.join(', ')}`,
    value: lowest,
    required,
    status: lowest !== null && lowest >= 50 ? 'pass' : 'fail',
  };
}

function overheadTarget(overhead: OverheadResult | null): TargetResult {
  const target = 'pgbench TPS with walhook attached at least 0.9 times TPS with no capture';
  const required = '≥ 0.9';
  const pinned = overhead?.summaries.find((summary) => summary.placement === 'pinned');
  const shared = overhead?.summaries.find((summary) => summary.placement === 'shared');
  const judged = pinned ?? shared;
  if (judged === undefined) return { id: 'source-overhead', target, measured: 'overhead not measured', value: null, required, status: 'not measured' };
  const sharedText = shared === undefined || judged === shared ? '' : `; shared cores: ${shared.walhookRatio.toFixed(3)}`;
  return {
    id: 'source-overhead',
    target,
    measured: `${judged.walhookRatio.toFixed(3)} (${judged.placement} placement${sharedText})`,
    value: judged.walhookRatio,
    required,
    status: judged.walhookRatio >= 0.9 ? 'pass' : 'fail',
  };
}

function memoryTarget(id: string, target: string, peakRssBytes: number | null, limitMb: number): TargetResult {
  const required = `≤ ${limitMb} MB`;
  if (peakRssBytes === null || peakRssBytes === 0) return { id, target, measured: 'not measured', value: null, required, status: 'not measured' };
  const megabytes = peakRssBytes / MB;
  return {
    id,
    target,
    measured: `${megabytes.toFixed(0)} MB`,
    value: megabytes,
    required,
    status: megabytes <= limitMb ? 'pass' : 'fail',
  };
}
