/**
 * Structure of the configuration file, after `${VAR}` substitution, as zod schemas.
 *
 * Every key is documented here with its default. Objects are strict, so an unknown
 * key is a problem. Parsing turns durations into milliseconds and table names into
 * TableName, but keeps the file's snake_case keys; load.ts renames them.
 */

import * as z from 'zod';

import { InvalidByteSizeError, parseByteSize } from './byte-size.js';
import { InvalidConnectionStringError, normalizeConnectionString } from './connection.js';
import { InvalidDurationError, formatDuration, parseDuration } from './duration.js';
import { InvalidTableNameError, MAX_IDENTIFIER_BYTES, parseTableName } from './identifier.js';
import { describeType } from './problems.js';
import {
  checkColumnsNeedUpdate,
  payloadSchema,
  transformSchema,
  triggerFilterShape,
  webhookUrlSchema,
} from './trigger-filters.js';
import { OPERATIONS, type Operation } from './types.js';

/**
 * Maximum delay of a Node.js timer (2^31 - 1 ms, about 596 hours). Node.js runs a timer
 * with a longer delay after 1 ms, so a longer duration would act as no delay.
 */
export const MAX_DURATION_MS = 2_147_483_647;

/** Webhook and trigger names appear in logs and event ids, so they stay short and plain. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** PostgreSQL's own rule for replication slot names. */
const SLOT_PATTERN = /^[a-z0-9_]{1,63}$/;

/** Schema of the dead-letter table when the file does not set `dead_letters.schema`. */
export const DEFAULT_DEAD_LETTER_SCHEMA = 'walhook';


/**
 * Checks PostgreSQL's limits for a name used as written, such as a publication name.
 * Case and special characters are kept, so the name must be quoted in SQL.
 */
function isValidIdentifier(name: string): boolean {
  return name !== '' && !name.includes('\0') && Buffer.byteLength(name, 'utf8') <= MAX_IDENTIFIER_BYTES;
}

/** RFC 9110 token characters, the only ones allowed in a header name. */
const HEADER_NAME_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Characters undici 7 rejects in a header value: controls other than tab, and above U+00FF. */
const INVALID_HEADER_VALUE_CHARACTER = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Headers walhook cannot send as configured. Content-Length comes from the request
 * body, and undici 7 raises an error for the others on every request.
 */
const FORBIDDEN_HEADERS = new Set([
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'expect',
]);

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const PLUGINS = ['pgoutput', 'wal2json'] as const;

/** Returns a schema that parses a duration string (`10s`) to milliseconds, from 1 to MAX_DURATION_MS. */
function durationSchema(defaultText: string) {
  return z
    .unknown()
    .transform((value, context): number => {
      if (typeof value !== 'string') {
        context.addIssue({ code: 'custom', message: describeNonStringDuration(value) });
        return z.NEVER;
      }

      let milliseconds: number;
      try {
        milliseconds = parseDuration(value);
      } catch (error) {
        if (!(error instanceof InvalidDurationError)) {
          throw error;
        }
        context.addIssue({ code: 'custom', message: error.message });
        return z.NEVER;
      }

      if (milliseconds === 0) {
        context.addIssue({ code: 'custom', message: `must be greater than 0, got '${value}'` });
        return z.NEVER;
      }
      if (milliseconds > MAX_DURATION_MS) {
        context.addIssue({
          code: 'custom',
          message: `must be at most ${MAX_DURATION_MS}ms (about 596h), the maximum Node.js timer delay, got '${value}'`,
        });
        return z.NEVER;
      }
      return milliseconds;
    })
    .prefault(defaultText);
}

function describeNonStringDuration(value: unknown): string {
  if (typeof value === 'number') {
    return `a bare number has no unit; write a duration such as '${value}s' or '${value}ms'`;
  }
  return `expected a duration such as '10s', got ${describeType(value)}`;
}

