package l5_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l5"
)

// start runs an L5 on dbURL and redisURL in this process, with its own L1, and waits
// until it receives other instances' invalidations.
func start(t *testing.T, dbURL, redisURL string) layertest.Target {
	t.Helper()
	tg := startUnsubscribed(t, dbURL, redisURL)
	c := layertest.NewClient(t, tg)
	testenv.WaitFor(t, 5*time.Second, "the invalidation subscription", func() bool {
		return c.Get("/stats").Body["l1_invalidation_subscribed"] == true
	})
	return tg
}

func startUnsubscribed(t *testing.T, dbURL, redisURL string) layertest.Target {
	t.Helper()
	srv := layertest.Serve(t, l5.New, func(c *l5.Config) { c.DatabaseURL, c.RedisURL = dbURL, redisURL })
	return layertest.Target{
		URL: srv.URL, Layer: l5.Layer, WriteMessage: "Data written successfully",
		Rows: func(t testing.TB) int { return layertest.CountRows(t, dbURL, "records") },
	}
}

func newClient(t *testing.T) *layertest.Client {
	return layertest.NewClient(t, start(t, testenv.PostgresURL(t), testenv.RedisURL(t)))
}

func TestContract(t *testing.T) {
	layertest.Run(t, start(t, testenv.PostgresURL(t), testenv.RedisURL(t)))
}

// test_health_check.
func TestHealth(t *testing.T) {
	r := newClient(t).Get("/health")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, map[string]any{"status": "healthy", "layer": "5-multi-tier-cache", "database": "healthy",
		"l1_cache": "healthy", "l2_cache": "healthy"}, r.Body)
}

// test_write_data.
func TestWriteData(t *testing.T) {
	r := newClient(t).MustWrite("test_key", "test_value")
	assert.Equal(t, map[string]any{"success": true, "key": "test_key", "message": "Data written successfully"}, r.Body)
}

// test_read_from_database_l3, test_read_from_l2_cache, test_read_from_l1_cache,
// test_cache_promotion_l2_to_l1, test_timestamps_in_response. The original could only
// answer "L3" then "L2" (its L1 never stored anything); here the first read is L3 and
// the next ones L1, and a second instance (its own L1, same Redis) reads L2, then L1.
func TestReadLevels(t *testing.T) {
	dbURL, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	c := layertest.NewClient(t, start(t, dbURL, redisURL))
	other := layertest.NewClient(t, start(t, dbURL, redisURL))
	c.MustWrite("promotion_test", "v")
	awaitInvalidations(t, other, 1)

	first := c.Read("promotion_test")
	require.Equal(t, http.StatusOK, first.Status)
	assert.Equal(t, map[string]any{"success": true, "key": "promotion_test", "value": "v", "message": nil,
		"created_at": first.Body["created_at"], "updated_at": first.Body["updated_at"], "cache_level": "L3"}, first.Body)
	assert.NotNil(t, first.Body["created_at"])
	assert.NotNil(t, first.Body["updated_at"])
	for range 2 {
		r := c.Read("promotion_test")
		assert.Equal(t, "L1", r.Body["cache_level"])
		assert.Equal(t, first.Body, withLevel(r.Body, "L3"), "L1 serves the same row, timestamps included")
	}

	r := other.Read("promotion_test")
	assert.Equal(t, "L2", r.Body["cache_level"], "promoted from Redis")
	assert.Equal(t, first.Body, withLevel(r.Body, "L3"))
	assert.Equal(t, "L1", other.Read("promotion_test").Body["cache_level"])
}

// awaitInvalidations waits until c's instance has received n invalidations from other
// instances, so that a late one does not drop what c fills next.
func awaitInvalidations(t *testing.T, c *layertest.Client, n float64) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "the invalidations to arrive", func() bool {
		return c.Get("/stats").Body["l1_invalidations_received"] == n
	})
}

func withLevel(body map[string]any, level string) map[string]any {
	out := map[string]any{}
	for k, v := range body {
		out[k] = v
	}
	out["cache_level"] = level
	return out
}

// test_read_nonexistent_key.
func TestReadNonexistentKey(t *testing.T) {
	c := newClient(t)
	for range 2 { // misses are not cached
		r := c.Read("nonexistent_key")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{"success": false, "key": "nonexistent_key", "value": nil, "created_at": nil,
			"updated_at": nil, "message": "Key not found", "cache_level": "L3"}, r.Body)
	}
}

