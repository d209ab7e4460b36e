import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from 'pino';

/** One parsed pino line. */
export interface CapturedLog {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger at `debug` that keeps every line it writes, for assertions on logs. */
export interface LogCapture {
  readonly logger: Logger;
  readonly lines: CapturedLog[];
  /** Lines at `level` or above (pino numbers: 40 warn, 50 error) whose message matches. */
  find(level: number, pattern: RegExp): CapturedLog[];
}

export function captureLogs(): LogCapture {
  const lines: CapturedLog[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as CapturedLog);
      }
      callback();
    },
  });
  const logger = pino({ level: 'debug' }, destination);
  return {
    logger,
    lines,
    find: (level, pattern) => lines.filter((line) => line.level >= level && pattern.test(line.msg)),
  };
}
