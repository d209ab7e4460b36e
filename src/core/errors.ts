/**
 * Base class of every error walhook raises on purpose. `code` is stable and listed
 * in docs/errors.md; `retryable` states whether trying again can help.
 */
export class WalhookError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WalhookError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** One problem in a configuration file, located by its path (`triggers[0].webhook`). */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/** The configuration is invalid; `problems` lists every problem found, not just the first. */
export class ConfigError extends WalhookError {
  readonly problems: readonly ConfigProblem[];

  constructor(file: string, problems: readonly ConfigProblem[]) {
    const lines = problems.map((p) => (p.path ? `  ${p.path}: ${p.message}` : `  ${p.message}`));
    super('WALHOOK_CONFIG_INVALID', `invalid configuration in ${file}:\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * The database is not in a state walhook can stream from (wal_level, lost slot,
 * plugin mismatch, ...). Fatal: the message ends with the fix.
 */
export class SourceStateError extends WalhookError {
  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(code, message, { retryable: false, ...options });
    this.name = 'SourceStateError';
  }
}
