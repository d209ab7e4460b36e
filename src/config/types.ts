/**
 * Validated, normalized walhook configuration. The YAML uses snake_case keys and
 * duration strings; these types use camelCase and milliseconds. Only src/config
 * builds these objects, and it freezes them.
 */

export type Operation = 'insert' | 'update' | 'delete' | 'truncate';

export const OPERATIONS: readonly Operation[] = ['insert', 'update', 'delete', 'truncate'];

export type PluginName = 'pgoutput' | 'wal2json';

/** A table name after SQL identifier rules: unquoted parts folded to lower case. */
export interface TableName {
  readonly schema: string;
  readonly name: string;
}

export interface SourceConfig {
  /**
   * `postgres://` or `postgresql://` connection URL, with `${VAR}` already substituted.
   * A key=value string in the file arrives here converted to a URL.
   */
  readonly connection: string;
  /** Replication slot name. Default `walhook`. */
  readonly slot: string;
  /** Publication name. Default `walhook`. */
  readonly publication: string;
  /** Logical decoding output plugin. Default `pgoutput`. */
  readonly plugin: PluginName;
}

export interface RetryConfig {
  /** First backoff delay. Default 1 s. */
  readonly initialDelayMs: number;
  /** Cap on any single backoff delay. Default 5 min. */
  readonly maxDelayMs: number;
}

export interface WebhookConfig {
  readonly name: string;
  /** http(s) URL the envelope is POSTed to. */
  readonly url: string;
  /** Extra request headers; values may hold secrets and are never logged. */
  readonly headers: Readonly<Record<string, string>>;
  /** Deadline for one attempt, connect to last body byte. Default 10 s. */
  readonly timeoutMs: number;
  readonly retry: RetryConfig;
}

export interface TriggerConfig {
  readonly name: string;
  readonly table: TableName;
  /** Operations that fire the trigger. Default: all four. */
  readonly operations: readonly Operation[];
  /** Name of an entry in `webhooks`. */
  readonly webhook: string;
}

export interface LogConfig {
  /** pino level. Default `info`. */
  readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export interface WalhookConfig {
  readonly source: SourceConfig;
  readonly webhooks: readonly WebhookConfig[];
  readonly triggers: readonly TriggerConfig[];
  readonly log: LogConfig;
  /** How long SIGTERM waits for in-flight deliveries. Default 30 s. */
  readonly shutdownTimeoutMs: number;
}
