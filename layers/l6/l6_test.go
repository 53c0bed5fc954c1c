package l6_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/internal/writequeue"
	"github.com/dblayers/dblayers/layers/l6"
)

// setup says how to start an L6 API for a test.
type setup struct {
	dbURL, redisURL string
	workers         bool // run workers inside the API process
	tune            func(*l6.Config)
}

// testBackends are the settings of a test: short waits, so that claims and retries happen
// within a test's time.
func testBackends(t testing.TB, dbURL, redisURL string) l6.Backends {
	t.Helper()
	var cfg l6.WorkerConfig
	require.NoError(t, config.LoadFrom(&cfg, config.Defaults))
	b := cfg.Backends
	b.DatabaseURL, b.RedisURL = dbURL, redisURL
	b.Worker.PollInterval, b.Worker.ClaimMinIdle, b.Worker.MaxAttempts = 100*time.Millisecond, 500*time.Millisecond, 3
	return b
}

func start(t *testing.T, s setup) layertest.Target {
	t.Helper()
	backends := testBackends(t, s.dbURL, s.redisURL)
	srv := layertest.Serve(t, l6.New, func(cfg *l6.Config) {
		cfg.Backends, cfg.WorkerEnabled = backends, s.workers
		if s.tune != nil {
			s.tune(cfg)
		}
	})
	tg := layertest.Target{
		URL: srv.URL, Layer: l6.Layer, WriteMessage: l6.WriteMessage,
		Rows: func(t testing.TB) int { return layertest.CountRows(t, s.dbURL, "records") },
	}
	tg.Settle = func(t testing.TB) { drained(t, tg) }
	return tg
}

// drained waits until every queued write is applied (or dead-lettered).
func drained(t testing.TB, tg layertest.Target) {
	t.Helper()
	c := layertest.NewClient(t, tg)
	testenv.WaitFor(t, 30*time.Second, "the write queue to drain", func() bool {
		return c.Get("/stats").Body["queue_length"] == 0.0
	})
}

// startWorker runs a worker process's workers inside the test until it ends or stop is called.
func startWorker(t testing.TB, b l6.Backends) (stop func()) {
	t.Helper()
	p, err := l6.NewWorkerProcess(context.Background(), l6.WorkerConfig{Backends: b}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; p.Close() }) }
	t.Cleanup(stop)
	return stop
}

// The common suite, waiting for the queue to drain before reads.
func TestContract(t *testing.T) {
	layertest.Run(t, start(t, setup{dbURL: testenv.PostgresURL(t), redisURL: testenv.RedisURL(t), workers: true}))
}

// The common suite again, reading right after each write without waiting: read-your-writes
// makes every read see the write it follows, flushed or not. (Rows is left out: it counts
// what PostgreSQL holds, which lags by design.)
func TestContractWithoutWaitingForTheFlush(t *testing.T) {
	tg := start(t, setup{dbURL: testenv.PostgresURL(t), redisURL: testenv.RedisURL(t), workers: true})
	tg.Settle, tg.Rows = nil, nil
	layertest.Run(t, tg)
}

