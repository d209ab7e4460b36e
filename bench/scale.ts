/**
 * Sizes of the benchmark's workloads and runs. The full scale is the one the targets
 * are stated for; `--quick` divides the workloads by 10 and shortens the timed runs.
 */
export interface BenchScale {
  readonly name: 'full' | 'quick';
  /** W1: single-row INSERT transactions. */
  readonly w1Transactions: number;
  /** W2: rows inserted by one transaction. */
  readonly w2Rows: number;
  /** W3: updates and deletes per replica identity mode. */
  readonly w3Changes: number;
  /** W4: rows, each with one TOAST value. */
  readonly w4Rows: number;
  /** W4: size of each TOAST value in bytes. */
  readonly w4ValueBytes: number;
  /** Open-loop pgbench rates for the latency runs, in transactions per second. */
  readonly latencyRates: readonly number[];
  /** Length of each latency run in seconds. */
  readonly latencySeconds: number;
  /** Samples committed in the first seconds of a latency run are dropped as warm-up. */
  readonly latencyWarmupSeconds: number;
  /** Length of each closed-loop pgbench run of the source overhead test, in seconds. */
  readonly overheadSeconds: number;
  /** Repetitions of the none / walhook / trigger sequence; the mean TPS is reported. */
  readonly overheadRounds: number;
  /** Changes in the backlog of the slow-receiver memory run. */
  readonly memoryChanges: number;
  /** How long walhook drains into the slow receiver while its RSS is sampled, in seconds. */
  readonly memorySeconds: number;
  /** Delay of each response in the slow-receiver memory run, in ms. */
  readonly slowResponseDelayMs: number;
}

export const FULL_SCALE: BenchScale = {
  name: 'full',
  w1Transactions: 100_000,
  w2Rows: 1_000_000,
  w3Changes: 100_000,
  w4Rows: 10_000,
  w4ValueBytes: 32 * 1024,
  latencyRates: [100, 500, 1000],
  latencySeconds: 30,
  latencyWarmupSeconds: 2,
  overheadSeconds: 30,
  overheadRounds: 2,
  memoryChanges: 1_000_000,
  memorySeconds: 60,
  slowResponseDelayMs: 100,
};

export const QUICK_SCALE: BenchScale = {
  name: 'quick',
  w1Transactions: 10_000,
  w2Rows: 100_000,
  w3Changes: 10_000,
  w4Rows: 1_000,
  w4ValueBytes: 32 * 1024,
  latencyRates: [100, 500, 1000],
  latencySeconds: 10,
  latencyWarmupSeconds: 1,
  overheadSeconds: 10,
  overheadRounds: 1,
  memoryChanges: 100_000,
  memorySeconds: 20,
  slowResponseDelayMs: 100,
};
