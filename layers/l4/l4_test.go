package l4_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/shard"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l4"
)

// shardURLs makes n shard databases on the shared test server.
func shardURLs(t *testing.T, n int) []string {
	t.Helper()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = testenv.PostgresURL(t)
	}
	return urls
}

// start runs an L4 over urls and Redis, with the configuration tweaked by opts.
func start(t *testing.T, urls []string, redisURL string, opts ...func(*l4.Config)) (layertest.Target, *l4.Service) {
	t.Helper()
	srv := layertest.Serve(t, l4.New, func(cfg *l4.Config) {
		cfg.ShardURLs, cfg.NumShards, cfg.RedisURL = urls, 0, redisURL
		cfg.Strategy, cfg.ReshardFrom = shard.Modulo, 0
		for _, o := range opts {
			o(cfg)
		}
	})
	return layertest.Target{
		URL: srv.URL, Layer: l4.Layer,
		Rows: func(t testing.TB) int { return totalRows(t, urls) },
	}, srv.Service
}

func totalRows(t testing.TB, urls []string) int {
	n := 0
	for _, u := range urls {
		n += layertest.CountRows(t, u, "records")
	}
	return n
}

// keyOn returns the first key prefix0, prefix1, … that svc places on shard.
func keyOn(svc *l4.Service, shard int, prefix string) string {
	for i := 0; ; i++ {
		if k := fmt.Sprint(prefix, i); svc.Owner(k) == shard {
			return k
		}
	}
}

func TestContract(t *testing.T) {
	tg, _ := start(t, shardURLs(t, 3), testenv.RedisURL(t))
	tg.WriteMessage = "" // names its shard: checked below
	layertest.Run(t, tg)
}