function nameSchema(kind: string) {
  return z.string().regex(NAME_PATTERN, {
    error: (issue) =>
      `invalid ${kind} name '${String(issue.input)}'; use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
  });
}

const tableNameSchema = z.string().transform((value, context) => {
  try {
    return parseTableName(value);
  } catch (error) {
    if (!(error instanceof InvalidTableNameError)) {
      throw error;
    }
    context.addIssue({ code: 'custom', message: error.message });
    return z.NEVER;
  }
});

/**
 * libpq connection URL or key=value string, returned as a URL. The message never
 * repeats the value, because it may contain a password.
 */
const connectionSchema = z.string().transform((value, context) => {
  try {
    return normalizeConnectionString(value);
  } catch (error) {
    if (!(error instanceof InvalidConnectionStringError)) {
      throw error;
    }
    context.addIssue({ code: 'custom', message: error.message });
    return z.NEVER;
  }
});

/**
 * Extra request headers. Names must be HTTP tokens and unique regardless of case.
 * Values must be strings, and messages never repeat them, because they often contain
 * credentials.
 */
const headersSchema = z.unknown().transform((value, context): Record<string, string> => {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    context.addIssue({
      code: 'custom',
      message: `expected a mapping of header names to values, got ${describeType(value)}`,
    });
    return z.NEVER;
  }

  const seen = new Map<string, string>();
  const result: Record<string, string> = {};
  for (const [headerName, headerValue] of Object.entries(value)) {
    const message = checkHeader(headerName, headerValue as unknown, seen);
    if (!seen.has(headerName.toLowerCase())) {
      seen.set(headerName.toLowerCase(), headerName);
    }
    if (message !== undefined) {
      context.addIssue({ code: 'custom', message, path: [headerName] });
      continue;
    }
    // defineProperty keeps a header named __proto__ an ordinary key.
    Object.defineProperty(result, headerName, { value: headerValue, enumerable: true });
  }
  return result;
});

function checkHeader(
  headerName: string,
  headerValue: unknown,
  seen: ReadonlyMap<string, string>,
): string | undefined {
  const lowerCaseName = headerName.toLowerCase();
  if (!HEADER_NAME_PATTERN.test(headerName)) {
    return 'invalid header name; use only letters, digits and !#$%&\'*+-.^_`|~';
  }
  if (FORBIDDEN_HEADERS.has(lowerCaseName)) {
    return `walhook cannot send a ${headerName} header; remove it`;
  }
  const earlier = seen.get(lowerCaseName);
  if (earlier !== undefined) {
    return `duplicate header; '${earlier}' is the same header, because names ignore case`;
  }
  if (typeof headerValue !== 'string') {
    return `expected a string value, got ${describeType(headerValue)}; put the value in quotes`;
  }
  if (INVALID_HEADER_VALUE_CHARACTER.test(headerValue)) {
    return 'the value contains a line break, a control character or a character above U+00FF, which HTTP header values cannot contain';
  }
  return undefined;
}

const sourceSchema = z.strictObject({
  /** libpq URL or key=value string, converted to a URL. Required, usually `${DATABASE_URL}`. */
  connection: connectionSchema,
  /** Logical replication slot, created if missing. Default `walhook`. */
  slot: z
    .string()
    .regex(SLOT_PATTERN, {
      error: (issue) =>
        `invalid slot name '${String(issue.input)}'; use 1 to 63 lower-case letters, digits or '_'`,
    })
    .prefault('walhook'),
  /** Publication to stream, created if missing. Default `walhook`. */
  publication: z
    .string()
    .refine(isValidIdentifier, {
      error: (issue) =>
        `invalid publication name '${String(issue.input)}'; use 1 to ${MAX_IDENTIFIER_BYTES} bytes without the NUL character`,
    })
    .prefault('walhook'),
  /** Logical decoding output plugin: `pgoutput` or `wal2json`. Default `pgoutput`. */
  plugin: z.enum(PLUGINS).prefault('pgoutput'),
  /** WAL the slot may retain before walhook warns, in bytes or as `512MiB`. Default `1GiB`. */
  max_lag_bytes: byteSizeSchema('1GiB'),
  /**
   * Set REPLICA IDENTITY FULL on every configured table at start, so updates and
   * deletes carry whole old rows. Each change is logged. Default `false`.
   */
  replica_identity_full: z.boolean().prefault(false),
});

const retrySchema = z
  .strictObject({
    /** First backoff delay after a failed attempt. Default `1s`. */
    initial_delay: durationSchema('1s'),
    /** Cap on any single backoff delay, also on a `Retry-After` wait; at least `initial_delay`. Default `5m`. */
    max_delay: durationSchema('5m'),
    /** Attempts before the failure policy applies, counting the first. Default: no limit. */
    max_attempts: z.number().int().min(1).max(1_000_000).optional(),
    /** Growth factor of the backoff per attempt, from 1 to 10. Default `2`. */
    multiplier: z.number().min(1).max(10).prefault(2),
    /**
     * Statuses retried, as numbers or the classes `4xx` and `5xx`. Network errors and
     * timeouts are always retried; other non-2xx statuses are permanent failures.
     * Default `[408, 425, 429, 5xx]`.
     */
    on_status: z
      .array(z.union([z.number().int().min(100).max(599), z.enum(['4xx', '5xx'])]))
      .min(1, { error: 'list at least one status, or remove the key for the default' })
      .optional(),
  })
  .superRefine((retry, context) => {
    if (retry.max_delay < retry.initial_delay) {
      context.addIssue({
        code: 'custom',
        path: ['max_delay'],
        message: `must be at least initial_delay (${formatDuration(retry.initial_delay)}), got ${formatDuration(retry.max_delay)}`,
      });
    }
  });

const webhookSchema = z.strictObject({
  /** Unique name that triggers refer to. Required. */
  name: nameSchema('webhook'),
  /** http(s) URL that receives each event as a POST request; may contain `{{ path }}` placeholders. Required. */
  url: webhookUrlSchema,
  /** Extra request headers, such as Authorization. Default none. */
  headers: headersSchema.prefault({}),
  /** Deadline for one delivery attempt. Default `10s`. */
  timeout: durationSchema('10s'),
  /** Backoff between attempts. Default `{ initial_delay: 1s, max_delay: 5m }`. */
  retry: retrySchema.prefault({}),
  /** Requests in flight at once. Default `16`. */
  concurrency: z.number().int().min(1).max(1024).prefault(16),
  /**
   * Ordering mode, the events that wait for each other: `row` (same table and key), `table`, `none`, or
   * `strict` (one at a time in commit order). Default `row`.
   */
  ordering: z.enum(['row', 'table', 'none', 'strict']).prefault('row'),
  /** Request rate limit as a token bucket. Default none. */
  rate_limit: z
    .strictObject({
      /** Sustained requests per second. Required. */
      per_second: z.number().positive().max(100_000),
      /** Requests allowed at once after a quiet period. Default `per_second` rounded up. */
      burst: z.number().int().min(1).optional(),
    })
    .optional(),
  /** Pause the webhook after consecutive failures, then probe it. Default off. */
  circuit_breaker: z
    .strictObject({
      /** Consecutive failed attempts that open the breaker. Default `5`. */
      failures: z.number().int().min(1).prefault(5),
      /** Pause before one probe attempt. Default `30s`. */
      cool_down: durationSchema('30s'),
    })
    .optional(),
  /**
   * What happens to an event after its last attempt or a permanent failure:
   * `dead_letter` writes it to the dead-letter table and moves on, `block` keeps
   * retrying and stops the webhook and the slot. Default `dead_letter`.
   */
  on_failure: z.enum(['dead_letter', 'block']).prefault('dead_letter'),
  /** Send several events per request as `{ "events": [...] }`. Default off. */
  batch: z
    .strictObject({
      /** Events per request. Default `100`. */
      max_events: z.number().int().min(1).max(100_000).prefault(100),
      /** Body size per request. Default `1MiB`. */
      max_bytes: byteSizeSchema('1MiB'),
      /** Wait for more events before sending a partial batch. Default `100ms`. */
      max_wait: durationSchema('100ms'),
    })
    .optional(),
  /** Largest request body; a single larger event goes to the failure policy. Default `10MiB`. */
  max_body_bytes: byteSizeSchema('10MiB'),
  /**
   * Standard Webhooks signing secret (`whsec_` + base64, usually `${SECRET}`). Adds a
   * `webhook-signature` header. Default none.
   */
  signing_secret: z
    .string()
    .refine((secret) => /^whsec_[A-Za-z0-9+/]+={0,2}$/.test(secret) && secret.length >= 30, {
      error: "must be 'whsec_' followed by a base64 key of at least 18 bytes; generate one with 'echo whsec_$(openssl rand -base64 32)'",
    })
    .optional(),
  /** Render int8, numeric, float4 and float8 values as JSON strings. Default `false`. */
  stringify_numeric: z.boolean().prefault(false),
}).superRefine((webhook, context) => {
  if (webhook.batch !== undefined && webhook.url.includes('{{')) {
    context.addIssue({
      code: 'custom',
      path: ['batch'],
      message: 'cannot be combined with {{ }} placeholders in url, because one request has one URL; remove one of them',
    });
  }
  if (webhook.batch !== undefined && webhook.batch.max_bytes > webhook.max_body_bytes) {
    context.addIssue({
      code: 'custom',
      path: ['batch', 'max_bytes'],
      message: 'must not exceed max_body_bytes',
    });
  }
});

const operationsSchema = z
  .array(z.enum(OPERATIONS as readonly [Operation, ...Operation[]]))
  .min(1, { error: 'list at least one operation, or remove the key to get all four' })
  .superRefine(
    (operations, context) => {
      operations.forEach((operation, index) => {
        if (operations.indexOf(operation) !== index) {
          context.addIssue({ code: 'custom', path: [index], message: `duplicate operation '${operation}'` });
        }
      });
    },
    // Also run when another entry is not an operation, so both problems are reported.
    { when: (payload) => Array.isArray(payload.value) },
  )
  .prefault([...OPERATIONS]);

const triggerSchema = z.strictObject({
  /** Unique trigger name, used in logs and events. Required. */
  name: nameSchema('trigger'),
  /** Table as `schema.table` or `table` (schema `public`), under SQL identifier rules. Required unless `message_prefix` is set. */
  table: tableNameSchema.optional(),
  /**
   * Prefix of logical decoding messages (`pg_logical_emit_message`) that fire the
   * trigger, instead of a table. PostgreSQL 14 or later with pgoutput.
   */
  message_prefix: z.string().min(1, { error: 'must not be empty' }).optional(),
  /** Operations that fire the trigger. Default all: insert, update, delete, truncate. */
  operations: operationsSchema,
  /** Name of the webhook that receives the events. Required. */
  webhook: z.string(),
  ...triggerFilterShape,
  /**
   * Handling of a TOASTed value that an update left unchanged. `omit` leaves it out of
   * `new` and names it in `event.unchanged_columns`. `reselect` reads the current value
   * by key before delivery, so it may be newer than the change. Default `omit`.
   */
  unchanged_toast: z.enum(['omit', 'reselect']).prefault('omit'),
}).superRefine(checkColumnsNeedUpdate, {
  // Also run when other keys are invalid, so that this problem is reported with theirs.
  when: (payload) => typeof payload.value === 'object' && payload.value !== null,
}).superRefine(checkTableOrMessagePrefix, {
  when: (payload) => typeof payload.value === 'object' && payload.value !== null,
});

/** Requires exactly one of `table` and `message_prefix`, and no row filters on messages. */
function checkTableOrMessagePrefix(
  trigger: { readonly table?: unknown; readonly message_prefix?: unknown; readonly [key: string]: unknown },
  context: z.RefinementCtx,
): void {
  const hasTable = trigger.table !== undefined;
  const hasPrefix = trigger.message_prefix !== undefined;
  if (hasTable === hasPrefix) {
    context.addIssue({
      code: 'custom',
      path: hasTable ? ['message_prefix'] : ['table'],
      message: hasTable
        ? 'set either table or message_prefix, not both'
        : 'missing: set table (schema.name) or message_prefix',
    });
    return;
  }
  if (!hasPrefix) return;
  for (const key of ['columns', 'where', 'payload']) {
    if (trigger[key] !== undefined) {
      context.addIssue({
        code: 'custom',
        path: [key],
        message: `applies to table rows only; remove it from this message_prefix trigger`,
      });
    }
  }
}

const deadLettersSchema = z.strictObject({
  /**
   * Schema of the `dead_letters` table, created at start if missing. Used as written,
   * without case folding. Default `walhook`.
   */
  schema: z
    .string()
    .refine(isValidIdentifier, {
      error: (issue) =>
        `invalid schema name '${String(issue.input)}'; use 1 to ${MAX_IDENTIFIER_BYTES} bytes without the NUL character`,
      abort: true,
    })
    .refine((name) => !name.startsWith('pg_'), {
      error: (issue) =>
        `invalid schema name '${String(issue.input)}'; PostgreSQL reserves names that start with 'pg_' for system schemas`,
    })
    .prefault(DEFAULT_DEAD_LETTER_SCHEMA),
});

/** Returns a schema that parses a byte size (`1GiB` or a number of bytes) to a bigint above 0. */
function byteSizeSchema(defaultText: string) {
  return z
    .unknown()
    .transform((value, context): bigint => {
      if (typeof value !== 'string' && typeof value !== 'number') {
        context.addIssue({
          code: 'custom',
          message: `expected a size such as '1GiB' or a number of bytes, got ${describeType(value)}`,
        });
        return z.NEVER;
      }
      let bytes: bigint;
      try {
        bytes = parseByteSize(value);
      } catch (error) {
        if (!(error instanceof InvalidByteSizeError)) {
          throw error;
        }
        context.addIssue({ code: 'custom', message: error.message });
        return z.NEVER;
      }
      if (bytes === 0n) {
        context.addIssue({ code: 'custom', message: 'must be greater than 0' });
        return z.NEVER;
      }
      return bytes;
    })
    .prefault(defaultText);
}

/** A TCP port from 0 to 65535, as a number or a string of digits such as `${PORT}`. */
const portSchema = z.unknown().transform((value, context): number => {
  const port = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    context.addIssue({
      code: 'custom',
      message: `expected a port number from 0 to 65535, got ${typeof port === 'number' ? port : describeType(value)}`,
    });
    return z.NEVER;
  }
  return port;
});

