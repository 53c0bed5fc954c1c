package l2_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l2"
)

func start(t *testing.T, dbURL, redisURL string) layertest.Target {
	t.Helper()
	srv := layertest.Serve(t, l2.New, func(c *l2.Config) { c.DatabaseURL, c.RedisURL = dbURL, redisURL })
	return layertest.Target{
		URL: srv.URL, Layer: l2.Layer, WriteMessage: "Data written successfully",
		Rows: func(t testing.TB) int { return layertest.CountRows(t, dbURL, "records") },
	}
}

func TestContract(t *testing.T) {
	layertest.Run(t, start(t, testenv.PostgresURL(t), testenv.RedisURL(t)))
}

// test_health_check with its database and cache fields.
func TestHealth(t *testing.T) {
	r := layertest.NewClient(t, start(t, testenv.PostgresURL(t), testenv.RedisURL(t))).Get("/health")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, map[string]any{"status": "healthy", "layer": "2-read-cache", "database": "healthy", "cache": "healthy"}, r.Body)
}

// test_read_from_cache, test_cache_invalidation_on_write, test_write_update_existing_record.
func TestReadThroughCache(t *testing.T) {
	c := layertest.NewClient(t, start(t, testenv.PostgresURL(t), testenv.RedisURL(t)))
	c.MustWrite("k", "v1")
	first := c.Read("k")
	assert.Equal(t, false, first.Body["from_cache"])
	second := c.Read("k")
	assert.Equal(t, true, second.Body["from_cache"])
	assert.Equal(t, "v1", second.Body["value"])
	assert.Equal(t, first.Body["updated_at"], second.Body["updated_at"], "the cached copy keeps the row's timestamps")

	c.MustWrite("k", "v2")
	r := c.Read("k")
	assert.Equal(t, "v2", r.Body["value"])
	assert.Equal(t, false, r.Body["from_cache"], "the write invalidated the cached copy")

	missing := c.Read("nope")
	assert.Equal(t, false, missing.Body["success"])
	assert.Equal(t, false, missing.Body["from_cache"])
	assert.Equal(t, "Key not found", missing.Body["message"])
}

// test_cache_stats, test_cache_hit_rate: 5 keys read twice → 5 hits, 5 misses, 50%.
func TestCacheStats(t *testing.T) {
	c := layertest.NewClient(t, start(t, testenv.PostgresURL(t), testenv.RedisURL(t)))
	for i := range 5 {
		c.MustWrite(fmt.Sprint("k", i), "v")
	}
	for range 2 {
		for i := range 5 {
			c.Read(fmt.Sprint("k", i))
		}
	}
	r := c.Get("/cache-stats")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, map[string]any{"available": true, "hits": 5.0, "misses": 5.0, "keys": 5.0, "hit_rate": 50.0, "invalidations_pending": 0.0, "skipped": false}, r.Body)
}

// test_concurrent_cache_access: after priming, 20 concurrent reads are all cache hits.
func TestConcurrentCacheAccess(t *testing.T) {
	tg := start(t, testenv.PostgresURL(t), testenv.RedisURL(t))
	c := layertest.NewClient(t, tg)
	c.MustWrite("hot", "v")
	c.Read("hot")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			r := layertest.NewClient(t, tg).Read("hot")
			assert.Equal(t, http.StatusOK, r.Status)
			assert.Equal(t, true, r.Body["from_cache"])
			assert.Equal(t, "v", r.Body["value"])
		})
	}
	wg.Wait()
}

func TestDatabaseOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	tg := start(t, pg.CreateDatabase(t), testenv.RedisURL(t))
	layertest.DatabaseOutage(t, tg, func() { pg.Stop(t) }, func() { pg.Start(t) })
}

// Redis stopped: reads come from PostgreSQL and writes succeed; Redis back: the cache is
// used again by the same process.
func TestRedisOutage(t *testing.T) {
	rs := testenv.StartRedis(t)
	c := layertest.NewClient(t, start(t, testenv.PostgresURL(t), rs.URL(0)))
	c.MustWrite("k", "v1")
	c.Read("k")
	require.Equal(t, true, c.Read("k").Body["from_cache"])

	rs.Stop(t)
	start := time.Now()
	c.MustWrite("k", "v2")
	r := c.Read("k")
	assert.Less(t, time.Since(start), layertest.FastFail)
	assert.Equal(t, "v2", r.Body["value"])
	assert.Equal(t, false, r.Body["from_cache"])
	assert.Contains(t, []any{"unavailable", "skipped"}, c.Get("/health").Body["cache"], "skipped once three calls failed")
	assert.Equal(t, false, c.Get("/cache-stats").Body["available"])
	assert.Nil(t, c.Get("/cache-stats").Body["hits"])

	rs.Start(t)
	testenv.WaitFor(t, 5*time.Second, "the cache to be used again", func() bool {
		return c.Read("k").Body["from_cache"] == true
	})
	assert.Equal(t, "v2", c.Read("k").Body["value"])
	assert.Equal(t, "healthy", c.Get("/health").Body["cache"])
}
