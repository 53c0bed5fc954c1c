package l3_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l3"
)

// cluster is a primary with two streaming replicas (pg_basebackup as the replication
// role, a slot each) and one test database.
type cluster struct {
	primary     *testenv.PGServer
	replicas    []*testenv.PGServer
	db          string
	primaryURL  string
	replicaURLs []string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{primary: testenv.StartPostgres(t, testenv.PGOptions{Settings: testenv.PrimarySettings()})}
	for i := range 2 {
		c.replicas = append(c.replicas, testenv.StartReplica(t, c.primary, fmt.Sprintf("replica_%d", i+1)))
	}
	c.primaryURL = c.primary.CreateDatabase(t)
	u, err := url.Parse(c.primaryURL)
	require.NoError(t, err)
	c.db = strings.TrimPrefix(u.Path, "/")
	for _, r := range c.replicas {
		c.replicaURLs = append(c.replicaURLs, r.URL(c.db))
	}
	return c
}

// waitReplicated waits until every replica has replayed all the primary has written.
func (c *cluster) waitReplicated(t testing.TB) {
	t.Helper()
	testenv.WaitReplayed(t, c.primaryURL, c.replicaURLs...)
}

type target struct {
	layertest.Target
	svc *l3.Service
}

// start runs L3 over c with its own Redis database; tweak adjusts the configuration.
func start(t *testing.T, c *cluster, tweak ...func(*l3.Config)) target {
	t.Helper()
	var cfg l3.Config
	require.NoError(t, config.Load(&cfg))
	cfg.PrimaryURL, cfg.ReplicaURLs, cfg.RedisURL = c.primaryURL, c.replicaURLs, testenv.RedisURL(t)
	cfg.Replicas.CheckInterval = 100 * time.Millisecond
	for _, f := range tweak {
		f(&cfg)
	}
	svc, err := l3.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(layertest.Validating(t, svc.Handler()))
	t.Cleanup(func() { srv.Close(); svc.Close() })
	tg := target{svc: svc, Target: layertest.Target{
		URL: srv.URL, Layer: l3.Layer, WriteMessage: l3.WriteMessage,
		Rows: func(t testing.TB) int { return layertest.CountRows(t, c.primaryURL, "records") },
	}}
	c.waitReplicated(t) // the records table, created on the primary by New
	testenv.WaitFor(t, 10*time.Second, "both replicas to serve", func() bool {
		return replicaStat(t, tg, "replica-1")["serving"] == true && replicaStat(t, tg, "replica-2")["serving"] == true
	})
	return tg
}

func stats(t testing.TB, tg target) map[string]any {
	t.Helper()
	r := layertest.NewClient(t, tg.Target).Get("/stats")
	require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	return r.Body
}

func replicaStat(t testing.TB, tg target, name string) map[string]any {
	t.Helper()
	for _, r := range stats(t, tg)["replicas"].([]any) {
		if m := r.(map[string]any); m["name"] == name {
			return m
		}
	}
	t.Fatalf("no replica %s in /stats", name)
	return nil
}

func readsServed(t testing.TB, tg target) (primary, replica1, replica2 float64) {
	t.Helper()
	st := stats(t, tg)
	return st["primary"].(map[string]any)["reads_served"].(float64),
		replicaStat(t, tg, "replica-1")["reads_served"].(float64),
		replicaStat(t, tg, "replica-2")["reads_served"].(float64)
}