/** Minimum length of `server.admin_token`, so that it cannot be guessed. */
const MIN_ADMIN_TOKEN_LENGTH = 16;

const serverSchema = z.strictObject({
  /** Whether walhook serves /healthz, /readyz and /metrics. Default `true`. */
  enabled: z.boolean().prefault(true),
  /** Address to bind. Default `0.0.0.0`, every IPv4 interface. */
  host: z.string().min(1, { error: 'must not be empty' }).prefault('0.0.0.0'),
  /** TCP port; 0 picks a free port. Default `8080`. */
  port: portSchema.prefault(8080),
  /**
   * Token that enables the admin actions of the status page. Optional, usually
   * `${WALHOOK_ADMIN_TOKEN:-}`; an empty value means none. Messages never repeat it.
   */
  admin_token: z
    .string()
    .refine((token) => token === '' || token.length >= MIN_ADMIN_TOKEN_LENGTH, {
      error: `must be empty or at least ${MIN_ADMIN_TOKEN_LENGTH} characters long; generate one with 'openssl rand -hex 32'`,
    })
    .optional(),
});

const leaderSchema = z.strictObject({
  /**
   * How often a standby tries the leader lock and the leader checks its lock session.
   * A standby takes over about one interval after the leader's process ends, and about
   * 3 intervals plus 1 s after a network loss. Default `2s`.
   */
  poll_interval: durationSchema('2s'),
});