// Go counterparts of the original's tests/test_api.py that run against one service with
// workers: test names in the subtest names. Counts are checked in TestQueueCounts, where
// no worker races them.
func TestOriginal(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	tg := start(t, setup{dbURL: dbURL, redisURL: testenv.RedisURL(t), workers: true})

	t.Run("test_health_check", func(t *testing.T) {
		r := layertest.NewClient(t, tg).Get("/health")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, "healthy", r.Body["status"])
		assert.Equal(t, "6-write-buffering", r.Body["layer"])
		assert.Equal(t, "healthy", r.Body["database"])
		assert.Equal(t, "healthy", r.Body["cache"])
		assert.Equal(t, "healthy", r.Body["queue"])
		assert.Contains(t, r.Body, "queue_length")
		testenv.WaitFor(t, 5*time.Second, "the in-process workers' heartbeats", func() bool {
			return layertest.NewClient(t, tg).Get("/health").Body["workers"] == 2.0 // WORKER_CONCURRENCY defaults to 2
		})
	})
	t.Run("test_write_queues_data", func(t *testing.T) {
		r := layertest.NewClient(t, tg).MustWrite("queue-me", "v")
		assert.Equal(t, map[string]any{"success": true, "key": "queue-me", "queued": true, "message": "Write queued successfully"}, r.Body)
	})
	// The original accepted either outcome right after the write; here the read must see it.
	t.Run("test_read_after_write_eventual_consistency", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		c.MustWrite("eventual", "v1")
		r := c.Read("eventual")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, true, r.Body["success"])
		assert.Equal(t, "v1", r.Body["value"], "read-your-writes, flushed or not")
		drained(t, tg)
		r = c.Read("eventual")
		assert.Equal(t, "v1", r.Body["value"])
		assert.Equal(t, false, r.Body["buffered"])
	})
	t.Run("test_cache_hit_after_processing", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		c.MustWrite("cache-hit", "v")
		drained(t, tg)
		assert.Equal(t, false, c.Read("cache-hit").Body["from_cache"])
		r := c.Read("cache-hit")
		assert.Equal(t, true, r.Body["from_cache"])
		assert.Equal(t, "v", r.Body["value"])
	})
	t.Run("test_stats_endpoint", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		r := c.Get("/stats")
		require.Equal(t, http.StatusOK, r.Status)
		for _, f := range []string{"queue_length", "writes_queued", "writes_processed", "cache_available", "db_pool_size",
			"cache_hits", "cache_misses", "cache_keys", "cache_hit_rate", "pending", "dead_lettered", "oldest_pending_age_seconds", "workers"} {
			assert.Contains(t, r.Body, f)
		}
		assert.Equal(t, true, r.Body["cache_available"])
		other := c.Get("/cache-stats").Body
		for f := range r.Body {
			assert.Contains(t, other, f, "/cache-stats is the same document")
		}
	})
	t.Run("test_update_existing_key", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		c.MustWrite("update", "original")
		drained(t, tg)
		c.MustWrite("update", "updated")
		drained(t, tg)
		assert.Equal(t, "updated", c.Read("update").Body["value"])
		v, _ := layertest.StoredValue(t, dbURL, "update")
		assert.Equal(t, "updated", v)
	})
	t.Run("test_read_nonexistent_key", func(t *testing.T) {
		r := layertest.NewClient(t, tg).Read("nonexistent")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{"success": false, "key": "nonexistent", "value": nil, "created_at": nil,
			"updated_at": nil, "message": "Key not found", "from_cache": false, "buffered": false}, r.Body)
	})
	// The original's worker never invalidated the cache (reference §3.2.7): a value cached
	// before the flush was served for the whole TTL. Here the buffered value is read at
	// once, and the flush drops the cached copy.
	t.Run("test_cache_invalidation_on_write", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		c.MustWrite("invalidate", "v1")
		drained(t, tg)
		c.Read("invalidate")
		require.Equal(t, true, c.Read("invalidate").Body["from_cache"], "v1 is cached")
		c.MustWrite("invalidate", "v2")
		drained(t, tg)
		r := c.Read("invalidate")
		assert.Equal(t, "v2", r.Body["value"], "the worker dropped the cached v1")
		assert.Equal(t, false, r.Body["from_cache"])
		assert.Equal(t, false, r.Body["buffered"])
		require.Equal(t, true, c.Read("invalidate").Body["from_cache"], "v2 is cached")
		c.MustWrite("invalidate", "v3")
		assert.Equal(t, "v3", c.Read("invalidate").Body["value"], "a queued write is read before the cached copy")
	})
	t.Run("test_timestamps_in_response", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		c.MustWrite("timestamps", "v")
		buffered := c.Read("timestamps")
		drained(t, tg)
		flushed := c.Read("timestamps")
		for _, r := range []layertest.Response{buffered, flushed} {
			assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`, r.Body["created_at"])
			assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`, r.Body["updated_at"])
		}
		assert.Equal(t, buffered.Body["created_at"], flushed.Body["created_at"], "the flush keeps the times the buffered read showed")
		assert.Equal(t, buffered.Body["updated_at"], flushed.Body["updated_at"])
	})
	t.Run("test_special_characters_in_value", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		v := "Special chars: !@#$%^&*()_+-=[]{}|;':\",./<>? 测试数据 🚀"
		c.MustWrite("special", v)
		drained(t, tg)
		assert.Equal(t, v, c.Read("special").Body["value"])
	})
	t.Run("test_long_value", func(t *testing.T) {
		c := layertest.NewClient(t, tg)
		v := strings.Repeat("x", 10_000)
		c.MustWrite("long", v)
		drained(t, tg)
		assert.Equal(t, v, c.Read("long").Body["value"])
	})
	// The original only checked the 200s; here every write is also applied.
	t.Run("test_concurrent_writes", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				c := layertest.NewClient(t, tg)
				for j := range 2 {
					c.MustWrite(fmt.Sprintf("concurrent-%d-%d", i, j), fmt.Sprint("v", j))
				}
			})
		}
		wg.Wait()
		drained(t, tg)
		for i := range 10 {
			for j := range 2 {
				v, ok := layertest.StoredValue(t, dbURL, fmt.Sprintf("concurrent-%d-%d", i, j))
				assert.True(t, ok)
				assert.Equal(t, fmt.Sprint("v", j), v)
			}
		}
	})
}

