package layertest

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

// CountRows counts the rows of table in the database at url.
func CountRows(t testing.TB, url, table string) int {
	t.Helper()
	var n int
	require.NoError(t, testenv.QueryRow(url, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize(), nil, &n))
	return n
}

// StoredValue returns the value the records table of the database at url holds for key,
// and whether it holds the key at all.
func StoredValue(t testing.TB, url, key string) (string, bool) {
	t.Helper()
	var v string
	err := testenv.QueryRow(url, "SELECT value FROM records WHERE key = $1", []any{key}, &v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false
	}
	require.NoError(t, err)
	return v, true
}

// StoredValues returns key → value of every row of the records table of the database at url.
func StoredValues(t testing.TB, url string) map[string]string {
	t.Helper()
	all := map[string]string{}
	var k, v string
	require.NoError(t, testenv.ForEachRow(url, "SELECT key, value FROM records", nil, []any{&k, &v}, func() { all[k] = v }))
	return all
}