const logSchema = z.strictObject({
  /** pino level: fatal, error, warn, info, debug, trace or silent. Default `info`. */
  level: z.enum(LOG_LEVELS).prefault('info'),
});

export const configSchema = z.strictObject({
  /** The PostgreSQL database to stream from. Required. */
  source: sourceSchema,
  /** Delivery targets. Required, at least one. */
  webhooks: z.array(webhookSchema).min(1, { error: 'define at least one webhook' }),
  /** Routes from table changes to webhooks. Required, at least one. */
  triggers: z.array(triggerSchema).min(1, { error: 'define at least one trigger' }),
  /** Dead-letter table settings. Default `{ schema: walhook }`. */
  dead_letters: deadLettersSchema.prefault({}),
  /** Operations HTTP server. Default `{ enabled: true, host: 0.0.0.0, port: 8080 }`. */
  server: serverSchema.prefault({}),
  /** Leader election between replicas that share this file. Default `{ poll_interval: 2s }`. */
  leader: leaderSchema.prefault({}),
  /** Logging settings. Default `{ level: info }`. */
  log: logSchema.prefault({}),
  /** How long shutdown waits for in-flight deliveries. Default `30s`. */
  shutdown_timeout: durationSchema('30s'),
  /**
   * Undelivered events held in memory before reading from the slot pauses. Default
   * 1000, or what the webhooks can have in requests at once when that is more.
   */
  max_inflight_events: z.number().int().min(1).max(10_000_000).optional(),
  /** Undelivered request bodies held in memory before reading pauses. Default `16MiB`. */
  max_inflight_bytes: byteSizeSchema('16MiB'),
});

