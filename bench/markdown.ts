/**
 * Writes a run's results into BENCHMARKS.md. Each scale (full, quick) has its own
 * generated section between marker comments, so a quick run never replaces the last
 * full run, and the hand-written text around the sections stays as it is.
 */
import { readFile, writeFile } from 'node:fs/promises';

import type { DrainMeasurement } from './drain.js';
import type { ProfileSummary } from './profile.js';
import { drainRatios, type BenchResults } from './results.js';

const MIB = 2 ** 20;
const MB = 1_000_000;

function beginMarker(scale: string): string {
  return `<!-- BEGIN GENERATED: ${scale} run (bench/run.ts rewrites this section) -->`;
}

function endMarker(scale: string): string {
  return `<!-- END GENERATED: ${scale} run -->`;
}

/** Replaces the section of `results.scale.name` in `file`, creating the file when missing. */
export async function updateBenchmarksFile(file: string, results: BenchResults): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    text = '# Benchmarks\n';
  }
  const scale = results.scale.name;
  const section = `${beginMarker(scale)}\n${renderRun(results)}\n${endMarker(scale)}`;
  const begin = text.indexOf(beginMarker(scale));
  const end = text.indexOf(endMarker(scale));
  if (begin !== -1 && end > begin) {
    text = `${text.slice(0, begin)}${section}${text.slice(end + endMarker(scale).length)}`;
  } else {
    text = `${text.trimEnd()}\n\n${section}\n`;
  }
  await writeFile(file, text);
}

export function renderRun(results: BenchResults): string {
  const lines: string[] = [];
  const title = results.scale.name === 'full' ? 'Last full run' : 'Last quick run (`--quick`, workloads at 1/10)';
  lines.push(`## ${title}`, '');
  lines.push(`Run on ${results.startedAt} in ${(results.durationSeconds / 60).toFixed(1)} minutes with:`, '');
  lines.push('```sh', results.command, '```', '');
  lines.push(...renderEnvironment(results), '');
  lines.push('### Targets', '', ...renderTargets(results), '');
  lines.push('### Drain rate', '', ...renderDrain(results), '');
  lines.push('### Latency, commit to receipt', '', ...renderLatency(results), '');
  lines.push('### Source overhead', '', ...renderOverhead(results), '');
  lines.push('### Memory', '', ...renderMemory(results), '');
  const profiles = results.drain.flatMap((drain) => drain.profiles);
  if (profiles.length > 0) lines.push('### CPU profiles of walhook', '', ...renderProfiles(profiles), '');
  const errors = [...results.errors, ...results.drain.flatMap((drain) => drain.errors.map((e) => `${drain.workload}: ${e}`))];
  if (errors.length > 0) {
    lines.push('### Errors', '', ...errors.map((error) => `- ${oneLine(error)}`), '');
  }
  return lines.join('\n').trimEnd();
}

function renderEnvironment(results: BenchResults): string[] {
  const { machine, versions } = results;
  const uncommitted =
    versions.walhookUncommittedFiles.length === 0
      ? ''
      : ` plus uncommitted changes in ${versions.walhookUncommittedFiles.length} files under src/ ` +
        `(source digest \`${versions.walhookSourceDigest.slice(0, 12)}\`)`;
  const settings = Object.entries(results.serverSettings)
    .map(([name, value]) => `\`${name}=${value}\``)
    .join(', ');
  return [
    '| | |',
    '|---|---|',
    `| machine | ${machine.cpuModel}, ${machine.cores} cores, ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB RAM, Linux ${machine.kernel} |`,
    `| load average (1, 5, 15 min) | ${formatLoad(machine.loadAverage.start)} at the start, ${formatLoad(machine.loadAverage.end)} at the end |`,
    `| Node.js | ${versions.node} |`,
    `| PostgreSQL | ${versions.postgres} |`,
    `| client programs | ${versions.pgRecvlogical}; ${versions.pgbench} |`,
    `| walhook | commit \`${versions.walhookCommit.slice(0, 12)}\`${uncommitted}, compiled \`dist/cli/main.js\`${nodeOptions(results)} |`,
    `| server settings | ${settings}, the rest at their defaults |`,
    `| batching | ${results.batching.available ? `\`batch: ${JSON.stringify(results.batching.settings)}\`` : 'not yet configurable: `walhook validate` rejects a `batch` key'} |`,
    `| drain time limit | ${results.maxDrainSeconds} s per walhook drain; a drain that hits it reports the rate of the events received until then |`,
  ];
}

/** Describes WALHOOK_BENCH_NODE_OPTIONS; results from before the option have no field. */
function nodeOptions(results: BenchResults): string {
  const options = results.walhookNodeOptions ?? [];
  return options.length === 0 ? '' : ` run with \`node ${options.join(' ')}\``;
}

function formatLoad(values: readonly number[]): string {
  return values.map((value) => value.toFixed(2)).join(', ');
}

