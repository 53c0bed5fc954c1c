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

// QueryRow runs a query on the PostgreSQL database at url, on a connection of its own, and
// scans its single row into dst. It returns any error, connecting included, and
// pgx.ErrNoRows when there is no row, without failing the test: callers that poll a server
// while it restarts need the error, the others require it to be nil.
func QueryRow(url, sql string, args []any, dst ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql, args...).Scan(dst...)
}

// Exec runs one statement on the PostgreSQL database at url, on a connection of its own,
// and fails t if it does not succeed.
func Exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}