// test_multiple_writes_queued and test_queue_length_increases_with_writes: with no worker
// running the writes wait in the queue; a worker then applies exactly those.
func TestQueueCounts(t *testing.T) {
	dbURL, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	tg := start(t, setup{dbURL: dbURL, redisURL: redisURL})
	c := layertest.NewClient(t, tg)
	for i := range 3 {
		c.MustWrite(fmt.Sprint("multi", i), fmt.Sprint("value", i))
	}
	st := c.Get("/stats").Body
	assert.Equal(t, 3.0, st["writes_queued"])
	assert.Equal(t, 3.0, st["queue_length"])
	for i := 3; i < 5; i++ {
		c.MustWrite(fmt.Sprint("multi", i), fmt.Sprint("value", i))
	}
	st = c.Get("/stats").Body
	assert.Equal(t, 5.0, st["writes_queued"])
	assert.Equal(t, 5.0, st["queue_length"])
	assert.Equal(t, 0.0, st["writes_processed"])
	assert.Equal(t, 0.0, st["workers"])
	assert.GreaterOrEqual(t, st["oldest_pending_age_seconds"], 0.0)
	assert.Equal(t, 0, layertest.CountRows(t, dbURL, "records"), "nothing reaches PostgreSQL without a worker")
	for i := range 5 {
		r := c.Read(fmt.Sprint("multi", i))
		assert.Equal(t, fmt.Sprint("value", i), r.Body["value"])
		assert.Equal(t, true, r.Body["buffered"])
	}

	startWorker(t, testBackends(t, dbURL, redisURL))
	drained(t, tg)
	st = c.Get("/stats").Body
	assert.Equal(t, 5.0, st["writes_processed"], "counted by the worker, seen by the API")
	assert.Equal(t, 5.0, st["writes_queued"])
	assert.Equal(t, 5, layertest.CountRows(t, dbURL, "records"))
	for i := range 5 {
		r := c.Read(fmt.Sprint("multi", i))
		assert.Equal(t, fmt.Sprint("value", i), r.Body["value"])
		assert.Equal(t, false, r.Body["buffered"])
	}
}

// Past WRITE_QUEUE_MAX_BACKLOG unapplied writes, /write answers 503 with a clear message
// and stores nothing; once a worker catches up, writes are accepted again.
func TestBackpressure(t *testing.T) {
	dbURL, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	tg := start(t, setup{dbURL: dbURL, redisURL: redisURL, tune: func(c *l6.Config) { c.MaxBacklog = 5 }})
	c := layertest.NewClient(t, tg)
	for i := range 5 {
		c.MustWrite(fmt.Sprint("k", i), "v")
	}
	r := c.Write("k5", "v")
	require.Equal(t, http.StatusServiceUnavailable, r.Status)
	assert.Equal(t, "Write queue is full (5 writes waiting to be applied): try again later", r.Body["detail"])
	assert.Equal(t, false, c.Read("k5").Body["success"], "the refused write is not stored")
	st := c.Get("/stats").Body
	assert.Equal(t, 5.0, st["queue_length"])
	assert.Equal(t, 5.0, st["max_backlog"])
	assert.Equal(t, 5.0, st["writes_queued"])

	startWorker(t, testBackends(t, dbURL, redisURL))
	drained(t, tg)
	c.MustWrite("k5", "v")
}

