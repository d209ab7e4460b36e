/**
 * Helpers for the long-lived PostgreSQL sessions of the operations modules, which must
 * notice a silent server within seconds instead of waiting for the operating system.
 */
import type pg from 'pg';

/** How long a session may take to close before its socket is destroyed. */
const END_GRACE_MS = 1_000;

/** Thrown by `queryWithTimeout` when the server did not respond in time. */
export class QueryTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`query got no answer within ${timeoutMs} ms`);
    this.name = 'QueryTimeoutError';
  }
}

/**
 * Runs a query and rejects with QueryTimeoutError after `timeoutMs`. The query itself
 * goes on, so the caller should end the session after a timeout.
 */
export async function queryWithTimeout<Row extends pg.QueryResultRow>(
  client: pg.Client,
  timeoutMs: number,
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<Row>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new QueryTimeoutError(timeoutMs)), timeoutMs);
  });
  try {
    return await Promise.race([client.query<Row>(sql, params), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Ends a session and resolves once it closed, or after one second, when its socket is
 * destroyed. Removes the session's 'end' and 'error' listeners first, so ending it
 * reports no failure. Never rejects.
 */
export async function endSession(client: pg.Client): Promise<void> {
  client.removeAllListeners('end');
  client.removeAllListeners('error');
  client.on('error', () => undefined);
  // pg keeps the socket on a field it does not expose. A session whose peer went
  // silent would otherwise wait for the operating system to give up on it.
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection
    ?.stream;
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      stream?.destroy();
      resolve();
    }, END_GRACE_MS);
  });
  await Promise.race([client.end().catch(() => undefined), grace]);
  clearTimeout(timer);
}

/** Returns the server process id of a connected session, or null. */
export function sessionPid(client: pg.Client | null): number | null {
  const pid = (client as { processID?: number | null } | null)?.processID;
  return typeof pid === 'number' ? pid : null;
}
