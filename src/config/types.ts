/**
 * Validated, normalized walhook configuration. The YAML uses snake_case keys and
 * duration strings; these types use camelCase and milliseconds. Only src/config
 * builds these objects, and it freezes them.
 */

import type { WhereCondition } from '../filters/where-condition.js';

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
  /** WAL the slot may retain before walhook warns, in bytes. Default 1 GiB. */
  readonly maxLagBytes: bigint;
  /** Set REPLICA IDENTITY FULL on the configured tables at start. Default false. */
  readonly replicaIdentityFull: boolean;
}

export interface RetryConfig {
  /** First backoff delay. Default 1 s. */
  readonly initialDelayMs: number;
  /** Cap on any single backoff delay, also on a Retry-After wait. Default 5 min. */
  readonly maxDelayMs: number;
  /** Attempts before the failure policy applies; null for no limit. Default null. */
  readonly maxAttempts: number | null;
  /** Backoff growth per attempt. Default 2. */
  readonly multiplier: number;
  /** Retried statuses: codes or the classes `4xx` and `5xx`. Default 408, 425, 429 and 5xx. */
  readonly onStatus: readonly (number | '4xx' | '5xx')[];
}

export interface WebhookConfig {
  readonly name: string;
  /**
   * http(s) URL the envelope is POSTed to. It may contain `{{ path }}` placeholders,
   * which the loader checks and src/filters/url-template.ts fills per event.
   */
  readonly url: string;
  /** Extra request headers; values may hold secrets and are never logged. */
  readonly headers: Readonly<Record<string, string>>;
  /** Deadline for one attempt, connect to last body byte. Default 10 s. */
  readonly timeoutMs: number;
  readonly retry: RetryConfig;
  /** Render int8, numeric, float4 and float8 as JSON strings. Default false. */
  readonly stringifyNumeric: boolean;
  /** Requests in flight at once. Default 16. */
  readonly concurrency: number;
  /** Ordering mode: the events that wait for each other. Default `row`. */
  readonly ordering: 'row' | 'table' | 'none' | 'strict';
  /** Token bucket for requests; null for no limit. */
  readonly rateLimit: { readonly perSecond: number; readonly burst: number } | null;
  /** Pause after consecutive failures; null when off (the default). */
  readonly circuitBreaker: { readonly failures: number; readonly coolDownMs: number } | null;
  /** Default `dead_letter`. */
  readonly onFailure: 'dead_letter' | 'block';
  /** Several events per request; null when off (the default). */
  readonly batch: { readonly maxEvents: number; readonly maxBytes: number; readonly maxWaitMs: number } | null;
  /** Largest request body in bytes. Default 10 MiB. */
  readonly maxBodyBytes: number;
  /** Standard Webhooks secret; null sends no signature. */
  readonly signingSecret: string | null;
}

export interface TriggerConfig extends TriggerFilterConfig {
  readonly name: string;
  readonly table: TableName;
  /** Operations that fire the trigger. Default: all four. */
  readonly operations: readonly Operation[];
  /** Name of an entry in `webhooks`. */
  readonly webhook: string;
  /** Unchanged TOAST values: left out (`omit`, the default) or read again by key (`reselect`). */
  readonly unchangedToast: 'omit' | 'reselect';
}

/** Optional trigger keys that filter and shape events, evaluated by src/filters. A key absent from the file is absent here. */
export interface TriggerFilterConfig {
  /** Update events fire only when one of these columns changed. Needs REPLICA IDENTITY FULL. */
  readonly columns?: readonly string[];
  /** Row condition on `new` (insert, update) or `old` (delete), parsed and checked. */
  readonly where?: WhereCondition;
  /** Columns delivered in the envelope's `old` and `new`. */
  readonly payload?: { readonly columns: readonly string[] };
  /** JSONata expression that builds the request body from the envelope, checked to parse. */
  readonly transform?: { readonly body: string };
}

export interface DeadLettersConfig {
  /** Schema of the `dead_letters` table, used as written. Default `walhook`. */
  readonly schema: string;
}

export interface ServerConfig {
  /** Whether walhook serves /healthz, /readyz and /metrics. Default true. */
  readonly enabled: boolean;
  /** Address to bind. Default `0.0.0.0`. */
  readonly host: string;
  /** TCP port; 0 picks a free one. Default 8080. */
  readonly port: number;
  /** Token that enables the admin actions of the status page; null when unset. Never logged. */
  readonly adminToken: string | null;
}

export interface LeaderConfig {
  /** Interval of lock attempts on standbys and of lock session checks on the leader. Default 2 s. */
  readonly pollIntervalMs: number;
}

export interface LogConfig {
  /** pino level. Default `info`. */
  readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/** A trigger on logical decoding messages (`pg_logical_emit_message`) with a prefix. */
export interface MessageTriggerConfig {
  readonly name: string;
  /** Messages whose prefix equals this string fire the trigger. */
  readonly messagePrefix: string;
  readonly webhook: string;
  /** Request body built by a JSONata expression; absent sends the envelope. */
  readonly transform?: { readonly body: string };
}

export interface WalhookConfig {
  readonly source: SourceConfig;
  readonly webhooks: readonly WebhookConfig[];
  /** Triggers on table rows. */
  readonly triggers: readonly TriggerConfig[];
  /** Triggers on logical decoding messages, from the same `triggers` list in the file. */
  readonly messageTriggers: readonly MessageTriggerConfig[];
  readonly deadLetters: DeadLettersConfig;
  readonly server: ServerConfig;
  readonly leader: LeaderConfig;
  readonly log: LogConfig;
  /** How long SIGTERM waits for in-flight deliveries. Default 30 s. */
  readonly shutdownTimeoutMs: number;
  /** Undelivered events in memory before reads from the slot pause. Default 4 000. */
  readonly maxInflightEvents: number;
  /** Undelivered body bytes in memory before reads pause. Default 16 MiB. */
  readonly maxInflightBytes: number;
}
