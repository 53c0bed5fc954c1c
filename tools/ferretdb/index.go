package main

import (
	"context"
	_ "embed"
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
// idLookupSQL (id_lookup.sql) installs, in the backend database, an event trigger that
// gives every table FerretDB creates a GIN index on the same expression, which answers @>
// (a bitmap index scan for one key instead of a scan of the collection). fastupdate is off
// so that a look-up never reads a pending list of unindexed entries. FerretDB does not know
// the index (listIndexes does not show it), and dropping the collection drops it with the
// table. Installing is idempotent, and serialised by an advisory lock, so servers sharing
// one database may start at once. The mongo stand-in image runs the same file.
//
//go:embed id_lookup.sql
var idLookupSQL string

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
