/**
 * Reading and validation of the walhook configuration file.
 *
 * The steps are: parse YAML, substitute `${VAR}` references in string values, keep the
 * source digits of numbers in `where:` conditions, check the structure with zod, check
 * names across entries, then rename keys to camelCase and freeze. Every problem from every step is reported in one ConfigError.
 */

import { readFileSync } from 'node:fs';

import { ConfigError } from '../core/errors.js';
import { keepWhereNumberText } from './exact-numbers.js';
import { problemsFromIssues } from './issues.js';
import { formatPath, type Problem, toConfigProblem } from './problems.js';
import { checkReferences } from './references.js';
import { configSchema, type ParsedConfig } from './schema.js';
import { normalizeTriggerFilters } from './trigger-filters.js';
import { OPERATIONS, type WalhookConfig } from './types.js';
import { substituteVariables } from './variables.js';
import { readYamlDocument, sortByPosition } from './yaml-document.js';

export interface ParseOptions {
  /** Path or label used in error messages. */
  readonly file: string;
  /** Variables for `${VAR}` references. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/**
 * Reads and validates a configuration file. Throws ConfigError when the file cannot
 * be read or is invalid. `env` defaults to process.env, and no other walhook module
 * reads process.env.
 */
export function loadConfig(file: string, env: ParseOptions['env'] = process.env): WalhookConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [{ path: '', message: describeReadError(error) }]);
  }
  return parseConfig(text, { file, env });
}

/**
 * Validates configuration text and returns it normalized and deeply frozen. Throws
 * ConfigError listing every problem found.
 */
export function parseConfig(text: string, options: ParseOptions): WalhookConfig {
  const read = readYamlDocument(text);
  if (!read.ok) {
    throw new ConfigError(options.file, read.problems.map(toConfigProblem));
  }

  const substituted = substituteVariables(read.tree, options.env);
  const withExactNumbers = keepWhereNumberText(substituted.value, read.document);
  const parsed = configSchema.safeParse(withExactNumbers, { reportInput: true });
  const schemaProblems = parsed.success ? [] : problemsFromIssues(parsed.error.issues);
  const referenceProblems = checkReferences(substituted.value);

  // A value whose reference failed is kept as written, so checks on it would only
  // repeat the substitution problem.
  const unresolvedPaths = new Set(substituted.problems.map((problem) => formatPath(problem.path)));
  const isNew = (problem: Problem): boolean => !unresolvedPaths.has(formatPath(problem.path));
  const problems = [
    ...substituted.problems,
    ...schemaProblems.filter(isNew),
    ...referenceProblems.filter(isNew),
  ];

  if (problems.length > 0 || !parsed.success) {
    const sorted = sortByPosition(problems, read.document);
    throw new ConfigError(options.file, sorted.map(toConfigProblem));
  }
  return deepFreeze(normalize(parsed.data));
}

function normalize(parsed: ParsedConfig): WalhookConfig {
  return {
    source: {
      connection: parsed.source.connection,
      slot: parsed.source.slot,
      publication: parsed.source.publication,
      plugin: parsed.source.plugin,
      maxLagBytes: parsed.source.max_lag_bytes,
      replicaIdentityFull: parsed.source.replica_identity_full,
    },
    webhooks: parsed.webhooks.map((webhook) => ({
      name: webhook.name,
      url: webhook.url,
      headers: webhook.headers,
      timeoutMs: webhook.timeout,
      retry: {
        initialDelayMs: webhook.retry.initial_delay,
        maxDelayMs: webhook.retry.max_delay,
        maxAttempts: webhook.retry.max_attempts ?? null,
        multiplier: webhook.retry.multiplier,
        onStatus: webhook.retry.on_status ?? [408, 425, 429, '5xx'],
      },
      concurrency: webhook.concurrency,
      ordering: webhook.ordering,
      rateLimit:
        webhook.rate_limit === undefined
          ? null
          : {
              perSecond: webhook.rate_limit.per_second,
              burst: webhook.rate_limit.burst ?? Math.ceil(webhook.rate_limit.per_second),
            },
      circuitBreaker:
        webhook.circuit_breaker === undefined
          ? null
          : { failures: webhook.circuit_breaker.failures, coolDownMs: webhook.circuit_breaker.cool_down },
      onFailure: webhook.on_failure,
      batch:
        webhook.batch === undefined
          ? null
          : {
              maxEvents: webhook.batch.max_events,
              maxBytes: Number(webhook.batch.max_bytes),
              maxWaitMs: webhook.batch.max_wait,
            },
      maxBodyBytes: Number(webhook.max_body_bytes),
      signingSecret: webhook.signing_secret ?? null,
      stringifyNumeric: webhook.stringify_numeric,
    })),
    triggers: parsed.triggers.flatMap((trigger) =>
      trigger.table === undefined
        ? []
        : [
            {
              name: trigger.name,
              table: trigger.table,
              // Listed in the canonical order, whatever the order in the file.
              operations: OPERATIONS.filter((operation) => trigger.operations.includes(operation)),
              webhook: trigger.webhook,
              unchangedToast: trigger.unchanged_toast,
              ...normalizeTriggerFilters(trigger),
            },
          ],
    ),
    messageTriggers: parsed.triggers.flatMap((trigger) =>
      trigger.message_prefix === undefined
        ? []
        : [
            {
              name: trigger.name,
              messagePrefix: trigger.message_prefix,
              webhook: trigger.webhook,
              ...(trigger.transform === undefined ? {} : { transform: { body: trigger.transform.body } }),
            },
          ],
    ),
    deadLetters: { schema: parsed.dead_letters.schema },
    server: {
      enabled: parsed.server.enabled,
      host: parsed.server.host,
      port: parsed.server.port,
      adminToken: parsed.server.admin_token || null,
    },
    leader: { pollIntervalMs: parsed.leader.poll_interval },
    log: { level: parsed.log.level },
    shutdownTimeoutMs: parsed.shutdown_timeout,
    maxInflightEvents: parsed.max_inflight_events ?? defaultInflightEvents(parsed.webhooks),
    maxInflightBytes: Number(parsed.max_inflight_bytes),
  };
}

/** The default of `max_inflight_events` when the configuration leaves it out. */
const MIN_DEFAULT_INFLIGHT_EVENTS = 1000;

/**
 * Returns the default in-flight limit: 1000 events, or the sum of concurrency times
 * batch size over the webhooks when that is more, so that the limit never keeps a
 * webhook below its concurrency.
 */
export function defaultInflightEvents(
  webhooks: readonly { readonly concurrency: number; readonly batch?: { readonly max_events: number } | undefined }[],
): number {
  let inRequests = 0;
  for (const webhook of webhooks) inRequests += webhook.concurrency * (webhook.batch?.max_events ?? 1);
  return Math.max(MIN_DEFAULT_INFLIGHT_EVENTS, inRequests);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) {
      deepFreeze(child);
    }
    Object.freeze(value);
  }
  return value;
}

function describeReadError(error: unknown): string {
  const code = error instanceof Error && 'code' in error ? error.code : undefined;
  switch (code) {
    case 'ENOENT':
      return 'cannot read the configuration file: file not found';
    case 'EACCES':
      return 'cannot read the configuration file: permission denied';
    case 'EISDIR':
      return 'cannot read the configuration file: it is a directory; expected a YAML file';
    default:
      return `cannot read the configuration file: ${error instanceof Error ? error.message : String(error)}`;
  }
}
