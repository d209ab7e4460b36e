/**
 * A server or child process that a helper started. Tests should close it themselves.
 * This module closes whatever is still open when the test file ends, when its process
 * exits, or on SIGINT and SIGTERM. A failed test then leaks no PostgreSQL server or
 * walhook process into the next test file.
 */
export interface TrackedResource {
  /** Name for error messages, such as `PostgreSQL on 127.0.0.1:5433`. */
  readonly description: string;
  /** Releases the resource at the end of the test file. */
  close(): Promise<void>;
  /** Releases the resource with synchronous calls only, for the process 'exit' event. */
  closeSync(): void;
}

const openResources = new Set<TrackedResource>();

/** Registers `resource` for cleanup and returns the function that unregisters it. */
export function trackResource(resource: TrackedResource): () => void {
  openResources.add(resource);
  return () => {
    openResources.delete(resource);
  };
}

async function closeAll(): Promise<void> {
  const failures: string[] = [];
  for (const resource of [...openResources]) {
    try {
      await resource.close();
    } catch (error) {
      failures.push(`${resource.description}: ${error instanceof Error ? error.message : error}`);
    }
    openResources.delete(resource);
  }
  if (failures.length > 0) {
    throw new Error(`test cleanup failed to close:\n  ${failures.join('\n  ')}`);
  }
}

function closeAllSync(): void {
  for (const resource of [...openResources]) {
    try {
      resource.closeSync();
    } catch {
      // The process is exiting and cannot report anything, so try the rest.
    }
    openResources.delete(resource);
  }
}

// These hooks are registered when a test file first imports a helper, which happens at
// the top level, so `after` attaches to the file's root test and runs after every
// suite and test in the file.
// Scripts such as the demo import these helpers too and must not load node:test. The
// test runner sets NODE_TEST_CONTEXT in each test file's process, which distinguishes the two.
if (process.env.NODE_TEST_CONTEXT !== undefined) {
  const { after } = await import('node:test');
  after(closeAll);
}
// NOTE: an exception thrown at a test file's top level, outside every test and hook,
// ends the process without an 'exit' event once node:test is loaded (seen on Node
// 20.20), so nothing is closed in that case.
process.on('exit', closeAllSync);

// Without a listener, SIGINT and SIGTERM end the process without an 'exit' event, and
// the PostgreSQL servers, which pg_ctl detaches, would keep running. `once` removes the
// listener before it runs, so raising the signal again applies the default action.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    closeAllSync();
    process.kill(process.pid, signal);
  });
}