// A write PostgreSQL rejects is read as queued while it is retried, does not hold up the
// writes around it, and after WORKER_MAX_ATTEMPTS rejections goes to the dead-letter
// stream, which /stats shows; the key then reads as it was before.
func TestPoisonEntry(t *testing.T) {
	dbURL, redisURL := testenv.PostgresURL(t), testenv.RedisURL(t)
	tg := start(t, setup{dbURL: dbURL, redisURL: redisURL})
	c := layertest.NewClient(t, tg)
	rdb, err := redisclient.New(redisURL)
	require.NoError(t, err)
	defer rdb.Close()
	for i := range 20 {
		c.MustWrite(fmt.Sprint("good", i), fmt.Sprint("v", i))
		if i == 10 {
			// The API refuses NUL characters; another producer (or a bug) might not.
			q := writequeue.NewQueue(rdb, "write_queue", 0)
			_, err := q.Enqueue(context.Background(), "poison", "nul \x00 byte")
			q.Close()
			require.NoError(t, err)
		}
	}
	r := c.Read("poison")
	assert.Equal(t, "nul \x00 byte", r.Body["value"])
	assert.Equal(t, true, r.Body["buffered"])

	b := testBackends(t, dbURL, redisURL)
	// 3 attempts take at least 6 s: time to look in between, even on a loaded machine.
	b.Worker.ClaimMinIdle = 3 * time.Second
	startWorker(t, b)
	// Counted once acknowledged, which follows the commit.
	testenv.WaitFor(t, 10*time.Second, "the good writes to be applied and acknowledged", func() bool {
		return c.Get("/stats").Body["writes_processed"] == 20.0
	})
	assert.Equal(t, 20, layertest.CountRows(t, dbURL, "records"))
	st := c.Get("/stats").Body
	assert.Equal(t, 0.0, st["dead_lettered"], "still being retried")
	assert.Equal(t, 1.0, st["queue_length"], "only the poison waits")
	assert.Equal(t, 20.0, st["writes_processed"])

	testenv.WaitFor(t, 30*time.Second, "the poison to be dead-lettered", func() bool {
		return c.Get("/stats").Body["dead_lettered"] == 1.0
	})
	drained(t, tg)
	for i := range 20 {
		assert.Equal(t, fmt.Sprint("v", i), c.Read(fmt.Sprint("good", i)).Body["value"])
	}
	r = c.Read("poison")
	assert.Equal(t, false, r.Body["success"], "the rejected write is gone from the read path: %s", r.Raw)
	dead, err := rdb.XRange(context.Background(), "write_queue:dead", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "poison", dead[0].Values["key"])
	assert.Equal(t, "3", dead[0].Values["attempts"])
}

// PostgreSQL stopped: writes are still queued (the point of the layer) and a read of a
// queued write is answered from the buffer; a read that needs PostgreSQL and /health answer
// 503 fast, with no driver text. PostgreSQL back: the worker applies the backlog by
// itself, and nothing acknowledged before or during the outage is lost.
func TestDatabaseOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	dbURL := pg.CreateDatabase(t)
	tg := start(t, setup{dbURL: dbURL, redisURL: testenv.RedisURL(t), workers: true})
	c := layertest.NewClient(t, tg)
	c.MustWrite("before-outage", "kept")
	drained(t, tg)

	pg.Stop(t)
	begin := time.Now()
	r := c.Write("during-outage", "queued")
	assert.Less(t, time.Since(begin), layertest.FastFail)
	require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	assert.Equal(t, true, r.Body["queued"])
	r = c.Read("during-outage")
	assert.Equal(t, "queued", r.Body["value"])
	assert.Equal(t, true, r.Body["buffered"])
	layertest.AssertFastUnavailable(t, "read", func() layertest.Response { return c.Read("never-cached") })
	layertest.AssertFastUnavailable(t, "health", func() layertest.Response { return c.Get("/health") })
	st := c.Get("/stats")
	require.Equal(t, http.StatusOK, st.Status)
	assert.Equal(t, 1.0, st.Body["queue_length"], "the write waits for the database")

	pg.Start(t)
	testenv.WaitFor(t, 15*time.Second, "the service to serve again", func() bool {
		return c.Get("/health").Status == http.StatusOK
	})
	drained(t, tg)
	v, ok := layertest.StoredValue(t, dbURL, "during-outage")
	assert.True(t, ok, "the write queued during the outage was applied")
	assert.Equal(t, "queued", v)
	assert.Equal(t, false, c.Read("during-outage").Body["buffered"])
	assert.Equal(t, "kept", c.Read("before-outage").Body["value"])
	c.MustWrite("after-outage", "v")
	drained(t, tg)
	assert.Equal(t, "v", c.Read("after-outage").Body["value"])
}