// TestOriginal holds the Go counterparts of the original's 24 L4 tests, by their names,
// on one service over three shards. Where the original's expectation was a bug, the
// corrected behaviour is asserted and the comment says so.
func TestOriginal(t *testing.T) {
	urls := shardURLs(t, 3)
	redisURL := testenv.RedisURL(t)
	tg, svc := start(t, urls, redisURL)
	// The original's per-test fixture: every shard and the cache emptied.
	reset := func(t *testing.T) {
		for _, u := range urls {
			testenv.Exec(t, u, "TRUNCATE records")
		}
		opt, err := redis.ParseURL(redisURL)
		require.NoError(t, err)
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		require.NoError(t, rdb.FlushDB(context.Background()).Err())
	}
	run := func(name string, f func(t *testing.T, c *layertest.Client)) {
		t.Run(name, func(t *testing.T) {
			reset(t)
			f(t, layertest.NewClient(t, tg))
		})
	}
	stats := func(t *testing.T, c *layertest.Client) map[string]any {
		r := c.Get("/stats")
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		return r.Body
	}
	distribution := func(t *testing.T, c *layertest.Client) map[string]any {
		d, ok := stats(t, c)["shard_distribution"].(map[string]any)
		require.True(t, ok)
		return d
	}

	// tests/test_api.py
	run("test_health_check", func(t *testing.T, c *layertest.Client) {
		r := c.Get("/health")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{
			"status": "healthy", "layer": "4-db-sharding", "cache": "healthy",
			"shards": map[string]any{"shard_0": "healthy", "shard_1": "healthy", "shard_2": "healthy"},
		}, r.Body)
	})
	run("test_write_to_shard", func(t *testing.T, c *layertest.Client) {
		r := c.MustWrite("test_key", "test_value")
		assert.Equal(t, map[string]any{"success": true, "key": "test_key", "shard_id": 2.0,
			"message": "Data written successfully to shard 2"}, r.Body, "test_key → shard 2, as in the original")
	})
	run("test_read_from_shard_cache_miss", func(t *testing.T, c *layertest.Client) {
		w := c.MustWrite("test_key", "test_value")
		r := c.Read("test_key")
		assert.Equal(t, "test_value", r.Body["value"])
		assert.Equal(t, false, r.Body["from_cache"])
		assert.Equal(t, w.Body["shard_id"], r.Body["shard_id"])
	})
	run("test_read_from_cache_hit", func(t *testing.T, c *layertest.Client) {
		c.MustWrite("test_key", "test_value")
		c.Read("test_key")
		r := c.Read("test_key")
		assert.Equal(t, true, r.Body["from_cache"])
		assert.Equal(t, "test_value", r.Body["value"])
		assert.Equal(t, 2.0, r.Body["shard_id"], "the shard is computed, not cached")
	})
	run("test_read_nonexistent_key", func(t *testing.T, c *layertest.Client) {
		r := c.Read("nonexistent_key_12345")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{"success": false, "key": "nonexistent_key_12345", "value": nil, "created_at": nil,
			"updated_at": nil, "message": "Key not found", "from_cache": false,
			"shard_id": float64(svc.Owner("nonexistent_key_12345"))}, r.Body)
	})
	run("test_update_existing_key", func(t *testing.T, c *layertest.Client) {
		first := c.MustWrite("update_test", "original")
		second := c.MustWrite("update_test", "updated")
		assert.Equal(t, first.Body["shard_id"], second.Body["shard_id"])
		assert.Equal(t, 0.0, second.Body["shard_id"], "update_test → shard 0")
		r := c.Read("update_test")
		assert.Equal(t, "updated", r.Body["value"])
		assert.Equal(t, 0.0, r.Body["shard_id"])
	})
	run("test_cache_invalidation_on_write", func(t *testing.T, c *layertest.Client) {
		c.MustWrite("cache_test", "v1")
		c.Read("cache_test")
		require.Equal(t, true, c.Read("cache_test").Body["from_cache"])
		c.MustWrite("cache_test", "v2")
		r := c.Read("cache_test")
		assert.Equal(t, "v2", r.Body["value"])
		assert.Equal(t, false, r.Body["from_cache"])
	})
	run("test_multiple_writes_to_different_shards", func(t *testing.T, c *layertest.Client) {
		used := map[any]bool{}
		ids := map[string]any{}
		for i := range 20 {
			k := fmt.Sprint("multi_key_", i)
			ids[k] = c.MustWrite(k, fmt.Sprint("value_", i)).Body["shard_id"]
			used[ids[k]] = true
		}
		assert.Greater(t, len(used), 1)
		for k, id := range ids {
			r := c.Read(k)
			assert.Equal(t, id, r.Body["shard_id"], k)
			assert.Equal(t, true, r.Body["success"], k)
		}
	})
	run("test_stats_endpoint", func(t *testing.T, c *layertest.Client) {
		s := stats(t, c)
		assert.Equal(t, true, s["cache_available"])
		assert.Equal(t, 3.0, s["num_shards"])
		assert.Equal(t, map[string]any{"shard_0": 2.0, "shard_1": 2.0, "shard_2": 2.0}, s["shard_pool_sizes"])
		assert.Equal(t, map[string]any{"shard_0": 0.0, "shard_1": 0.0, "shard_2": 0.0}, s["shard_distribution"])
		assert.Equal(t, "modulo", s["strategy"])
		assert.Nil(t, s["resharding_from"])
		assert.Equal(t, c.Get("/cache-stats").Body["num_shards"], s["num_shards"], "/cache-stats is the same document")
	})
	run("test_shard_distribution_in_stats", func(t *testing.T, c *layertest.Client) {
		for i := range 10 {
			c.MustWrite(fmt.Sprint("dist_test_", i), "v")
		}
		d := distribution(t, c)
		assert.Equal(t, 10.0, d["shard_0"].(float64)+d["shard_1"].(float64)+d["shard_2"].(float64))
	})
	run("test_cache_stats_after_operations", func(t *testing.T, c *layertest.Client) {
		for i := range 5 {
			c.MustWrite(fmt.Sprint("stats_test_", i), "v")
		}
		for range 2 {
			for i := range 5 {
				c.Read(fmt.Sprint("stats_test_", i))
			}
		}
		s := stats(t, c)
		assert.GreaterOrEqual(t, s["cache_hits"], 5.0)
		assert.GreaterOrEqual(t, s["cache_misses"], 5.0)
		assert.GreaterOrEqual(t, s["cache_keys"], 5.0)
		assert.Greater(t, s["cache_hit_rate"], 0.0)
	})
	run("test_concurrent_reads", func(t *testing.T, c *layertest.Client) {
		c.MustWrite("concurrent_test", "v")
		var wg sync.WaitGroup
		statuses := make(chan int, 20)
		for range 10 {
			wg.Go(func() {
				cc := layertest.NewClient(t, tg)
				for range 2 {
					statuses <- cc.Read("concurrent_test").Status
				}
			})
		}
		wg.Wait()
		close(statuses)
		for s := range statuses {
			assert.Equal(t, http.StatusOK, s)
		}
	})
	run("test_timestamps_in_response", func(t *testing.T, c *layertest.Client) {
		c.MustWrite("timestamp_test", "v")
		r := c.Read("timestamp_test")
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`, r.Body["created_at"])
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`, r.Body["updated_at"])
	})
	run("test_special_characters_in_value", func(t *testing.T, c *layertest.Client) {
		v := "Special chars: !@#$%^&*()_+-=[]{}|;':\",./<>? 测试数据 🚀"
		c.MustWrite("special_test", v)
		assert.Equal(t, v, c.Read("special_test").Body["value"])
	})
	run("test_long_value", func(t *testing.T, c *layertest.Client) {
		v := strings.Repeat("x", 10_000)
		c.MustWrite("long_test", v)
		assert.Equal(t, v, c.Read("long_test").Body["value"])
	})

	// tests/test_sharding.py
	run("test_shard_id_consistency", func(t *testing.T, c *layertest.Client) {
		a, b := svc.Owner("consistency_test"), svc.Owner("consistency_test")
		assert.Equal(t, a, b)
		assert.True(t, a >= 0 && a < 3)
		assert.Equal(t, float64(a), c.Read("consistency_test").Body["shard_id"])
	})
	run("test_shard_id_distribution", func(t *testing.T, c *layertest.Client) {
		counts := map[any]int{}
		for i := range 100 {
			counts[c.MustWrite(fmt.Sprint("dist_key_", i), "v").Body["shard_id"]]++
		}
		for id, n := range counts {
			assert.True(t, n > 10 && n < 60, "shard %v has %d keys", id, n)
		}
		assert.Equal(t, map[any]int{0.0: 49, 1.0: 29, 2.0: 22}, counts, "the original's exact counts")
	})
	run("test_shard_id_deterministic", func(t *testing.T, c *layertest.Client) {
		keys := []string{"user:123", "product:456", "order:789", "session:abc", "cart:def"}
		want := []float64{2, 0, 1, 2, 2}
		for range 10 {
			for i, k := range keys {
				assert.Equal(t, want[i], c.Read(k).Body["shard_id"], k)
			}
		}
	})
	run("test_write_to_correct_shard", func(t *testing.T, c *layertest.Client) {
		id := int(c.MustWrite("correct_shard_test", "v").Body["shard_id"].(float64))
		for i, u := range urls {
			_, ok := layertest.StoredValue(t, u, "correct_shard_test")
			assert.Equal(t, i == id, ok, "shard %d", i)
		}
	})
	run("test_shard_isolation", func(t *testing.T, c *layertest.Client) {
		for i, u := range urls {
			testenv.Exec(t, u, "INSERT INTO records (key, value) VALUES ($1, $2)", fmt.Sprint("isolation_", i), "v")
		}
		for i := range urls {
			for j, u := range urls {
				_, ok := layertest.StoredValue(t, u, fmt.Sprint("isolation_", i))
				assert.Equal(t, i == j, ok, "isolation_%d on shard %d", i, j)
			}
		}
	})
	run("test_get_shard_stats", func(t *testing.T, c *layertest.Client) {
		for i := range 15 {
			k := fmt.Sprint("stats_key_", i)
			testenv.Exec(t, urls[svc.Owner(k)], "INSERT INTO records (key, value) VALUES ($1, $2)", k, "v")
		}
		d := distribution(t, c)
		assert.Len(t, d, 3)
		assert.Equal(t, 15.0, d["shard_0"].(float64)+d["shard_1"].(float64)+d["shard_2"].(float64))
	})
	run("test_multiple_keys_same_shard", func(t *testing.T, c *layertest.Client) {
		var keys []string
		for i := 0; len(keys) < 5 && i < 100; i++ {
			if k := fmt.Sprint("same_shard_", i); svc.Owner(k) == 0 {
				keys = append(keys, k)
			}
		}
		require.Len(t, keys, 5)
		for _, k := range keys {
			c.MustWrite(k, "v")
		}
		for _, k := range keys {
			_, ok := layertest.StoredValue(t, urls[0], k)
			assert.True(t, ok, k)
		}
	})
	run("test_shard_range", func(t *testing.T, c *layertest.Client) {
		for _, k := range []string{"", "a", strings.Repeat("x", 1400), "!@#$%^&*()", "ключ-测试-🔑", "1234567890"} {
			o := svc.Owner(k)
			assert.True(t, o >= 0 && o < 3, "%q → %d", k, o)
		}
		// The API stores keys of 1 to 255 characters (the original failed with a 500 on
		// longer ones and could not read the empty key back): those get a 422 here.
		assert.Equal(t, http.StatusUnprocessableEntity, c.Write("", "v").Status)
		assert.Equal(t, http.StatusUnprocessableEntity, c.Write(strings.Repeat("x", 1400), "v").Status)
		for _, k := range []string{"a", "!@#$%^&*()", "ключ-测试-🔑", "1234567890"} {
			assert.Equal(t, float64(svc.Owner(k)), c.MustWrite(k, "v").Body["shard_id"], k)
		}
	})
	run("test_hash_based_distribution_balance", func(t *testing.T, c *layertest.Client) {
		var wg sync.WaitGroup
		for w := range 10 {
			wg.Go(func() {
				cc := layertest.NewClient(t, tg)
				for i := w; i < 300; i += 10 {
					cc.MustWrite(fmt.Sprint("balance_key_", i), "v")
				}
			})
		}
		wg.Wait()
		d := distribution(t, c)
		for name, n := range d {
			assert.True(t, n.(float64) >= 60 && n.(float64) <= 140, "%s: %v", name, n)
		}
		assert.Equal(t, map[string]any{"shard_0": 92.0, "shard_1": 107.0, "shard_2": 101.0}, d, "the original's exact counts")
		s := stats(t, c)["shards"].(map[string]any)
		assert.Equal(t, 30.67, s["shard_0"].(map[string]any)["share_percent"])
		assert.Equal(t, true, s["shard_1"].(map[string]any)["healthy"])
	})
}