export type ParsedConfig = z.output<typeof configSchema>;

/**
 * Keys allowed in each mapping, by path with list indexes written as `[]`. Used to
 * suggest a key when the file has an unknown one.
 */
const KNOWN_KEYS: ReadonlyMap<string, readonly string[]> = new Map([
  ['', Object.keys(configSchema.shape)],
  ['source', Object.keys(sourceSchema.shape)],
  ['webhooks[]', Object.keys(webhookSchema.shape)],
  ['webhooks[].retry', Object.keys(retrySchema.shape)],
  ['triggers[]', Object.keys(triggerSchema.shape)],
  ['triggers[].payload', Object.keys(payloadSchema.shape)],
  ['triggers[].transform', Object.keys(transformSchema.shape)],
  ['dead_letters', Object.keys(deadLettersSchema.shape)],
  ['server', Object.keys(serverSchema.shape)],
  ['leader', Object.keys(leaderSchema.shape)],
  ['log', Object.keys(logSchema.shape)],
]);

export function knownKeysAt(path: readonly (string | number)[]): readonly string[] {
  const pattern = path
    .map((segment) => (typeof segment === 'number' ? '[]' : `.${segment}`))
    .join('')
    .replace(/^\./, '');
  return KNOWN_KEYS.get(pattern) ?? [];
}
