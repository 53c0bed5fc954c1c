package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// sqlTimeout bounds one helper call below: connecting, the statement, closing.
const sqlTimeout = 30 * time.Second

// withConn calls fn with a connection of its own to the PostgreSQL database at url, closed
// afterwards, all within sqlTimeout.
func withConn(url string, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return fn(ctx, conn)
}

// QueryRow runs a query on the PostgreSQL database at url, on a connection of its own, and
// scans its single row into dst. It returns any error, connecting included, and
// pgx.ErrNoRows when there is no row, without failing the test: callers that poll a server
// while it restarts need the error, the others require it to be nil.
func QueryRow(url, sql string, args []any, dst ...any) error {
	return withConn(url, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql, args...).Scan(dst...)
	})
}

// Exec runs one statement on the PostgreSQL database at url, on a connection of its own,
// and fails t if it does not succeed.
func Exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	require.NoError(t, execSQL(url, sql, args...))
}

func execSQL(url, sql string, args ...any) error {
	return withConn(url, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
}

// ForEachRow runs a query on the PostgreSQL database at url, on a connection of its own,
// scans each row into scans and calls fn after each (pgx.ForEachRow). Like QueryRow it
// returns any error rather than failing a test, so that a goroutine other than the test's
// may call it.
func ForEachRow(url, sql string, args, scans []any, fn func()) error {
	return withConn(url, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, scans, func() error { fn(); return nil })
		return err
	})
}