// test_update_existing_key, test_cache_invalidation_on_write: a rewrite after cached
// reads is read back from the database with the new value.
func TestUpdateInvalidatesL1AndL2(t *testing.T) {
	c := newClient(t)
	c.MustWrite("test_key", "original")
	c.Read("test_key")
	require.Equal(t, "L1", c.Read("test_key").Body["cache_level"])

	c.MustWrite("test_key", "updated")
	r := c.Read("test_key")
	assert.Equal(t, "updated", r.Body["value"])
	assert.Equal(t, "L3", r.Body["cache_level"])
	assert.Equal(t, "L1", c.Read("test_key").Body["cache_level"])
}

// The 15 fields of the original's /stats.
var statsFields = []string{"l1_cache_available", "l1_cache_size", "l1_cache_max_size", "l1_cache_hits",
	"l1_cache_misses", "l1_hit_rate", "l2_cache_available", "l2_cache_keys", "l2_cache_hits", "l2_cache_misses",
	"l2_hit_rate", "db_pool_size", "total_hits", "total_misses", "overall_hit_rate"}

// test_stats_endpoint: /stats (and /cache-stats, the same document) has all 15 fields.
func TestStatsEndpoint(t *testing.T) {
	c := newClient(t)
	r := c.Get("/stats")
	require.Equal(t, http.StatusOK, r.Status)
	for _, f := range statsFields {
		assert.Contains(t, r.Body, f)
	}
	assert.Equal(t, true, r.Body["l1_cache_available"])
	assert.Equal(t, 100.0, r.Body["l1_cache_max_size"])
	assert.Equal(t, true, r.Body["l2_cache_available"])
	assert.Greater(t, r.Body["db_pool_size"], 0.0)
	alias := c.Get("/cache-stats")
	require.Equal(t, http.StatusOK, alias.Status)
	assert.Equal(t, r.Body["l1_cache_max_size"], alias.Body["l1_cache_max_size"])
}

// test_stats_after_operations and test_cache_stats_tracking, with exact numbers: three
// keys read twice are three L3 reads (an L1 and an L2 miss each) and three L1 hits.
func TestStatsAfterOperations(t *testing.T) {
	c := newClient(t)
	for i := range 3 {
		c.MustWrite(fmt.Sprint("stats_key_", i), "v")
	}
	for i := range 3 {
		assert.Equal(t, "L3", c.Read(fmt.Sprint("stats_key_", i)).Body["cache_level"])
		assert.Equal(t, "L1", c.Read(fmt.Sprint("stats_key_", i)).Body["cache_level"])
	}
	r := c.Get("/stats")
	require.Equal(t, http.StatusOK, r.Status)
	want := map[string]any{
		"l1_cache_size": 3.0, "l1_cache_hits": 3.0, "l1_cache_misses": 3.0, "l1_hit_rate": 50.0,
		"l2_cache_keys": 3.0, "l2_cache_hits": 0.0, "l2_cache_misses": 3.0, "l2_hit_rate": 0.0,
		"total_hits": 3.0, "total_misses": 6.0, "overall_hit_rate": 50.0, "db_reads": 3.0,
	}
	for k, v := range want {
		assert.Equal(t, v, r.Body[k], k)
	}
}

