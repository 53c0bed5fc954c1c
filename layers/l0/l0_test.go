package l0_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l0"
)

func start(t *testing.T, dbURL string) layertest.Target {
	t.Helper()
	var cfg l0.Config
	require.NoError(t, config.Load(&cfg))
	cfg.DatabaseURL = dbURL
	svc, err := l0.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(layertest.Validating(t, svc.Handler()))
	t.Cleanup(func() { srv.Close(); svc.Close() })
	return layertest.Target{
		URL: srv.URL, Layer: l0.Layer, WriteMessage: "Data written successfully",
		Rows: func(t testing.TB) int { return layertest.CountRows(t, dbURL, "records") },
	}
}

// The original's test_api.py (health, write, update, read, not found, multiple, empty,
// large and special values, url-encoded keys, timestamps, concurrency) and more.
func TestContract(t *testing.T) {
	layertest.Run(t, start(t, testenv.PostgresURL(t)))
}

func TestEveryRequestOpensAConnection(t *testing.T) {
	tg := start(t, testenv.PostgresURL(t))
	c := layertest.NewClient(t, tg)
	opened := func() float64 { return c.Get("/cache-stats").Body["connections_opened"].(float64) }
	before := opened()
	c.MustWrite("k", "v")
	c.Read("k")
	assert.Equal(t, before+2, opened())
	assert.Equal(t, false, c.Get("/cache-stats").Body["pooled"])
}

func TestDatabaseOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	tg := start(t, pg.CreateDatabase(t))
	layertest.DatabaseOutage(t, tg, func() { pg.Stop(t) }, func() { pg.Start(t) })
}

func TestStartupCreatesSchemaOnce(t *testing.T) {
	url := testenv.PostgresURL(t)
	start(t, url)
	start(t, url) // a second instance on the same database
	var n int
	require.NoError(t, testenv.QueryRow(url, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'records'`, nil, &n))
	assert.Equal(t, 1, n)
}