// Configuration: SHARD_URLS, or the original's SHARD_n_URL with NUM_SHARDS.
func TestShardList(t *testing.T) {
	load := func(t *testing.T, env map[string]string) ([]string, error) {
		for _, name := range []string{"SHARD_URLS", "NUM_SHARDS", "SHARD_0_URL", "SHARD_1_URL", "SHARD_2_URL", "SHARD_3_URL"} {
			t.Setenv(name, env[name])
		}
		var cfg l4.Config
		require.NoError(t, config.Load(&cfg))
		return cfg.ShardList()
	}
	urls, err := load(t, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"postgresql://dbuser:dbpassword@localhost:5440/appdb_shard_0",
		"postgresql://dbuser:dbpassword@localhost:5441/appdb_shard_1",
		"postgresql://dbuser:dbpassword@localhost:5442/appdb_shard_2",
	}, urls, "the original's three shards by default")

	urls, err = load(t, map[string]string{"NUM_SHARDS": "2", "SHARD_1_URL": "postgres://h1/d"})
	require.NoError(t, err)
	assert.Equal(t, []string{"postgresql://dbuser:dbpassword@localhost:5440/appdb_shard_0", "postgres://h1/d"}, urls)

	urls, err = load(t, map[string]string{"NUM_SHARDS": "4", "SHARD_3_URL": "postgres://h3/d"})
	require.NoError(t, err)
	assert.Equal(t, "postgres://h3/d", urls[3])
	_, err = load(t, map[string]string{"NUM_SHARDS": "4"})
	assert.ErrorContains(t, err, "SHARD_3_URL")

	urls, err = load(t, map[string]string{"SHARD_URLS": "postgres://a/d, postgres://b/d,postgres://c/d,postgres://d/d,postgres://e/d"})
	require.NoError(t, err)
	assert.Len(t, urls, 5)
	_, err = load(t, map[string]string{"SHARD_URLS": "postgres://a/d,postgres://b/d", "NUM_SHARDS": "3"})
	assert.ErrorContains(t, err, "NUM_SHARDS=3 but SHARD_URLS lists 2")
	_, err = load(t, map[string]string{"NUM_SHARDS": "-1"})
	assert.Error(t, err)
}

