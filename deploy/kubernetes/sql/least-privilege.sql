-- Creates a PostgreSQL role that runs walhook with the fewest privileges, and the
-- objects that walhook would otherwise need ownership rights to create.
--
-- Run it with psql in the database that walhook streams from, as a superuser: it creates
-- a role with REPLICATION, and CREATE PUBLICATION ... FOR TABLE needs ownership of each
-- table. Managed PostgreSQL services that grant replication through a role of their own
-- instead of the REPLICATION attribute need that grant in place of ALTER ROLE below.
--
--   WALHOOK_PASSWORD="$(openssl rand -hex 24)"
--   psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 \
--     -v tables='public.orders' \
--     -v walhook_password="$WALHOOK_PASSWORD" \
--     -f deploy/kubernetes/sql/least-privilege.sql
--
-- Variables (set with -v NAME=VALUE):
--   tables              required: the tables of walhook.yaml's triggers, comma-separated,
--                       as in SQL (public.orders, sales."Order Items")
--   walhook_password    required: the role's password, for DATABASE_URL
--   walhook_role        default walhook
--   publication         default walhook, as source.publication
--   dead_letter_schema  default walhook, as dead_letters.schema
--
-- Running it again is safe: it updates the role's attributes and password, adds the
-- tables that are missing from the publication and never removes one.
--
-- The role gets:
--   - LOGIN and REPLICATION, to connect, to stream, and to create and read its slot.
--   - CONNECT on the database and USAGE on the schemas of the tables.
--   - SELECT on the tables, which `walhook validate --connect` checks.
--   - The dead-letter schema as its owner, so walhook creates the dead_letters table there.
-- It owns no table of the application. Only an owner of a table may add it to a
-- publication, so the administrator creates the publication here, and walhook finds it
-- complete at start and changes nothing. After you add a trigger for another table, run
-- this script again with that table in `tables` before you deploy the new walhook.yaml.
-- walhook cannot add the table itself and logs "must be owner of publication".
--
-- NOTE: the password travels in an ALTER ROLE statement, which the server logs when
-- log_statement is 'ddl' or 'all'. Set it with psql's \password afterwards if that
-- matters, passing any placeholder value here.
--
-- Replicas terminate a walsender of a former leader on the slot. A role may do that to
-- its own sessions, so every replica must use this same role.

\set ON_ERROR_STOP on

\if :{?tables}
\else
  \echo 'least-privilege.sql: set the tables of your triggers with -v tables=public.orders,...'
  DO $$ BEGIN RAISE EXCEPTION 'psql variable "tables" is not set'; END $$;
\endif
\if :{?walhook_password}
\else
  \echo 'least-privilege.sql: set the role password with -v walhook_password=...'
  DO $$ BEGIN RAISE EXCEPTION 'psql variable "walhook_password" is not set'; END $$;
\endif
\if :{?walhook_role}
\else
  \set walhook_role walhook
\endif
\if :{?publication}
\else
  \set publication walhook
\endif
\if :{?dead_letter_schema}
\else
  \set dead_letter_schema walhook
\endif

BEGIN;

-- The role, created once and brought to these attributes on every run.
SELECT format('CREATE ROLE %I', :'walhook_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'walhook_role') \gexec
ALTER ROLE :"walhook_role" LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
  PASSWORD :'walhook_password';

GRANT CONNECT ON DATABASE :"DBNAME" TO :"walhook_role";

-- Each listed table as a regclass, which also fails early on a missing table.
CREATE TEMPORARY TABLE walhook_setup_tables ON COMMIT DROP AS
SELECT btrim(name)::regclass AS relation
  FROM unnest(string_to_array(:'tables', ',')) AS name;

SELECT DISTINCT format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, :'walhook_role')
  FROM walhook_setup_tables t
  JOIN pg_class c ON c.oid = t.relation
  JOIN pg_namespace n ON n.oid = c.relnamespace \gexec
GRANT SELECT ON TABLE :tables TO :"walhook_role";

-- The publication, created before walhook creates its slot, because pgoutput cannot decode
-- changes made before the publication existed.
SELECT format('CREATE PUBLICATION %I FOR TABLE %s', :'publication', :'tables')
 WHERE NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = :'publication') \gexec
SELECT format('ALTER PUBLICATION %I ADD TABLE %s', :'publication', t.relation)
  FROM walhook_setup_tables t
 WHERE NOT EXISTS (
         SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
          WHERE p.pubname = :'publication' AND r.prrelid = t.relation)
   AND NOT (SELECT puballtables FROM pg_publication WHERE pubname = :'publication') \gexec

-- The dead-letter schema, owned by walhook's role, which creates the table inside it.
SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', :'dead_letter_schema', :'walhook_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :'dead_letter_schema') \gexec
ALTER SCHEMA :"dead_letter_schema" OWNER TO :"walhook_role";

COMMIT;

\echo 'least-privilege.sql: role' :walhook_role 'can run walhook with publication' :publication
