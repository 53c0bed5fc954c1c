package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// FerretDB 1.24's PostgreSQL backend keeps each collection in a table with one jsonb
// column, _jsonb, and a unique btree index on (_jsonb->'_id'). That index serves its
// UPDATE and DELETE statements (WHERE _jsonb->'_id' = $1), but every query it pushes down
// for a filter such as {_id: "k"} (a find, and the look-up that starts every update and
// upsert) is WHERE _jsonb->$1 @> $2 with $1 = '_id', and a btree cannot answer @>: so
// each of them scanned the whole table. No filter shape pushes down anything else.
//
// idLookupSQL installs, in the backend database, an event trigger that gives every table
// FerretDB creates a GIN index on the same expression, which answers @> (a bitmap index
// scan for one key instead of a scan of the collection). fastupdate is off so that a
// look-up never reads a pending list of unindexed entries. FerretDB does not know the
// index (listIndexes does not show it), and dropping the collection drops it with the
// table. Installing is idempotent, and serialised by an advisory lock, so servers sharing
// one database may start at once.
const idLookupSQL = `
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
`

// backendURL is rawURL with plan_cache_mode=force_custom_plan unless it sets that itself.
// FerretDB's statements are prepared (pgx caches them) with the field name as a parameter;
// a generic plan cannot match _jsonb->$1 to the index on _jsonb->'_id', so PostgreSQL
// would fall back to scanning once it judged a generic plan no worse (a small table).
func backendURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("-postgresql-url: want postgres://… or postgresql://…, got %q", rawURL)
	}
	q := u.Query()
	if !q.Has("plan_cache_mode") {
		q.Set("plan_cache_mode", "force_custom_plan")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// installIDLookup connects to the backend database (retrying for up to wait while it
// refuses, e.g. still starting) and runs idLookupSQL in one transaction.
func installIDLookup(ctx context.Context, pgURL string, wait time.Duration) error {
	// As FerretDB parses it: pool_max_conns and the like are pool options, not parameters.
	pcfg, err := pgxpool.ParseConfig(pgURL)
	if err != nil {
		return fmt.Errorf("-postgresql-url: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var conn *pgx.Conn
	for {
		conn, err = pgx.ConnectConfig(ctx, pcfg.ConnConfig)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to the PostgreSQL backend: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, idLookupSQL)
		return err
	})
	if err != nil {
		return errors.Join(errors.New("install the _id look-up index trigger in the PostgreSQL backend"), err)
	}
	return nil
}
