/** The part of node:test's TestContext that skipOrFail uses. */
export interface SkippableTest {
  skip(message?: string): void;
}

/** True when the environment variable WALHOOK_CI is `1`, which .ci/run sets. */
export function skipsAreFailures(): boolean {
  return process.env.WALHOOK_CI === '1';
}

/**
 * Marks the test as skipped with `reason`, or throws when WALHOOK_CI=1, so that CI
 * cannot pass while a test silently does not run.
 *
 * `t.skip()` does not stop the test function, so call it as
 * `return skipOrFail(t, 'wal2json is not installed')`.
 */
export function skipOrFail(t: SkippableTest, reason: string): void {
  if (skipsAreFailures()) {
    throw new Error(`test cannot run: ${reason} (WALHOOK_CI=1 turns skips into failures)`);
  }
  t.skip(reason);
}