function renderTargets(results: BenchResults): string[] {
  const lines = ['| target | required | measured | result |', '|---|---|---|---|'];
  for (const target of results.targets) {
    lines.push(`| ${target.target} | ${target.required} | ${target.measured} | **${target.status}** |`);
  }
  return lines;
}

function renderDrain(results: BenchResults): string[] {
  const lines = [
    'Events per second until the slot confirmed the end of the backlog. The ratio is to',
    'pg_recvlogical on the same backlog. CPU is CPU seconds per wall second (1.0 = one core).',
    '',
    '| workload | events | WAL | pg_recvlogical | walhook per-event | walhook batched | walhook CPU (per-event / batched) | walsender CPU (pg_recvlogical / walhook per-event) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const perEvent = new Map(drainRatios(results.drain, 'walhook per-event').map((entry) => [entry.workload, entry.ratio]));
  const batched = new Map(drainRatios(results.drain, 'walhook batched').map((entry) => [entry.workload, entry.ratio]));
  for (const drain of results.drain) {
    const find = (consumer: string): DrainMeasurement | undefined => drain.measurements.find((m) => m.consumer === consumer);
    const recv = find('pg_recvlogical');
    const single = find('walhook per-event');
    const batch = find('walhook batched');
    const rate = (measurement: DrainMeasurement | undefined, ratio: number | undefined): string => {
      if (measurement === undefined) return '–';
      const partial = measurement.complete ? '' : ' (partial)';
      const ratioText = ratio === undefined ? '' : ` (${ratio.toFixed(3)})`;
      return `${Math.round(measurement.eventsPerSecond).toLocaleString('en-US')}${ratioText}${partial}`;
    };
    const cpu = (measurement: DrainMeasurement | undefined): string =>
      measurement === undefined ? '–' : measurement.consumerCpuShare.toFixed(2);
    const walsender = (measurement: DrainMeasurement | undefined): string =>
      measurement?.walsenderCpuShare === null || measurement?.walsenderCpuShare === undefined
        ? '–'
        : measurement.walsenderCpuShare.toFixed(2);
    lines.push(
      `| ${drain.workload}: ${drain.description} | ${drain.events.toLocaleString('en-US')} | ` +
        `${(drain.walBytes / MIB).toFixed(1)} MiB | ${rate(recv, undefined)} | ` +
        `${rate(single, perEvent.get(drain.workload))} | ` +
        `${results.batching.available ? rate(batch, batched.get(drain.workload)) : 'not yet configurable'} | ` +
        `${cpu(single)}${batch === undefined ? '' : ` / ${cpu(batch)}`} | ${walsender(recv)} / ${walsender(single)} |`,
    );
  }
  const partial = results.drain.flatMap((drain) =>
    drain.measurements.filter((m) => !m.complete).map((m) => `${drain.workload} ${m.consumer}`),
  );
  if (partial.length > 0) {
    lines.push('', `Partial (stopped at the ${results.maxDrainSeconds} s limit): ${partial.join(', ')}.`);
  }
  return lines;
}

function renderLatency(results: BenchResults): string[] {
  if (results.latency === null) return ['Not measured in this run.'];
  const ms = (value: number | null): string => (value === null ? 'n/a' : value.toFixed(1));
  const lines = [
    `pgbench \`--rate\` (open loop), ${results.scale.latencySeconds} s per rate, single-row INSERT transactions;`,
    `the first ${results.scale.latencyWarmupSeconds} s are warm-up. Latency is receipt time at the receiver minus`,
    "the commit time in the event (walhook: the commit timestamp from the WAL; trigger: the",
    'commit timestamp of the source transaction, `track_commit_timestamp`). Times in ms.',
    '',
    '| capture | target tps | achieved tps | p50 | p95 | p99 | max | events not arrived | capture CPU |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const run of results.latency) {
    lines.push(
      `| ${run.capture} | ${run.targetRate} | ${run.achievedRate.toFixed(0)} | ${ms(run.p50Ms)} | ${ms(run.p95Ms)} | ` +
        `${ms(run.p99Ms)} | ${ms(run.maxMs)} | ${run.missing} | ${run.captureCpuShare === null ? '–' : run.captureCpuShare.toFixed(2)} |`,
    );
  }
  lines.push('', 'n/a: the percentile falls among events that had not arrived when the wait ended.');
  return lines;
}

function renderOverhead(results: BenchResults): string[] {
  const overhead = results.overhead;
  if (overhead === null) return ['Not measured in this run.'];
  const lines = [
    `Closed-loop pgbench, ${overhead.clients} clients, ${overhead.threads} threads, ${overhead.seconds} s per run,`,
    'single-row INSERT transactions; TPS is the mean over the rounds. `pinned`: PostgreSQL and',
    'pgbench on CPU 0, the capture client and the receiver on CPU 1, as when walhook runs on',
    'another host. `shared`: all processes on both cores. `pg_recvlogical attached` streams a',
    'slot of the same table to /dev/null: the server-side cost of any logical replication client.',
    '',
    '| placement | no capture | walhook attached | pg_recvlogical attached | trigger capture |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const summary of overhead.summaries) {
    lines.push(
      `| ${summary.placement} | ${summary.noneTps.toFixed(0)} | ${summary.walhookTps.toFixed(0)} (${summary.walhookRatio.toFixed(3)}) | ` +
        `${ratioCell(summary.recvlogicalTps, summary.recvlogicalRatio)} | ${summary.triggerTps.toFixed(0)} (${summary.triggerRatio.toFixed(3)}) |`,
    );
  }
  const behind = overhead.runs
    .filter((run) => run.mode !== 'none')
    .map((run) => {
      const backlog =
        run.mode === 'trigger'
          ? `${run.pendingEventsAtEnd ?? 0} events pending`
          : `${((run.lagBytesAtEnd ?? 0) / MIB).toFixed(1)} MiB of WAL unconfirmed`;
      const walsender =
        run.walsenderCpuShare === null ? '' : `, walsender CPU ${run.walsenderCpuShare.toFixed(2)}`;
      const capture = run.captureCpuShare === null ? '' : `, ${run.mode === 'trigger' ? 'poller' : run.mode} CPU ${run.captureCpuShare.toFixed(2)}`;
      const delivered = run.deliveredPerSecond === null ? '' : `delivered ${Math.round(run.deliveredPerSecond)} events/s, `;
      return `${run.placement} round ${run.round} ${run.mode}: ${delivered}${backlog} at the end${capture}${walsender}`;
    });
  if (behind.length > 0) lines.push('', 'Capture progress during the pgbench runs:', '', ...behind.map((text) => `- ${text}`));
  if (overhead.pinnedSkipped !== null) lines.push('', `Pinned placement skipped: ${overhead.pinnedSkipped}.`);
  return lines;
}

/** Formats TPS and its ratio; runs from before the pg_recvlogical mode existed have neither. */
function ratioCell(tps: number | undefined, ratio: number | undefined): string {
  if (tps === undefined || ratio === undefined || Number.isNaN(tps)) return '–';
  return `${tps.toFixed(0)} (${ratio.toFixed(3)})`;
}

function renderMemory(results: BenchResults): string[] {
  const lines: string[] = [];
  const slow = results.memory.slowReceiver;
  if (slow === null) {
    lines.push('- Slow receiver: not measured in this run.');
  } else {
    lines.push(
      `- Slow receiver (${slow.responseDelayMs} ms per response), backlog of ${slow.description}: ` +
        `peak RSS (VmHWM) ${(slow.peakRssBytes / MB).toFixed(0)} MB, ${(slow.finalRssBytes / MB).toFixed(0)} MB after ` +
        `${slow.seconds.toFixed(0)} s, with ${slow.deliveredEvents.toLocaleString('en-US')} events delivered by then.`,
    );
  }
  const w2 = results.drain.find((drain) => drain.workload === 'W2');
  if (results.memory.w2PeakRssBytes === null || w2 === undefined) {
    lines.push('- W2: not measured in this run.');
  } else {
    lines.push(
      `- W2 (${w2.description}), per-event drain: peak RSS (VmHWM) ${(results.memory.w2PeakRssBytes / MB).toFixed(0)} MB.`,
    );
  }
  return lines;
}

function renderProfiles(profiles: readonly ProfileSummary[]): string[] {
  const lines: string[] = [];
  for (const profile of profiles) {
    lines.push(
      `**${profile.label}**: ${profile.drainSeconds.toFixed(1)} s under \`--cpu-prof\` at ` +
        `${Math.round(profile.eventsPerSecond)} events/s; the main thread was idle ${(profile.idleShare * 100).toFixed(0)}% ` +
        `of the time. Shares below are of the busy time; samples from startup are left out. Profile: \`${profile.profileFile}\`, ` +
        `folded stacks for flame graphs: \`${profile.foldedFile}\`.`,
      '',
      '| self | total | function | location |',
      '|---:|---:|---|---|',
    );
    for (const entry of profile.topFunctions.slice(0, 15)) {
      lines.push(
        `| ${(entry.selfShare * 100).toFixed(1)}% | ${(entry.totalShare * 100).toFixed(1)}% | \`${entry.name}\` | ${entry.location} |`,
      );
    }
    lines.push('', 'Self time by file or package:', '', '| self | file |', '|---:|---|');
    for (const entry of profile.files.slice(0, 10)) {
      lines.push(`| ${(entry.selfShare * 100).toFixed(1)}% | ${entry.file} |`);
    }
    lines.push('');
  }
  return lines;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').slice(0, 400);
}
