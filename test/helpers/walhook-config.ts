import type { TestPostgres } from './postgres.js';
import type { Receiver } from './receiver.js';

export interface TestConfigOptions {
  readonly server: TestPostgres;
  readonly receiver: Receiver;
  /** Slot and publication name, unique per test. */
  readonly slot: string;
  /** Tables that get a trigger for all four operations, named after the table. */
  readonly tables: readonly string[];
  /** Deadline for one delivery attempt. Default `30s`, longer than any test waits. */
  readonly timeout?: string;
  /** Default `10s`. */
  readonly shutdownTimeout?: string;
  /** `retry.on_status` of the webhook. Default: the key is left out. */
  readonly retryOnStatus?: readonly (number | '4xx' | '5xx')[];
}

/**
 * Builds a walhook configuration with one webhook and short retry delays (100 ms
 * doubling up to 1 s), so retries show up in the log within a second or two.
 */
export function testConfig(options: TestConfigOptions): object {
  return {
    source: {
      connection: options.server.connectionString,
      slot: options.slot,
      publication: options.slot,
    },
    webhooks: [
      {
        name: 'receiver',
        url: options.receiver.url,
        timeout: options.timeout ?? '30s',
        retry: {
          initial_delay: '100ms',
          max_delay: '1s',
          ...(options.retryOnStatus === undefined ? {} : { on_status: options.retryOnStatus }),
        },
      },
    ],
    triggers: options.tables.map((table) => ({
      name: table,
      table: `public.${table}`,
      webhook: 'receiver',
    })),
    // Port 0 picks a free port, so tests can run walhook processes side by side.
    server: { host: '127.0.0.1', port: 0 },
    log: { level: 'debug' },
    shutdown_timeout: options.shutdownTimeout ?? '10s',
  };
}
