/**
 * Settings pinned on every walhook session, replication and regular alike, because
 * they change how PostgreSQL prints values. With them fixed, the delivered text never
 * depends on the database role's defaults or on the Node process's TZ.
 */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: 'UTC',
  DateStyle: 'ISO, MDY',
  IntervalStyle: 'postgres',
  bytea_output: 'hex',
  // 1 is the default since PostgreSQL 12 and prints the shortest exact float text.
  extra_float_digits: '1',
};

/** Returns the libpq `options` value that sets SESSION_SETTINGS at connection start. */
export function sessionOptions(): string {
  return Object.entries(SESSION_SETTINGS)
    .map(([name, value]) => `-c ${name}=${value.replace(/\\/g, '\\\\').replace(/ /g, '\\ ')}`)
    .join(' ');
}
