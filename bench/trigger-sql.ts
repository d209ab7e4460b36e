/**
 * SQL of the trigger baseline, a Hasura-style capture: an AFTER ROW trigger writes each
 * change as JSON into an event table, and a poller (trigger-poller.ts) delivers it.
 */

export const EVENT_LOG_TABLE = 'bench_event_log';

/** Creates the event table, its index for the poller's fetch and the trigger function. */
export const TRIGGER_SETUP_SQL: readonly string[] = [
  `CREATE TABLE ${EVENT_LOG_TABLE} (
     id bigserial PRIMARY KEY,
     trigger_name text NOT NULL,
     table_schema text NOT NULL,
     table_name text NOT NULL,
     payload jsonb NOT NULL,
     delivered boolean NOT NULL DEFAULT false,
     locked timestamptz,
     logged_at timestamptz NOT NULL DEFAULT now()
   )`,
  `CREATE INDEX ${EVENT_LOG_TABLE}_pending ON ${EVENT_LOG_TABLE} (id) WHERE NOT delivered AND locked IS NULL`,
  `CREATE FUNCTION bench_capture_row() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     INSERT INTO ${EVENT_LOG_TABLE} (trigger_name, table_schema, table_name, payload)
     VALUES (
       TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME,
       jsonb_build_object(
         'op', TG_OP,
         'data', jsonb_build_object(
           'old', CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
           'new', CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END)));
     RETURN NULL;
   END $$`,
];

/** Attaches the capture trigger to `table` (a plain identifier in the public schema). */
export function attachTriggerSql(table: string): string {
  return `CREATE TRIGGER ${table}_capture AFTER INSERT OR UPDATE OR DELETE ON ${table}
            FOR EACH ROW EXECUTE FUNCTION bench_capture_row()`;
}

export function detachTriggerSql(table: string): string {
  return `DROP TRIGGER IF EXISTS ${table}_capture ON ${table}`;
}

/** Events the poller has not delivered yet. */
export const PENDING_EVENTS_SQL = `SELECT count(*)::int AS pending FROM ${EVENT_LOG_TABLE} WHERE NOT delivered`;
