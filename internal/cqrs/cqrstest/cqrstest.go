// Package cqrstest reads the CQRS read model for tests that compare it (the projector's
// own tests and the layer's rebuild tests).
package cqrstest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Row is a read-model row as tests compare it.
type Row struct {
	Key                  string
	Value                string
	CreatedAt, UpdatedAt time.Time
	ReadCount            int
	WriteCount           int
}

// ReadModel returns every row of the read database at url, ordered by key.
func ReadModel(t testing.TB, url string) []Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT key, value, created_at, updated_at, read_count, write_count FROM records ORDER BY key`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Row])
	require.NoError(t, err)
	return out
}