// test_clear_cache_endpoint, and the fix of the original's FLUSHDB: only this layer's
// keys go; the next read comes from the database.
func TestClearCache(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	c := layertest.NewClient(t, start(t, testenv.PostgresURL(t), redisURL))
	rdb := redisClient(t, redisURL)
	ctx := context.Background()
	require.NoError(t, rdb.Set(ctx, "someone-else:key", "kept", 0).Err())
	c.MustWrite("test_key", "v")
	c.Read("test_key")
	require.Equal(t, "L1", c.Read("test_key").Body["cache_level"])

	r := c.Do(http.MethodPost, "/clear-cache", nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	assert.Equal(t, map[string]any{"success": true, "message": "All caches cleared"}, r.Body)
	assert.Equal(t, "kept", rdb.Get(ctx, "someone-else:key").Val(), "not FLUSHDB")
	assert.Equal(t, int64(0), rdb.Exists(ctx, cache.CacheKey("test_key")).Val())
	st := c.Get("/stats").Body
	assert.Equal(t, 0.0, st["l1_cache_size"])
	assert.Equal(t, 0.0, st["l2_cache_keys"])

	r = c.Read("test_key")
	assert.Equal(t, "v", r.Body["value"])
	assert.Equal(t, "L3", r.Body["cache_level"])
	assert.Equal(t, http.StatusMethodNotAllowed, c.Get("/clear-cache").Status)
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// test_concurrent_reads: 20 reads on 10 goroutines all succeed. And the stampede: 50
// concurrent first reads of one key make one database read.
func TestConcurrentReads(t *testing.T) {
	tg := start(t, testenv.PostgresURL(t), testenv.RedisURL(t))
	c := layertest.NewClient(t, tg)
	c.MustWrite("test_key", "v")
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			cc := layertest.NewClient(t, tg)
			for range 2 {
				r := cc.Read("test_key")
				assert.Equal(t, http.StatusOK, r.Status)
				assert.Equal(t, "v", r.Body["value"])
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1.0, c.Get("/stats").Body["db_reads"], "20 concurrent reads, one database read")

	c.MustWrite("stampede", "v")
	before := c.Get("/stats").Body["db_reads"].(float64)
	for range 50 {
		wg.Go(func() {
			r := layertest.NewClient(t, tg).Read("stampede")
			assert.Equal(t, "v", r.Body["value"])
		})
	}
	wg.Wait()
	assert.Equal(t, before+1, c.Get("/stats").Body["db_reads"], "50 concurrent misses, one database read")
}

// test_l1_cache_size_limit (API): 120 keys written and read; L1 holds at most 100.
func TestL1SizeLimit(t *testing.T) {
	c := newClient(t)
	for i := range 120 {
		k := fmt.Sprint("size_key_", i)
		c.MustWrite(k, "v")
		c.Read(k)
	}
	st := c.Get("/stats").Body
	assert.LessOrEqual(t, st["l1_cache_size"], st["l1_cache_max_size"])
	assert.Greater(t, st["l1_cache_size"], 0.0)
}

// test_special_characters_in_value, test_long_value: values survive every level.
func TestValuesThroughEveryLevel(t *testing.T) {
	dbURL, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	c := layertest.NewClient(t, start(t, dbURL, redisURL))
	other := layertest.NewClient(t, start(t, dbURL, redisURL))
	values := map[string]string{
		"special": "Special chars: !@#$%^&*()_+-=[]{}|;':\",./<>? 测试数据 🚀",
		"long":    strings.Repeat("x", 10_000),
	}
	n := 0.0
	for k, v := range values {
		c.MustWrite(k, v)
		n++
		awaitInvalidations(t, other, n)
		for _, level := range []string{"L3", "L1"} {
			r := c.Read(k)
			assert.Equal(t, level, r.Body["cache_level"])
			assert.Equal(t, v, r.Body["value"], k)
		}
		r := other.Read(k)
		assert.Equal(t, "L2", r.Body["cache_level"])
		assert.Equal(t, v, r.Body["value"], k)
	}
}

// test_cache_layer_priority: a record found in Redis is served from L2 before the
// database is asked, then from L1; test_l2_ttl_expiration: L2 entries carry the TTL.
func TestCacheLayerPriority(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	c := layertest.NewClient(t, start(t, testenv.PostgresURL(t), redisURL))
	rdb := redisClient(t, redisURL)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	data, err := json.Marshal(record.Record{Key: "priority_key", Value: "from_l2", CreatedAt: now, UpdatedAt: now})
	require.NoError(t, err)
	require.NoError(t, rdb.Set(ctx, cache.CacheKey("priority_key"), data, time.Minute).Err())

	r := c.Read("priority_key")
	assert.Equal(t, "from_l2", r.Body["value"])
	assert.Equal(t, "L2", r.Body["cache_level"])
	assert.Equal(t, "L1", c.Read("priority_key").Body["cache_level"])

	c.MustWrite("ttl_key", "v")
	c.Read("ttl_key")
	ttl := rdb.TTL(ctx, cache.CacheKey("ttl_key")).Val()
	assert.Greater(t, ttl, 290*time.Second, "L2_CACHE_TTL is 300 s")
	assert.LessOrEqual(t, ttl, 300*time.Second)
}

// test_l1_ttl_expiration, test_l2_ttl_expiration: the original's settings and defaults
// (the expiry itself is tested in internal/cache).
func TestConfigDefaults(t *testing.T) {
	for _, name := range []string{"L1_CACHE_SIZE", "L1_CACHE_TTL", "L2_CACHE_TTL", "PORT"} {
		t.Setenv(name, "")
	}
	var cfg l5.Config
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, 100, cfg.L1CacheSize)
	assert.Equal(t, 60*time.Second, cfg.L1CacheTTL)
	assert.Equal(t, 300*time.Second, cfg.L2CacheTTL)
	assert.Equal(t, time.Second, cfg.L1DisconnectedTTL)
	assert.Equal(t, "postgresql://dbuser:dbpassword@localhost:5445/appdb", cfg.DatabaseURL)
	assert.Equal(t, "redis://localhost:6382", cfg.RedisURL)

	t.Setenv("L1_CACHE_TTL", "5")
	t.Setenv("L1_CACHE_SIZE", "7")
	require.NoError(t, config.Load(&cfg))
	assert.Equal(t, 5*time.Second, cfg.L1CacheTTL)
	assert.Equal(t, 7, cfg.L1CacheSize)
}

func TestDatabaseOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	tg := start(t, pg.CreateDatabase(t), testenv.RedisURL(t))
	layertest.DatabaseOutage(t, tg, func() { pg.Stop(t) }, func() { pg.Start(t) })
}