// The original's 20 tests (tests/test_api.py, tests/test_replication.py) and the common
// suite, on one cluster; each subtest has its own service and Redis database.
func TestL3(t *testing.T) {
	c := startCluster(t)

	t.Run("common contract", func(t *testing.T) { layertest.Run(t, start(t, c).Target) })

	// test_health_check
	t.Run("health", func(t *testing.T) {
		r := layertest.NewClient(t, start(t, c).Target).Get("/health")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{
			"status": "healthy", "layer": "3-read-replicas", "primary": "healthy", "replica": "healthy",
			"replicas": map[string]any{"replica-1": "healthy", "replica-2": "healthy"}, "cache": "healthy",
		}, r.Body)
	})

	// test_write_to_primary
	t.Run("write goes to the primary", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		r := cl.MustWrite("test_key", "test_value")
		assert.Equal(t, true, r.Body["success"])
		assert.Equal(t, "test_key", r.Body["key"])
		assert.Equal(t, "Data written successfully to primary", r.Body["message"])
		var v string
		require.NoError(t, testenv.QueryRow(c.primaryURL, "SELECT value FROM records WHERE key = 'test_key'", nil, &v))
		assert.Equal(t, "test_value", v)
	})

	// test_read_from_replica_cache_miss, test_read_from_cache_hit
	t.Run("a miss reads a replica, the next read hits the cache", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		cl.MustWrite("k", "v")
		c.waitReplicated(t)
		first := cl.Read("k")
		assert.Equal(t, "v", first.Body["value"])
		assert.Equal(t, false, first.Body["from_cache"])
		assert.Equal(t, true, first.Body["from_replica"])
		second := cl.Read("k")
		assert.Equal(t, "v", second.Body["value"])
		assert.Equal(t, true, second.Body["from_cache"])
		assert.Equal(t, false, second.Body["from_replica"])
		assert.Equal(t, first.Body["updated_at"], second.Body["updated_at"])
	})

	// test_read_nonexistent_key
	t.Run("missing key", func(t *testing.T) {
		r := layertest.NewClient(t, start(t, c).Target).Read("nonexistent_key_12345")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{
			"success": false, "key": "nonexistent_key_12345", "value": nil, "created_at": nil, "updated_at": nil,
			"message": "Key not found", "from_cache": false, "from_replica": true,
		}, r.Body)
	})

	// test_update_existing_key, without the original's 1 s sleeps: read-your-writes.
	t.Run("update then read at once", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		cl.MustWrite("k", "original")
		cl.MustWrite("k", "updated")
		assert.Equal(t, "updated", cl.Read("k").Body["value"])
	})

	// test_cache_invalidation_on_write
	t.Run("a write invalidates the cached copy", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		cl.MustWrite("k", "v1")
		cl.Read("k")
		require.Equal(t, true, cl.Read("k").Body["from_cache"])
		cl.MustWrite("k", "v2")
		r := cl.Read("k")
		assert.Equal(t, "v2", r.Body["value"])
		assert.Equal(t, false, r.Body["from_cache"])
	})

	// test_multiple_writes
	t.Run("multiple writes", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		for i := range 3 {
			cl.MustWrite(fmt.Sprint("key_", i), fmt.Sprint("value_", i))
		}
		for i := range 3 {
			assert.Equal(t, fmt.Sprint("value_", i), cl.Read(fmt.Sprint("key_", i)).Body["value"])
		}
	})

	// test_stats_endpoint
	t.Run("stats", func(t *testing.T) {
		tg := start(t, c)
		cl := layertest.NewClient(t, tg.Target)
		st := cl.Get("/stats")
		require.Equal(t, http.StatusOK, st.Status)
		for _, f := range []string{"cache_available", "cache_hits", "cache_misses", "cache_keys", "cache_hit_rate",
			"primary_pool_size", "replica_pool_size", "primary", "replicas", "max_lag_bytes", "max_lag_seconds", "read_your_writes"} {
			assert.Contains(t, st.Body, f)
		}
		assert.Equal(t, true, st.Body["cache_available"])
		assert.Greater(t, st.Body["primary_pool_size"], 0.0)
		assert.Greater(t, st.Body["replica_pool_size"], 0.0)
		rep := st.Body["replicas"].([]any)
		require.Len(t, rep, 2)
		for _, r := range rep {
			m := r.(map[string]any)
			for _, f := range []string{"healthy", "serving", "lag_bytes", "lag_seconds", "reads_served", "replay_lsn"} {
				assert.Contains(t, m, f)
			}
			assert.Equal(t, true, m["healthy"])
		}
		same := cl.Get("/cache-stats")
		assert.Equal(t, st.Body["max_lag_bytes"], same.Body["max_lag_bytes"], "/cache-stats is the same document")
		assert.Equal(t, 16777216.0, st.Body["max_lag_bytes"])
		assert.Equal(t, 5.0, st.Body["max_lag_seconds"])
	})

	// test_cache_stats_after_operations: 5 keys read twice → 5 misses, 5 hits, 5 keys.
	t.Run("cache stats after reads", func(t *testing.T) {
		tg := start(t, c)
		cl := layertest.NewClient(t, tg.Target)
		for i := range 5 {
			cl.MustWrite(fmt.Sprint("stats_key_", i), "v")
		}
		for range 2 {
			for i := range 5 {
				cl.Read(fmt.Sprint("stats_key_", i))
			}
		}
		st := stats(t, tg)
		assert.Equal(t, 5.0, st["cache_hits"])
		assert.Equal(t, 5.0, st["cache_misses"])
		assert.Equal(t, 5.0, st["cache_keys"])
		assert.Equal(t, 50.0, st["cache_hit_rate"])
	})

	// test_concurrent_reads: 20 reads from 10 clients, all 200 with the value.
	t.Run("concurrent reads", func(t *testing.T) {
		tg := start(t, c)
		cl := layertest.NewClient(t, tg.Target)
		for i := range 20 {
			cl.MustWrite(fmt.Sprint("concurrent_", i), fmt.Sprint("v", i))
		}
		var wg sync.WaitGroup
		for w := range 10 {
			wg.Go(func() {
				cl := layertest.NewClient(t, tg.Target)
				for i := w; i < 20; i += 10 {
					r := cl.Read(fmt.Sprint("concurrent_", i))
					assert.Equal(t, http.StatusOK, r.Status)
					assert.Equal(t, fmt.Sprint("v", i), r.Body["value"])
				}
			})
		}
		wg.Wait()
	})

	// test_timestamps_in_response
	t.Run("timestamps", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		cl.MustWrite("k", "v")
		r := cl.Read("k")
		for _, f := range []string{"created_at", "updated_at"} {
			ts, ok := r.Body[f].(string)
			require.True(t, ok, f)
			_, err := time.Parse("2006-01-02T15:04:05.999999", ts)
			assert.NoError(t, err, f)
		}
	})

	// test_write_and_immediate_read, made strict: every read right after a write sees it.
	t.Run("every read right after a write sees it", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		for i := range 30 {
			cl.MustWrite("immediate", fmt.Sprint("v", i))
			assert.Equal(t, fmt.Sprint("v", i), cl.Read("immediate").Body["value"])
		}
	})

	// test_special_characters_in_value
	t.Run("special characters in a value", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		v := "Special chars: !@#$%^&*()_+-=[]{}|;':\",./<>?"
		cl.MustWrite("special", v)
		assert.Equal(t, v, cl.Read("special").Body["value"])
	})

	// test_long_value
	t.Run("a 10,000-character value", func(t *testing.T) {
		cl := layertest.NewClient(t, start(t, c).Target)
		v := strings.Repeat("x", 10_000)
		cl.MustWrite("long", v)
		assert.Equal(t, v, cl.Read("long").Body["value"])
	})

	// The replication tests write straight on the primary and poll the replicas (the
	// original slept 1 s, or retried 5 × 0.5 s).
	replicated := func(t *testing.T, where, want string) {
		t.Helper()
		for _, u := range c.replicaURLs {
			testenv.WaitFor(t, 10*time.Second, "the rows on the replica", func() bool {
				var got *string
				err := testenv.QueryRow(u, `SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM records WHERE `+where, nil, &got)
				return err == nil && got != nil && *got == want
			})
		}
	}
	upsert := func(t *testing.T, key, value string) {
		testenv.Exec(t, c.primaryURL, `INSERT INTO records (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = CURRENT_TIMESTAMP`, key, value)
	}

	// test_data_replicates_from_primary_to_replica
	t.Run("an upsert on the primary reaches both replicas", func(t *testing.T) {
		start(t, c) // creates the table
		upsert(t, "repl_test_key", "repl_test_value")
		replicated(t, "key = 'repl_test_key'", "repl_test_key=repl_test_value")
	})

	// test_replica_lag_tolerance: the insert arrives (the original allowed 2.5 s; timing is
	// not asserted here), and the service sees both replicas' measured lag settle to zero.
	t.Run("an insert arrives and the measured lag settles", func(t *testing.T) {
		tg := start(t, c)
		testenv.Exec(t, c.primaryURL, `INSERT INTO records (key, value) VALUES ('lag_test_key', 'lag_test_value')`)
		replicated(t, "key = 'lag_test_key'", "lag_test_key=lag_test_value")
		testenv.WaitFor(t, 10*time.Second, "no measured lag", func() bool {
			for _, name := range []string{"replica-1", "replica-2"} {
				if st := replicaStat(t, tg, name); st["lag_bytes"] != 0.0 || st["lag_seconds"] != 0.0 || st["serving"] != true {
					return false
				}
			}
			return true
		})
	})

	// test_multiple_records_replication
	t.Run("several records reach both replicas", func(t *testing.T) {
		start(t, c)
		for i := range 3 {
			upsert(t, fmt.Sprint("multi_repl_", i), fmt.Sprint("value_", i))
		}
		replicated(t, `key LIKE 'multi\_repl\_%'`, "multi_repl_0=value_0,multi_repl_1=value_1,multi_repl_2=value_2")
	})

	// test_update_replicates_correctly
	t.Run("an update reaches both replicas", func(t *testing.T) {
		start(t, c)
		upsert(t, "update_repl_key", "original")
		replicated(t, "key = 'update_repl_key'", "update_repl_key=original")
		testenv.Exec(t, c.primaryURL, `UPDATE records SET value = 'updated' WHERE key = 'update_repl_key'`)
		replicated(t, "key = 'update_repl_key'", "update_repl_key=updated")
	})

	// test_primary_and_replicas_are_separate
	t.Run("primary and replicas are separate servers", func(t *testing.T) {
		ports := map[int]bool{}
		for i, u := range append([]string{c.primaryURL}, c.replicaURLs...) {
			var port int
			var standby bool
			require.NoError(t, testenv.QueryRow(u, "SELECT inet_server_port(), pg_is_in_recovery()", nil, &port, &standby))
			ports[port] = true
			assert.Equal(t, i > 0, standby, u)
		}
		assert.Len(t, ports, 3)
	})
}

