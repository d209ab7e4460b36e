export { loadConfig, parseConfig, type ParseOptions } from './load.js';
export { InvalidConnectionStringError, normalizeConnectionString } from './connection.js';
export { formatDuration, InvalidDurationError, parseDuration } from './duration.js';
export {
  formatTableName,
  InvalidTableNameError,
  MAX_IDENTIFIER_BYTES,
  parseTableName,
  quoteIdentifier,
} from './identifier.js';
export * from './types.js';