// Redis stopped: reads are served from L1, then PostgreSQL, fast; writes succeed;
// /clear-cache clears L1 and says Redis could not be cleared. Redis back: L2 and the
// invalidation subscription are used again by the same process.
func TestRedisOutage(t *testing.T) {
	rs := testenv.StartRedis(t)
	c := layertest.NewClient(t, start(t, testenv.PostgresURL(t), rs.URL(0)))
	c.MustWrite("hot", "v1")
	c.Read("hot")
	require.Equal(t, "L1", c.Read("hot").Body["cache_level"])

	rs.Stop(t)
	began := time.Now()
	r := c.Read("hot")
	assert.Equal(t, "v1", r.Body["value"])
	c.MustWrite("hot", "v2")
	r = c.Read("hot")
	assert.Less(t, time.Since(began), layertest.FastFail)
	assert.Equal(t, "v2", r.Body["value"])
	testenv.WaitFor(t, 5*time.Second, "reads to be served from L1", func() bool {
		r := c.Read("hot")
		return r.Body["value"] == "v2" && r.Body["cache_level"] == "L1"
	})
	missing := c.Read("never-written")
	assert.Equal(t, http.StatusOK, missing.Status)
	assert.Equal(t, "L3", missing.Body["cache_level"])
	assert.Equal(t, "skipped", c.Get("/health").Body["l2_cache"], "many calls failed: Redis is skipped")
	st := c.Get("/stats").Body
	assert.Equal(t, false, st["l2_cache_available"])
	assert.Equal(t, false, st["l1_invalidation_subscribed"])
	layertest.AssertFastUnavailable(t, "clear-cache", func() layertest.Response { return c.Do(http.MethodPost, "/clear-cache", nil) })
	assert.Equal(t, 0.0, c.Get("/stats").Body["l1_cache_size"], "L1 was cleared anyway")

	rs.Start(t)
	testenv.WaitFor(t, 10*time.Second, "L2 and the subscription to be back", func() bool {
		st := c.Get("/stats").Body
		return st["l2_cache_available"] == true && st["l1_invalidation_subscribed"] == true
	})
	assert.Equal(t, "healthy", c.Get("/health").Body["l2_cache"])
	r = c.Read("hot")
	assert.Equal(t, "v2", r.Body["value"])
	assert.Equal(t, "L3", r.Body["cache_level"], "L1 was cleared when the subscription came back")
	assert.Equal(t, 1.0, c.Get("/stats").Body["l2_cache_keys"], "and L2 is filled again")
}

// BenchmarkHotRead is a read of one key answered from L1, through the whole handler
// (router, middleware, JSON), without the network: the per-request cost of L5 itself.
func BenchmarkHotRead(b *testing.B) {
	var cfg l5.Config
	require.NoError(b, config.LoadFrom(&cfg, config.Defaults))
	cfg.DatabaseURL, cfg.RedisURL = testenv.PostgresURL(b), testenv.RedisURL(b)
	svc, err := l5.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	b.Cleanup(svc.Close)
	h := svc.Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/write", strings.NewReader(`{"key":"hot","value":"v"}`)))
	require.Equal(b, http.StatusOK, w.Code)
	req := httptest.NewRequest(http.MethodGet, "/read/hot", nil)
	h.ServeHTTP(httptest.NewRecorder(), req)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"cache_level":"L1"`) {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}

// Redis down at start-up (the original disabled L2 for the process's lifetime): L5
// starts, serves from L1 and PostgreSQL, and uses Redis as soon as it is up.
func TestStartsWithoutRedis(t *testing.T) {
	rs := testenv.StartRedis(t)
	rs.Stop(t)
	c := layertest.NewClient(t, startUnsubscribed(t, testenv.PostgresURL(t), rs.URL(0)))
	assert.Equal(t, "unavailable", c.Get("/health").Body["l2_cache"])
	c.MustWrite("k", "v")
	assert.Equal(t, "L3", c.Read("k").Body["cache_level"])
	testenv.WaitFor(t, 5*time.Second, "reads to be served from L1", func() bool {
		return c.Read("k").Body["cache_level"] == "L1"
	})

	rs.Start(t)
	testenv.WaitFor(t, 10*time.Second, "Redis to be used", func() bool {
		st := c.Get("/stats").Body
		return st["l2_cache_available"] == true && st["l1_invalidation_subscribed"] == true
	})
	c.MustWrite("k", "v2")
	assert.Equal(t, "v2", c.Read("k").Body["value"])
	assert.Equal(t, 1.0, c.Get("/stats").Body["l2_cache_keys"], "L2 is filled")
}
