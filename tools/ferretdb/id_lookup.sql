-- The _id look-up index trigger of tools/ferretdb (index.go says why). Run in one transaction
-- in FerretDB's backend database: by tools/ferretdb at start, and by the mongo stand-in's
-- entrypoint (scripts/images/mongo), which runs FerretDB's own server.
SELECT pg_advisory_xact_lock(hashtext('dblayers_ferretdb_id_lookup'));

CREATE OR REPLACE FUNCTION public.dblayers_ferretdb_id_lookup() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
	obj record;
BEGIN
	FOR obj IN
		SELECT c.object_identity
		FROM pg_event_trigger_ddl_commands() c
		JOIN pg_class r ON r.oid = c.objid
		WHERE c.command_tag = 'CREATE TABLE' AND c.object_type = 'table'
			AND r.relname NOT LIKE '\_ferretdb\_%'
			AND EXISTS (SELECT 1 FROM pg_attribute a
				WHERE a.attrelid = r.oid AND a.attname = '_jsonb' AND NOT a.attisdropped)
	LOOP
		EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb->''_id'') jsonb_path_ops) WITH (fastupdate = off)',
			obj.object_identity);
	END LOOP;
END
$fn$;

DO $do$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'dblayers_ferretdb_id_lookup') THEN
		CREATE EVENT TRIGGER dblayers_ferretdb_id_lookup ON ddl_command_end
			WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION public.dblayers_ferretdb_id_lookup();
	END IF;
END
$do$;
