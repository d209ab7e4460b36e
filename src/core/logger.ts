/**
 * pino logger factory. Secrets never reach the log: header values, connection
 * strings and passwords are redacted by path, and summaries are built with the
 * redact helpers below.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

const REDACT_PATHS = [
  'headers.*',
  '*.headers.*',
  'connection',
  '*.connection',
  'password',
  '*.password',
  'signingSecret',
  '*.signingSecret',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { name: 'walhook' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** Returns the URL with its password and query values replaced, for logs and status output. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password !== '') url.password = 'redacted';
    for (const key of [...url.searchParams.keys()]) url.searchParams.set(key, 'redacted');
    return url.toString();
  } catch {
    // A libpq key=value string: hide the password value.
    return text.replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, '$1[redacted]');
  }
}