// Any number of shards, any strategy: every record is on the shard its strategy names,
// and nowhere else.
func TestStrategiesAndShardCounts(t *testing.T) {
	urls := shardURLs(t, 5)
	redisURL := testenv.RedisURL(t)
	for _, strategy := range shard.Strategies() {
		for _, n := range []int{1, 5} {
			t.Run(fmt.Sprintf("%s-%d", strategy, n), func(t *testing.T) {
				tg, svc := start(t, urls[:n], redisURL, func(c *l4.Config) { c.Strategy = strategy })
				c := layertest.NewClient(t, tg)
				prefix := fmt.Sprintf("%s-%d-", strategy, n)
				for i := range 30 {
					k := fmt.Sprint(prefix, i)
					w := c.MustWrite(k, "v")
					assert.Equal(t, float64(svc.Owner(k)), w.Body["shard_id"])
					assert.Equal(t, fmt.Sprintf("Data written successfully to shard %d", svc.Owner(k)), w.Body["message"])
					assert.Equal(t, "v", c.Read(k).Body["value"])
				}
				for s, u := range urls[:n] {
					rows := layertest.StoredValues(t, u)
					for i := range 30 {
						k := fmt.Sprint(prefix, i)
						_, ok := rows[k]
						assert.Equal(t, s == svc.Owner(k), ok, "%q on shard %d", k, s)
					}
				}
				s := c.Get("/stats").Body
				assert.Equal(t, float64(n), s["num_shards"])
				assert.Equal(t, strategy, s["strategy"])
				assert.Len(t, s["shards"], n)
			})
		}
	}
}