// Faults on real processes, one cluster, in order; each subtest leaves every server up.
func TestFaults(t *testing.T) {
	c := startCluster(t)
	r1, r2 := c.replicas[0], c.replicas[1]

	// preload writes keys and waits until both replicas have them, so that reads of them
	// may go anywhere; each key is read once, so every read misses the cache.
	preload := func(t *testing.T, cl *layertest.Client, prefix string, n int) []string {
		var keys []string
		for i := range n {
			k := fmt.Sprint(prefix, i)
			cl.MustWrite(k, "v-"+k)
			keys = append(keys, k)
		}
		c.waitReplicated(t)
		return keys
	}
	readAll := func(t *testing.T, cl *layertest.Client, keys []string) (fromReplica int) {
		for _, k := range keys {
			start := time.Now()
			r := cl.Read(k)
			require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
			assert.Less(t, time.Since(start), layertest.FastFail)
			assert.Equal(t, "v-"+k, r.Body["value"])
			assert.Equal(t, false, r.Body["from_cache"])
			if r.Body["from_replica"] == true {
				fromReplica++
			}
		}
		return fromReplica
	}

	t.Run("one replica stopped: reads keep succeeding from the other", func(t *testing.T) {
		tg := start(t, c)
		cl := layertest.NewClient(t, tg.Target)
		keys := preload(t, cl, "one-", 30)
		r1.Stop(t)
		_, r1Before, _ := readsServed(t, tg)
		assert.Equal(t, 20, readAll(t, cl, keys[:20]), "the other replica answers them all")
		_, r1After, _ := readsServed(t, tg)
		assert.Equal(t, r1Before, r1After)
		h := cl.Get("/health")
		assert.Equal(t, http.StatusOK, h.Status)
		assert.Equal(t, "degraded", h.Body["status"])
		assert.Equal(t, "degraded", h.Body["replica"])
		assert.Equal(t, "unreachable", h.Body["replicas"].(map[string]any)["replica-1"])

		r1.Start(t)
		testenv.WaitFor(t, 15*time.Second, "replica-1 back in rotation", func() bool {
			return replicaStat(t, tg, "replica-1")["serving"] == true
		})
		readAll(t, cl, keys[20:])
		_, r1Back, _ := readsServed(t, tg)
		assert.Equal(t, r1After+5, r1Back, "round-robin again: replica-1 answers every other read")
		assert.Equal(t, "healthy", cl.Get("/health").Body["status"])
	})

	t.Run("both replicas stopped: reads come from the primary", func(t *testing.T) {
		tg := start(t, c)
		cl := layertest.NewClient(t, tg.Target)
		keys := preload(t, cl, "both-", 30)
		r1.Stop(t)
		r2.Stop(t)
		assert.Equal(t, 0, readAll(t, cl, keys[:20]))
		cl.MustWrite("written-meanwhile", "w")
		assert.Equal(t, "w", cl.Read("written-meanwhile").Body["value"])
		h := cl.Get("/health")
		assert.Equal(t, http.StatusOK, h.Status)
		assert.Equal(t, "degraded", h.Body["status"])
		assert.Equal(t, "unhealthy", h.Body["replica"])

		r1.Start(t)
		r2.Start(t)
		testenv.WaitFor(t, 15*time.Second, "both replicas back in rotation", func() bool {
			return replicaStat(t, tg, "replica-1")["serving"] == true && replicaStat(t, tg, "replica-2")["serving"] == true
		})
		p0, a0, b0 := readsServed(t, tg)
		assert.Equal(t, 10, readAll(t, cl, keys[20:]))
		p1, a1, b1 := readsServed(t, tg)
		assert.Equal(t, p0, p1)
		assert.Equal(t, 10.0, (a1-a0)+(b1-b0))
		assert.Positive(t, a1-a0)
		assert.Positive(t, b1-b0)
	})

	t.Run("replay paused while writing: no stale read, and the replica drops out", func(t *testing.T) {
		tg := start(t, c, func(cfg *l3.Config) { cfg.Replicas.MaxLag = time.Second })
		cl := layertest.NewClient(t, tg.Target)
		keys := preload(t, cl, "paused-", 20)
		r1.PauseReplay(t)
		defer r1.ResumeReplay(t)

		// One writer counts up on "counter", reading back after each acknowledgement;
		// readers check that no read returns less than what was acknowledged before it
		// was sent. The cache is on: its fills must not bring older values back either.
		var acked atomic.Int64
		var stop atomic.Bool
		var wg sync.WaitGroup
		var stale atomic.Int64
		for range 3 {
			wg.Go(func() {
				rc := layertest.NewClient(t, tg.Target)
				for n := 0; n < 5000 && !stop.Load(); n++ {
					floor := acked.Load()
					r := rc.Read("counter")
					if r.Status != http.StatusOK {
						t.Errorf("read: %d %s", r.Status, r.Raw)
						return
					}
					var got int64
					if v, ok := r.Body["value"].(string); ok {
						fmt.Sscan(v, &got)
					}
					if got < floor {
						stale.Add(1)
						t.Errorf("read %d after %d was acknowledged", got, floor)
						return
					}
				}
			})
		}
		deadline := time.Now().Add(20 * time.Second)
		dropped := false
		for i := int64(1); i <= 2000 && time.Now().Before(deadline); i++ {
			cl.MustWrite("counter", fmt.Sprint(i))
			acked.Store(i)
			assert.Equal(t, fmt.Sprint(i), cl.Read("counter").Body["value"])
			if !dropped && i%10 == 0 {
				dropped = replicaStat(t, tg, "replica-1")["problem"] == "lagging"
			}
			if dropped && i%10 == 0 {
				break
			}
		}
		stop.Store(true)
		wg.Wait()
		require.True(t, dropped, "replica-1 left the rotation once past the bound")
		assert.Zero(t, stale.Load())
		st := stats(t, tg)
		assert.Positive(t, st["primary"].(map[string]any)["reads_not_replayed"], "some reads skipped a replica that lacked the key's last write")

		_, r1Before, _ := readsServed(t, tg)
		assert.Equal(t, 10, readAll(t, cl, keys[:10]), "replica-2 answers while replica-1 lags")
		_, r1After, _ := readsServed(t, tg)
		assert.Equal(t, r1Before, r1After, "the lagging replica answered nothing")

		r1.ResumeReplay(t)
		testenv.WaitFor(t, 15*time.Second, "replica-1 caught up and serving", func() bool {
			return replicaStat(t, tg, "replica-1")["serving"] == true
		})
	})

	t.Run("primary stopped: writes fail fast, replicas keep answering reads", func(t *testing.T) {
		tg := start(t, c)
		cl := layertest.NewClient(t, tg.Target)
		keys := preload(t, cl, "primary-", 10)
		c.primary.Stop(t)
		layertest.AssertFastUnavailable(t, "write", func() layertest.Response { return cl.Write("during", "v") })
		layertest.AssertFastUnavailable(t, "health", func() layertest.Response { return cl.Get("/health") })
		assert.Equal(t, 10, readAll(t, cl, keys))

		c.primary.Start(t)
		testenv.WaitFor(t, 15*time.Second, "the service to serve again", func() bool {
			return cl.Get("/health").Status == http.StatusOK
		})
		cl.MustWrite("after", "v")
		assert.Equal(t, "v", cl.Read("after").Body["value"])
	})

	// Every database down at once (primary and replicas): the common outage check.
	t.Run("database outage", func(t *testing.T) {
		tg := start(t, c)
		layertest.DatabaseOutage(t, tg.Target, func() {
			r1.Stop(t)
			r2.Stop(t)
			c.primary.Stop(t)
		}, func() {
			c.primary.Start(t)
			r1.Start(t)
			r2.Start(t)
		})
	})
}
