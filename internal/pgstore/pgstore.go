// Package pgstore keeps records in PostgreSQL with pgx: the records schema, the upsert and
// the select, behind either a connection pool (L1 on) or a fresh connection per request
// (L0's lesson). Every call is bounded by a timeout, and driver errors are classified once
// here: a database that cannot be reached is a record.UnavailableError (HTTP 503), anything
// else is an internal error (HTTP 500).
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dblayers/dblayers/internal/record"
)

// Schema creates the records table. key is the primary key (the original's L0–L3 also had
// an id column and a redundant second index on key; L4 on dropped both, and so do we).
const Schema = `
CREATE TABLE IF NOT EXISTS records (
	key        VARCHAR(255) PRIMARY KEY,
	value      TEXT         NOT NULL,
	created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
	updated_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
)`

const (
	upsertSQL = `INSERT INTO records (key, value, updated_at) VALUES ($1, $2, CURRENT_TIMESTAMP)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = CURRENT_TIMESTAMP`
	selectSQL = `SELECT key, value, created_at, updated_at FROM records WHERE key = $1`
)

// Conns hands out a connection for the duration of fn.
type Conns interface {
	WithConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error
}

// Store is a record.Store on one PostgreSQL database.
type Store struct {
	conns Conns
}

var _ record.Store = (*Store)(nil)

// NewStore returns a Store that runs its statements on connections from conns.
func NewStore(conns Conns) *Store { return &Store{conns: conns} }

// Get reads one record; a missing key is record.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (record.Record, error) {
	var rec record.Record
	err := s.conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, selectSQL, key).Scan(&rec.Key, &rec.Value, &rec.CreatedAt, &rec.UpdatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return record.Record{}, record.ErrNotFound
	}
	if err != nil {
		return record.Record{}, Classify(fmt.Errorf("select %q: %w", key, err))
	}
	return rec, nil
}

// Put upserts one record.
func (s *Store) Put(ctx context.Context, key, value string) error {
	err := s.conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, upsertSQL, key, value)
		return err
	})
	if err != nil {
		return Classify(fmt.Errorf("upsert %q: %w", key, err))
	}
	return nil
}

// Ping runs SELECT 1.
func (s *Store) Ping(ctx context.Context) error {
	err := s.conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var one int
		return c.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
	if err != nil {
		return Classify(fmt.Errorf("ping: %w", err))
	}
	return nil
}

// EnsureSchema creates ddl (e.g. Schema) under an advisory lock, so that several processes
// starting together do not race on CREATE … IF NOT EXISTS. It retries until ctx ends,
// because at start-up the database may still be coming up.
func EnsureSchema(ctx context.Context, conns Conns, ddl ...string) error {
	for {
		err := conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
			return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(727274)"); err != nil {
					return err
				}
				for _, stmt := range ddl {
					if _, err := tx.Exec(ctx, stmt); err != nil {
						return err
					}
				}
				return nil
			})
		})
		if err == nil || !record.IsUnavailable(Classify(err)) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create schema: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Classify marks errors that mean "the database cannot serve now" as
// record.UnavailableError: failures to connect or reach the server, timeouts, and the
// server's own connection-exception, resource and shutdown classes. Any other server
// error (a constraint, a bad statement) is a bug or bad data and stays as it is.
func Classify(err error) error {
	if err == nil || record.IsUnavailable(err) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.SQLState()[:2] {
		case "08", "53", "57", "58": // connection exception, insufficient resources, operator intervention, system error
		default:
			return err
		}
	}
	return record.Unavailable("Database", err)
}
