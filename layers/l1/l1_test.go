package l1_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l1"
)

func start(t *testing.T, dbURL string) layertest.Target {
	t.Helper()
	var cfg l1.Config
	require.NoError(t, config.Load(&cfg))
	cfg.DatabaseURL = dbURL
	svc, err := l1.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(layertest.Validating(t, svc.Handler()))
	t.Cleanup(func() { srv.Close(); svc.Close() })
	return layertest.Target{
		URL: srv.URL, Layer: l1.Layer, WriteMessage: "Data written successfully",
		Rows: func(t testing.TB) int { return layertest.CountRows(t, dbURL, "records") },
	}
}

func TestContract(t *testing.T) {
	layertest.Run(t, start(t, testenv.PostgresURL(t)))
}

// test_pool_stats, test_pool_reuses_connections, test_pool_connection_reuse: the numbers
// are live (the original's were always 0) and connections are reused.
func TestPoolStats(t *testing.T) {
	c := layertest.NewClient(t, start(t, testenv.PostgresURL(t)))
	r := c.Get("/pool-stats")
	require.Equal(t, http.StatusOK, r.Status)
	for _, f := range []string{"pool_size", "pool_available", "requests_waiting", "usage_ms", "in_use",
		"acquire_count", "wait_count", "wait_time_ms", "min_size", "max_size"} {
		assert.Contains(t, r.Body, f)
	}
	assert.Equal(t, 2.0, r.Body["min_size"])
	assert.Equal(t, 10.0, r.Body["max_size"])
	before := r.Body["acquire_count"].(float64)

	for i := range 5 {
		c.MustWrite(fmt.Sprint("k", i), "v")
	}
	r = c.Get("/pool-stats")
	assert.Equal(t, r.Body, c.Get("/cache-stats").Body, "/cache-stats is the same document")
	assert.GreaterOrEqual(t, r.Body["acquire_count"].(float64), before+5)
	assert.LessOrEqual(t, r.Body["pool_size"].(float64), 10.0)
	assert.Positive(t, r.Body["pool_size"].(float64))
	assert.LessOrEqual(t, r.Body["connections_opened"].(float64), 10.0, "five writes reuse pooled connections")
	assert.Equal(t, 0.0, r.Body["in_use"])
}

// test_concurrent_requests: 20 concurrent writes all succeed and are readable, and the
// pool never opens more than its maximum.
func TestConcurrentRequests(t *testing.T) {
	tg := start(t, testenv.PostgresURL(t))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { layertest.NewClient(t, tg).MustWrite(fmt.Sprint("concurrent_", i), fmt.Sprint("v", i)) })
	}
	wg.Wait()
	c := layertest.NewClient(t, tg)
	for i := range 20 {
		assert.Equal(t, fmt.Sprint("v", i), c.Read(fmt.Sprint("concurrent_", i)).Body["value"])
	}
	assert.LessOrEqual(t, c.Get("/pool-stats").Body["connections_opened"].(float64), 10.0)
}

func TestDatabaseOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	tg := start(t, pg.CreateDatabase(t))
	layertest.DatabaseOutage(t, tg, func() { pg.Stop(t) }, func() { pg.Start(t) })
}