// Redis (queue and cache) stopped: writes and reads answer 503 fast. Reads do not fall
// back to PostgreSQL: a queued write may be newer than the row. Redis back: the same
// service and its worker carry on.
func TestRedisOutage(t *testing.T) {
	rs := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	tg := start(t, setup{dbURL: testenv.PostgresURL(t), redisURL: rs.URL(0), workers: true})
	c := layertest.NewClient(t, tg)
	c.MustWrite("k", "v1")
	drained(t, tg)

	rs.Stop(t)
	layertest.AssertFastUnavailable(t, "write", func() layertest.Response { return c.Write("k", "v2") })
	layertest.AssertFastUnavailable(t, "read", func() layertest.Response { return c.Read("k") })
	layertest.AssertFastUnavailable(t, "health", func() layertest.Response { return c.Get("/health") })
	assert.Equal(t, "Queue unavailable", c.Write("k", "v2").Body["detail"])
	st := c.Get("/stats")
	assert.Equal(t, http.StatusOK, st.Status)
	assert.Equal(t, false, st.Body["cache_available"])
	assert.Nil(t, st.Body["queue_length"])

	// Redis back. For about a second the client may still fail fast with its last dial
	// error (go-redis retries dialling in the background once every connection failed).
	rs.Start(t)
	var read layertest.Response
	testenv.WaitFor(t, 15*time.Second, "the service to serve again", func() bool {
		read = c.Read("k")
		return c.Get("/health").Status == http.StatusOK && read.Status == http.StatusOK
	})
	assert.Equal(t, "v1", read.Body["value"])
	testenv.WaitFor(t, 5*time.Second, "writes to be queued again", func() bool { return c.Write("k", "v3").Status == http.StatusOK })
	drained(t, tg)
	assert.Equal(t, "v3", c.Read("k").Body["value"])
}

// Redis killed (SIGKILL) with writes acknowledged and not yet applied: with AOF, whether
// appendfsync is always (the stack and compose) or everysec (the Kubernetes overlay), they
// are all still queued after the restart, and a worker applies them. Redis writes the AOF
// before it replies, so a process crash loses nothing either way; only a host crash tells
// the two apart, which no test here makes.
func TestRedisCrashKeepsAcknowledgedWrites(t *testing.T) {
	for _, fsync := range []string{"always", "everysec"} {
		t.Run(fsync, func(t *testing.T) {
			rs := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", fsync)
			dbURL := testenv.PostgresURL(t)
			tg := start(t, setup{dbURL: dbURL, redisURL: rs.URL(0)})
			c := layertest.NewClient(t, tg)
			for i := range 100 {
				c.MustWrite(fmt.Sprint("k", i), fmt.Sprint("v", i))
			}
			rs.Kill(t)
			rs.Start(t)
			testenv.WaitFor(t, 10*time.Second, "Redis to load its AOF and the service to read from it", func() bool {
				return c.Get("/stats").Body["queue_length"] == 100.0 && c.Read("k42").Body["value"] == "v42"
			})

			startWorker(t, testBackends(t, dbURL, rs.URL(0)))
			drained(t, tg)
			assert.Equal(t, 100, layertest.CountRows(t, dbURL, "records"))
			for i := range 100 {
				v, _ := layertest.StoredValue(t, dbURL, fmt.Sprint("k", i))
				assert.Equal(t, fmt.Sprint("v", i), v)
			}
		})
	}
}