// Stop one shard: its keys fail fast with 503, every other key keeps working, /health
// says degraded (200) and /stats shows the shard down. Start it again: the same service
// serves its keys again, with what they held before.
func TestShardDown(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	urls := shardURLs(t, 3)
	urls[1] = pg.CreateDatabase(t) // shard 1 on a cluster of its own, which the test stops
	tg, svc := start(t, urls, testenv.RedisURL(t))
	c := layertest.NewClient(t, tg)
	on := [3]string{keyOn(svc, 0, "k"), keyOn(svc, 1, "k"), keyOn(svc, 2, "k")}
	for _, k := range on {
		c.MustWrite(k, "before")
	}
	cached := keyOn(svc, 1, "cached-")
	c.MustWrite(cached, "cached")
	c.Read(cached) // fills the cache

	pg.Stop(t)
	layertest.AssertFastUnavailable(t, "write to shard 1", func() layertest.Response { return c.Write(on[1], "during") })
	layertest.AssertFastUnavailable(t, "read from shard 1", func() layertest.Response { return c.Read(on[1]) })
	layertest.AssertFastUnavailable(t, "read of a new key of shard 1", func() layertest.Response {
		return c.Read(keyOn(svc, 1, "never-"))
	})
	assert.Equal(t, "Shard 1 unavailable", c.Write(on[1], "during").Body["detail"])
	for _, k := range []string{on[0], on[2], keyOn(svc, 0, "new-"), keyOn(svc, 2, "new-")} {
		c.MustWrite(k, "during")
		assert.Equal(t, "during", c.Read(k).Body["value"], k)
	}
	r := c.Read(cached)
	assert.Equal(t, "cached", r.Body["value"], "a cached record of the stopped shard is still served")
	assert.Equal(t, true, r.Body["from_cache"])

	began := time.Now()
	h := c.Get("/health")
	assert.Less(t, time.Since(began), layertest.FastFail, "/health with a shard down")
	require.Equal(t, http.StatusOK, h.Status, "a partly working service is up, degraded")
	assert.Equal(t, "degraded", h.Body["status"])
	assert.Equal(t, map[string]any{"shard_0": "healthy", "shard_1": "unhealthy", "shard_2": "healthy"}, h.Body["shards"])
	s := c.Get("/stats")
	require.Equal(t, http.StatusOK, s.Status)
	sh := s.Body["shards"].(map[string]any)["shard_1"].(map[string]any)
	assert.Equal(t, false, sh["healthy"])
	assert.Nil(t, sh["records"])
	assert.Equal(t, 0.0, s.Body["shard_distribution"].(map[string]any)["shard_1"], "a failing shard counts 0, as in the original")

	pg.Start(t)
	testenv.WaitFor(t, 15*time.Second, "shard 1 to serve again", func() bool {
		return c.Get("/health").Body["status"] == "healthy"
	})
	assert.Equal(t, "before", c.Read(on[1]).Body["value"], "what shard 1 held before the outage")
	c.MustWrite(on[1], "after")
	assert.Equal(t, "after", c.Read(on[1]).Body["value"])
	assert.Equal(t, true, c.Get("/stats").Body["shards"].(map[string]any)["shard_1"].(map[string]any)["healthy"])
}

// With every shard down (here the only one: N = 1 works too) the service is unhealthy:
// 503 on /health, writes and reads; it recovers without a restart.
func TestAllShardsDown(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	tg, _ := start(t, []string{pg.CreateDatabase(t)}, testenv.RedisURL(t))
	layertest.DatabaseOutage(t, tg, func() { pg.Stop(t) }, func() { pg.Start(t) })
}

// The original disabled its cache for good when Redis was down at start-up; here the
// cache is used as soon as Redis is back.
func TestRedisDownAtStartup(t *testing.T) {
	rs := testenv.StartRedis(t)
	rs.Stop(t)
	tg, _ := start(t, shardURLs(t, 1), rs.URL(0))
	c := layertest.NewClient(t, tg)
	assert.Equal(t, "unavailable", c.Get("/health").Body["cache"])
	c.MustWrite("k", "v")
	assert.Equal(t, false, c.Read("k").Body["from_cache"])
	assert.Equal(t, false, c.Get("/stats").Body["cache_available"])

	rs.Start(t)
	testenv.WaitFor(t, 5*time.Second, "the cache to be used", func() bool { return c.Read("k").Body["from_cache"] == true })
	assert.Equal(t, "healthy", c.Get("/health").Body["cache"])
}
