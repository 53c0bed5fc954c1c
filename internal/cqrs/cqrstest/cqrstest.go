// Package cqrstest reads the CQRS read model for tests that compare it (the projector's
// own tests and the layer's rebuild tests).
package cqrstest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
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
	out := []Row{}
	var r Row
	require.NoError(t, testenv.ForEachRow(url, `SELECT key, value, created_at, updated_at, read_count, write_count FROM records ORDER BY key`, nil,
		[]any{&r.Key, &r.Value, &r.CreatedAt, &r.UpdatedAt, &r.ReadCount, &r.WriteCount}, func() { out = append(out, r) }))
	return out
}
