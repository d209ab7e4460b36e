/**
 * Reads memory and CPU figures of a process from /proc (Linux only).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second of the utime and stime fields in /proc/<pid>/stat. */
const CLOCK_TICKS_PER_SECOND = readClockTicks();

function readClockTicks(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
  } catch {
    return 100;
  }
}

export interface MemoryStatus {
  /** Resident set size now, in bytes (VmRSS). */
  readonly rssBytes: number;
  /** Peak resident set size since the process started, in bytes (VmHWM). */
  readonly peakRssBytes: number;
}

/** Reads VmRSS and VmHWM of `pid`, or returns undefined when the process is gone. */
export function readMemoryStatus(pid: number): MemoryStatus | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  return {
    rssBytes: kibibytesField(text, 'VmRSS') * 1024,
    peakRssBytes: kibibytesField(text, 'VmHWM') * 1024,
  };
}

function kibibytesField(statusText: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(statusText);
  return match === null ? 0 : Number(match[1]);
}

/** Reads the CPU time that `pid` used so far (user plus system), in seconds. */
export function readCpuSeconds(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name in field 2 may contain spaces, so count fields after its ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // Fields 14 (utime) and 15 (stime) of proc(5), counted from field 3 here.
  const userTicks = Number(fields[11]);
  const systemTicks = Number(fields[12]);
  return (userTicks + systemTicks) / CLOCK_TICKS_PER_SECOND;
}

/** Returns the ids of the direct children of `parentPid`. */
export function childPids(parentPid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === parentPid) children.push(Number(entry));
    } catch {
      // The process ended between readdir and read.
    }
  }
  return children;
}

/**
 * Samples a process's resident set size at a fixed interval and keeps the peak, and
 * measures the CPU seconds it used between start() and stop().
 */
export class ProcessSampler {
  readonly #pid: number;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #maxSampledRssBytes = 0;
  #lastRssBytes = 0;
  #peakRssBytes = 0;
  #cpuStart = 0;
  #cpuEnd = 0;
  #startedAt = 0;
  #stoppedAt = 0;

  readonly #countFromProcessStart: boolean;

  /**
   * `countFromProcessStart` counts the CPU time the process used before start(), for a
   * process that was started for the measured work, such as a walsender.
   */
  constructor(pid: number, options: { intervalMs?: number; countFromProcessStart?: boolean } = {}) {
    this.#pid = pid;
    this.#intervalMs = options.intervalMs ?? 100;
    this.#countFromProcessStart = options.countFromProcessStart ?? false;
  }

  start(): void {
    this.#cpuStart = this.#countFromProcessStart ? 0 : (readCpuSeconds(this.#pid) ?? 0);
    this.#cpuEnd = this.#cpuStart;
    this.#startedAt = performance.now();
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Takes a last sample and stops. Call it before the process exits. */
  stop(): SamplerResult {
    clearInterval(this.#timer);
    this.#sample();
    this.#cpuEnd = readCpuSeconds(this.#pid) ?? this.#cpuEnd;
    this.#stoppedAt = performance.now();
    return this.result();
  }

  result(): SamplerResult {
    const end = this.#stoppedAt === 0 ? performance.now() : this.#stoppedAt;
    const cpuEnd = this.#stoppedAt === 0 ? (readCpuSeconds(this.#pid) ?? this.#cpuEnd) : this.#cpuEnd;
    const wallSeconds = (end - this.#startedAt) / 1000;
    const cpuSeconds = cpuEnd - this.#cpuStart;
    return {
      peakRssBytes: this.#peakRssBytes,
      maxSampledRssBytes: this.#maxSampledRssBytes,
      finalRssBytes: this.#lastRssBytes,
      cpuSeconds,
      wallSeconds,
      cpuShare: wallSeconds > 0 ? cpuSeconds / wallSeconds : 0,
    };
  }

  #sample(): void {
    // The last reading stays when the process has exited, such as a walsender whose
    // client disconnected.
    this.#cpuEnd = readCpuSeconds(this.#pid) ?? this.#cpuEnd;
    const status = readMemoryStatus(this.#pid);
    if (status === undefined) return;
    this.#lastRssBytes = status.rssBytes;
    this.#maxSampledRssBytes = Math.max(this.#maxSampledRssBytes, status.rssBytes);
    this.#peakRssBytes = Math.max(this.#peakRssBytes, status.peakRssBytes);
  }
}

export interface SamplerResult {
  /** VmHWM: peak RSS since the process started, in bytes. */
  readonly peakRssBytes: number;
  /** Largest VmRSS among the samples, in bytes. */
  readonly maxSampledRssBytes: number;
  /** VmRSS of the last sample, in bytes. */
  readonly finalRssBytes: number;
  readonly cpuSeconds: number;
  readonly wallSeconds: number;
  /** CPU seconds per wall second: 1.0 is one core fully busy. */
  readonly cpuShare: number;
}
