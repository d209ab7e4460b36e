/**
 * Small statistics helpers for the benchmark's results.
 */

/** Returns the value at 1-based `rank` of an ascending array (nearest-rank percentile). */
export function percentile(sorted: readonly number[], rank: number): number {
  const index = Math.min(sorted.length, Math.max(1, rank)) - 1;
  return sorted[index] ?? Number.NaN;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}
