package l7_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/cqrs"
	"github.com/dblayers/dblayers/internal/cqrs/cqrstest"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l7"
)

// dbs are the two databases of one L7 under test.
type dbs struct{ write, read string }

func sharedDBs(t testing.TB) dbs {
	return dbs{write: testenv.PostgresURL(t), read: testenv.PostgresURL(t)}
}

// fastProjector polls and retries in milliseconds, so that tests do not wait.
func fastProjector() cqrs.Config {
	return cqrs.Config{BatchSize: 10, PollInterval: 10 * time.Millisecond, MaxAttempts: 3,
		RetryDelay: 5 * time.Millisecond, MaxDelay: 100 * time.Millisecond, Heartbeat: 100 * time.Millisecond}
}

// startAPI serves the L7 API over d in-process. Its errors go to stderr, so that a failing
// test shows what the API met.
func startAPI(t testing.TB, d dbs, tune func(*l7.Config)) layertest.Target {
	t.Helper()
	errorLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return startAPILogging(t, d, errorLog, tune)
}

// startAPILogging is startAPI logging to logger.
func startAPILogging(t testing.TB, d dbs, logger *slog.Logger, tune func(*l7.Config)) layertest.Target {
	t.Helper()
	newL7 := func(ctx context.Context, cfg l7.Config, _ *slog.Logger) (*l7.Service, error) {
		return l7.New(ctx, cfg, logger)
	}
	srv := layertest.Serve(t, newL7, func(cfg *l7.Config) {
		cfg.WriteDBURL, cfg.ReadDBURL = d.write, d.read
		if tune != nil {
			tune(cfg)
		}
	})
	tg := layertest.Target{
		URL: srv.URL, Layer: l7.Layer, WriteMessage: l7.MsgCreated,
		Rows: func(t testing.TB) int { return layertest.CountRows(t, d.write, "commands") },
	}
	tg.Settle = func(t testing.TB) { settle(t, tg) }
	return tg
}

// settle waits until the projector has applied every committed event.
func settle(t testing.TB, tg layertest.Target) {
	t.Helper()
	c := layertest.NewClient(t, tg)
	testenv.WaitFor(t, 15*time.Second, "the projection to catch up", func() bool {
		r := c.Get("/stats")
		return r.Status == http.StatusOK && r.Body["projection_lag_events"] == 0.0
	})
}

// runProjector runs a projector in-process (its own pools, as a separate process has)
// until the test ends; tune may change its configuration.
func runProjector(t testing.TB, d dbs, tune ...func(*l7.ProjectorConfig)) {
	t.Helper()
	var cfg l7.ProjectorConfig
	require.NoError(t, config.LoadFrom(&cfg, config.Defaults))
	cfg.WriteDBURL, cfg.ReadDBURL, cfg.Projector = d.write, d.read, fastProjector()
	for _, f := range tune {
		f(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, l7.RunProjector(ctx, cfg, slog.New(slog.DiscardHandler)))
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func start(t testing.TB) (layertest.Target, dbs) {
	d := sharedDBs(t)
	tg := startAPI(t, d, nil)
	runProjector(t, d)
	waitHealthy(t, tg)
	return tg, d
}

// waitHealthy waits until /health reports a running projector.
func waitHealthy(t testing.TB, tg layertest.Target) {
	t.Helper()
	c := layertest.NewClient(t, tg)
	testenv.WaitFor(t, 15*time.Second, "the projector to show it runs", func() bool {
		return c.Get("/health").Body["status"] == "healthy"
	})
}

func TestContract(t *testing.T) {
	tg, _ := start(t)
	layertest.Run(t, tg)
}

func put(c *layertest.Client, key, value string) layertest.Response {
	body, _ := json.Marshal(map[string]string{"key": key, "value": value})
	return c.Do(http.MethodPut, "/write", body)
}

func statInt(t testing.TB, c *layertest.Client, field string) int64 {
	t.Helper()
	r := c.Get("/stats")
	require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	v, ok := r.Body[field].(float64)
	require.True(t, ok, "%s is a number: %s", field, r.Raw)
	return int64(v)
}

// TestOriginal holds the Go counterparts of the original's 18 tests (tests/test_cqrs.py),
// one subtest each, named as there. Where the original slept a fixed 1 to 5 s for the
// projection, these wait for it (settle, WaitFor); where it tolerated a replayed or lost
// event (≥ 3 writes, "contains value_"), they assert the exact answer.
func TestOriginal(t *testing.T) {
	tg, d := start(t)
	c := layertest.NewClient(t, tg)

	t.Run("test_health", func(t *testing.T) {
		r := c.Get("/health")
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.Equal(t, "healthy", r.Body["status"])
		assert.Equal(t, "7-cqrs", r.Body["layer"])
		assert.Equal(t, "healthy", r.Body["write_db"])
		assert.Equal(t, "healthy", r.Body["read_db"])
		assert.Equal(t, "healthy", r.Body["projector"])
	})
	t.Run("test_write_command", func(t *testing.T) {
		r := c.MustWrite("test_write", "value1")
		assert.Equal(t, "test_write", r.Body["key"])
		assert.Equal(t, l7.MsgCreated, r.Body["message"])
		assert.Contains(t, r.Body["message"], "event published")
		id, ok := r.Body["event_id"].(string)
		require.True(t, ok, "event_id is a string: %s", r.Raw)
		assert.Regexp(t, `^[1-9][0-9]*$`, id)
	})
	t.Run("test_write_stores_in_write_db", func(t *testing.T) {
		c.MustWrite("test_write_db", "stored")
		var value string
		require.NoError(t, testenv.QueryRow(d.write, `SELECT value FROM commands WHERE key = $1 ORDER BY id DESC LIMIT 1`, []any{"test_write_db"}, &value))
		assert.Equal(t, "stored", value)
	})
	t.Run("test_projector_updates_read_db", func(t *testing.T) {
		c.MustWrite("test_projection", "projected")
		testenv.WaitFor(t, 10*time.Second, "the read model row", func() bool {
			return layertest.CountRows(t, d.read, "records") > 0 && c.Read("test_projection").Body["success"] == true
		})
		var value string
		require.NoError(t, testenv.QueryRow(d.read, `SELECT value FROM records WHERE key = $1`, []any{"test_projection"}, &value))
		assert.Equal(t, "projected", value)
	})
	t.Run("test_read_query_from_read_db", func(t *testing.T) {
		c.MustWrite("test_read", "read_value")
		settle(t, tg)
		r := c.Read("test_read")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, true, r.Body["success"])
		assert.Equal(t, "read_value", r.Body["value"])
		assert.Equal(t, true, r.Body["from_read_db"])
		assert.NotNil(t, r.Body["created_at"])
		assert.NotNil(t, r.Body["updated_at"])
		assert.Nil(t, r.Body["message"])
	})
	t.Run("test_read_nonexistent_key", func(t *testing.T) {
		r := c.Read("nonexistent_key_12345")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{"success": false, "key": "nonexistent_key_12345", "value": nil, "created_at": nil,
			"updated_at": nil, "read_count": nil, "write_count": nil, "message": l7.MsgNotFound, "from_read_db": true}, r.Body)
		assert.Contains(t, strings.ToLower(l7.MsgNotFound), "not found")
	})
	t.Run("test_update_command", func(t *testing.T) {
		c.MustWrite("test_update", "value1")
		r := put(c, "test_update", "value2")
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.Equal(t, true, r.Body["success"])
		assert.Equal(t, l7.MsgUpdated, r.Body["message"])
		assert.NotEmpty(t, r.Body["event_id"])
		settle(t, tg)
		assert.Equal(t, "value2", c.Read("test_update").Body["value"])
	})
	t.Run("test_write_count_increments", func(t *testing.T) {
		for i := range 3 {
			c.MustWrite("test_count", fmt.Sprint("value", i))
		}
		settle(t, tg)
		var n int
		require.NoError(t, testenv.QueryRow(d.read, `SELECT write_count FROM records WHERE key = $1`, []any{"test_count"}, &n))
		assert.Equal(t, 3, n, "exactly one apply per command")
		assert.Equal(t, 3.0, c.Read("test_count").Body["write_count"])
	})
	t.Run("test_read_count_increments", func(t *testing.T) {
		c.MustWrite("test_read_count", "v")
		settle(t, tg)
		var counts []any
		for range 3 {
			counts = append(counts, c.Read("test_read_count").Body["read_count"])
		}
		assert.Equal(t, []any{1.0, 2.0, 3.0}, counts)
	})
	t.Run("test_eventual_consistency", func(t *testing.T) {
		c.MustWrite("test_consistency", "eventual")
		testenv.WaitFor(t, 10*time.Second, "the read to see the write", func() bool {
			r := c.Read("test_consistency")
			return r.Body["success"] == true && r.Body["value"] == "eventual"
		})
	})
	t.Run("test_stats_endpoint", func(t *testing.T) {
		r := c.Get("/stats")
		require.Equal(t, http.StatusOK, r.Status)
		for _, f := range []string{"write_db_pool_size", "read_db_pool_size", "events_published", "events_projected", "read_db_records", "write_db_records",
			"events_parked", "projection_lag_events", "projection_lag_seconds"} {
			v, ok := r.Body[f].(float64)
			if assert.True(t, ok, "%s is a number", f) {
				assert.GreaterOrEqual(t, v, 0.0, f)
			}
		}
		alias := c.Get("/cache-stats")
		require.Equal(t, http.StatusOK, alias.Status)
		assert.Equal(t, r.Body["events_published"], alias.Body["events_published"], "/cache-stats is the same document")
	})
	t.Run("test_event_publishing", func(t *testing.T) {
		before := statInt(t, c, "events_published")
		c.MustWrite("test_publish", "v")
		assert.Equal(t, before+1, statInt(t, c, "events_published"))
	})
	t.Run("test_event_projection", func(t *testing.T) {
		settle(t, tg)
		before := statInt(t, c, "events_projected")
		c.MustWrite("test_project", "v")
		testenv.WaitFor(t, 10*time.Second, "events_projected to increase", func() bool {
			return statInt(t, c, "events_projected") == before+1
		})
	})
	t.Run("test_multiple_writes_same_key", func(t *testing.T) {
		for i := range 5 {
			c.MustWrite("test_multi", fmt.Sprint("value_", i))
		}
		settle(t, tg)
		r := c.Read("test_multi")
		assert.Equal(t, "value_4", r.Body["value"], "the last command wins")
		assert.Equal(t, 5.0, r.Body["write_count"])
	})
	t.Run("test_write_db_independence", func(t *testing.T) {
		c.MustWrite("test_independence", "v")
		var n int
		require.NoError(t, testenv.QueryRow(d.write, `SELECT count(*) FROM commands WHERE key = $1`, []any{"test_independence"}, &n))
		assert.Equal(t, 1, n, "the command is in the write database as soon as the write is answered")
	})
	t.Run("test_read_db_denormalization", func(t *testing.T) {
		c.MustWrite("test_denorm", "v")
		settle(t, tg)
		var (
			key, value          string
			created, updated    *time.Time
			readCount, writeCnt *int
		)
		require.NoError(t, testenv.QueryRow(d.read, `SELECT key, value, created_at, updated_at, read_count, write_count FROM records WHERE key = $1`,
			[]any{"test_denorm"}, &key, &value, &created, &updated, &readCount, &writeCnt))
		assert.Equal(t, "test_denorm", key)
		assert.Equal(t, "v", value)
		assert.NotNil(t, created)
		assert.NotNil(t, updated)
		if assert.NotNil(t, readCount) && assert.NotNil(t, writeCnt) {
			assert.Equal(t, 0, *readCount)
			assert.Equal(t, 1, *writeCnt)
		}
	})
	t.Run("test_concurrent_writes", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() { layertest.NewClient(t, tg).MustWrite(fmt.Sprint("concurrent_", i), fmt.Sprint("value_", i)) })
		}
		wg.Wait()
		settle(t, tg)
		var n int
		require.NoError(t, testenv.QueryRow(d.read, `SELECT count(*) FROM records WHERE key LIKE 'concurrent_%'`, nil, &n))
		assert.Equal(t, 10, n)
	})
	t.Run("test_database_separation", func(t *testing.T) {
		r := c.Get("/stats")
		assert.GreaterOrEqual(t, r.Body["write_db_pool_size"], 0.0)
		assert.GreaterOrEqual(t, r.Body["read_db_pool_size"], 0.0)
		exists := func(url, table string) bool {
			var ok bool
			require.NoError(t, testenv.QueryRow(url, `SELECT to_regclass($1) IS NOT NULL`, []any{table}, &ok))
			return ok
		}
		assert.True(t, exists(d.write, "commands"))
		assert.True(t, exists(d.write, "outbox"))
		assert.False(t, exists(d.write, "records"))
		assert.True(t, exists(d.read, "records"))
		assert.False(t, exists(d.read, "commands"))
	})
	t.Run("PUT validates like POST and stores nothing", func(t *testing.T) {
		before := layertest.CountRows(t, d.write, "commands")
		for _, body := range []string{`{"key": "k"}`, `{"key": "a/b", "value": "v"}`, `{"key": "k", "value": 1}`, `not json`} {
			r := c.Do(http.MethodPut, "/write", []byte(body))
			assert.Equal(t, http.StatusUnprocessableEntity, r.Status, body)
		}
		assert.Equal(t, before, layertest.CountRows(t, d.write, "commands"))
		assert.Equal(t, before, layertest.CountRows(t, d.write, "outbox"))
	})
}

// With both databases stopped, every endpoint answers 503 fast; when they are back, the
// API and the projector carry on by themselves.
func TestDatabaseOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	d := dbs{write: pg.CreateDatabase(t), read: pg.CreateDatabase(t)}
	tg := startAPI(t, d, nil)
	runProjector(t, d)
	layertest.DatabaseOutage(t, tg, func() { pg.Stop(t) }, func() { pg.Start(t) })
	c := layertest.NewClient(t, tg)
	assert.Equal(t, int64(0), statInt(t, c, "events_parked"), "an outage parks nothing")
	assert.Equal(t, statInt(t, c, "events_published"), statInt(t, c, "events_projected"))
}

func TestHealthReportsTheProjector(t *testing.T) {
	d := sharedDBs(t)
	tg := startAPI(t, d, func(cfg *l7.Config) { cfg.StallAfter = 300 * time.Millisecond })
	c := layertest.NewClient(t, tg)

	r := c.Get("/health")
	require.Equal(t, http.StatusOK, r.Status, "the API serves without a projector")
	assert.Equal(t, "degraded", r.Body["status"])
	assert.Equal(t, l7.ProjectorNotRunning, r.Body["projector"])
	out, err := projectorHealthcheck(t, d)
	assert.Error(t, err, "the projector container's health check fails: %s", out)
	assert.Contains(t, out, "no projector has run yet")

	c.MustWrite("k", "v")
	testenv.WaitFor(t, 5*time.Second, "the projector to be reported stalled", func() bool {
		return c.Get("/health").Body["projector"] == l7.ProjectorStalled
	})
	r = c.Get("/health")
	assert.Equal(t, 1.0, r.Body["projection_lag_events"])
	assert.Greater(t, r.Body["projection_lag_seconds"], 0.3)

	runProjector(t, d)
	testenv.WaitFor(t, 10*time.Second, "the projector to be reported healthy", func() bool {
		r := c.Get("/health")
		return r.Body["status"] == "healthy" && r.Body["projector"] == l7.ProjectorHealthy
	})
	assert.Equal(t, "v", c.Read("k").Body["value"])
	out, err = projectorHealthcheck(t, d)
	assert.NoError(t, err, "the projector container's health check passes: %s", out)
}

// projectorHealthcheck runs `l7-projector -healthcheck` and returns its output.
func projectorHealthcheck(t testing.TB, d dbs) (string, error) {
	cmd := exec.Command(projectorBinary(t), "-healthcheck")
	cmd.Env = append(os.Environ(), projectorEnv(d)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRefusedEventIsParkedWhereStatsShowIt(t *testing.T) {
	tg, d := start(t)
	c := layertest.NewClient(t, tg)
	testenv.Exec(t, d.read, `ALTER TABLE records ADD CONSTRAINT no_poison CHECK (value <> 'poison')`)

	bad := c.MustWrite("bad", "poison").Body["event_id"]
	c.MustWrite("good", "v")
	settle(t, tg)
	r := c.Get("/stats")
	assert.Equal(t, 1.0, r.Body["events_parked"])
	assert.Equal(t, []any{mustFloat(t, bad)}, r.Body["parked_event_ids"])
	assert.Equal(t, r.Body["events_published"], r.Body["events_projected"].(float64)+1)
	assert.Equal(t, "v", c.Read("good").Body["value"])
	assert.Equal(t, false, c.Read("bad").Body["success"])
	assert.Equal(t, 1.0, c.Get("/health").Body["events_parked"])
}

func mustFloat(t testing.TB, v any) float64 {
	t.Helper()
	var f float64
	_, err := fmt.Sscan(fmt.Sprint(v), &f)
	require.NoError(t, err)
	return f
}

// ---------------------------------------------------------------------------------------
// The projector as a process: cmd/l7-projector, built once.

func TestMain(m *testing.M) { testenv.Main(m) }

func projectorBinary(t testing.TB) string {
	t.Helper()
	return testenv.Build(t, "github.com/dblayers/dblayers/cmd/l7-projector")
}

// projectorEnv is the projector's environment, added to the test process's own.
func projectorEnv(d dbs) []string {
	return []string{"WRITE_DB_URL=" + d.write, "READ_DB_URL=" + d.read,
		"PROJECTOR_POLL_INTERVAL=10ms", "PROJECTOR_BATCH_SIZE=10", "LOG_LEVEL=warn"}
}

// startProjectorProcess runs a projector process; it must exit on the SIGTERM it gets
// when the test ends.
func startProjectorProcess(t testing.TB, d dbs) *testenv.Process {
	t.Helper()
	p := testenv.StartProcess(t, projectorBinary(t), projectorEnv(d)...)
	t.Cleanup(func() { stopProjector(t, p, syscall.SIGTERM) })
	return p
}

// stopProjector sends sig and fails t if the projector does not exit within 10 s.
func stopProjector(t testing.TB, p *testenv.Process, sig syscall.Signal) {
	if !p.Stop(sig, 10*time.Second) {
		t.Errorf("projector pid %d did not exit on %v; log:\n%s", p.Cmd.Process.Pid, sig, p.Output())
	}
}

// The projector process is SIGKILLed, more than once, while a burst of writes goes on, and
// restarted; at the end two run at once. Every command must be applied exactly once:
// write_count equals the commands of each key, events_projected equals events_published.
func TestProjectorKilledDuringBurst(t *testing.T) {
	d := sharedDBs(t)
	tg := startAPI(t, d, nil)
	c := layertest.NewClient(t, tg)
	p := startProjectorProcess(t, d)
	waitHealthy(t, tg)

	const writers, keysPerWriter, writesPerKey = 10, 2, 60
	const total = writers * keysPerWriter * writesPerKey
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			wc := layertest.NewClient(t, tg)
			for i := range keysPerWriter * writesPerKey {
				key, value := fmt.Sprintf("burst-%d-%d", w, i%keysPerWriter), fmt.Sprint("v", i/keysPerWriter)
				var r layertest.Response
				if i%3 == 0 {
					r = wc.Write(key, value)
				} else {
					r = put(wc, key, value)
				}
				if !assert.Equal(t, http.StatusOK, r.Status, string(r.Raw)) {
					return
				}
			}
		})
	}

	var projected int64
	for range 3 {
		// Let the running process make progress, then kill it.
		at := projected + 50
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%d events projected", at), func() bool {
			projected = statInt(t, c, "events_projected")
			return projected >= at
		})
		published := statInt(t, c, "events_published")
		stopProjector(t, p, syscall.SIGKILL)
		t.Logf("SIGKILL with %d of %d published events projected", projected, published)
		p = startProjectorProcess(t, d)
	}
	startProjectorProcess(t, d) // and a second one at the same time
	wg.Wait()
	settle(t, tg)

	assert.Equal(t, int64(total), statInt(t, c, "events_published"))
	assert.Equal(t, int64(total), statInt(t, c, "events_projected"), "no event applied twice or skipped")
	assert.Zero(t, statInt(t, c, "events_parked"))
	for w := range writers {
		for k := range keysPerWriter {
			r := c.Read(fmt.Sprintf("burst-%d-%d", w, k))
			assert.Equal(t, float64(writesPerKey), r.Body["write_count"], "write_count of %s", r.Body["key"])
			assert.Equal(t, fmt.Sprint("v", writesPerKey-1), r.Body["value"])
		}
	}
}

func rebuild(t testing.TB, d dbs) cqrs.RebuildResult {
	t.Helper()
	cmd := exec.Command(projectorBinary(t), "-rebuild")
	cmd.Env = append(os.Environ(), projectorEnv(d)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "l7-projector -rebuild: %s", stderr.String())
	var res cqrs.RebuildResult
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
	return res
}

// `l7-projector -rebuild` recomputes the read model from the outbox: run on the live read
// database it changes nothing, run on an empty one it produces the same rows.
func TestRebuildEqualsLive(t *testing.T) {
	tg, d := start(t)
	c := layertest.NewClient(t, tg)
	for i := range 40 {
		key := fmt.Sprint("k", i%6)
		if i < 6 {
			c.MustWrite(key, fmt.Sprint("v", i))
		} else {
			require.Equal(t, http.StatusOK, put(c, key, fmt.Sprint("v", i)).Status)
		}
	}
	settle(t, tg)
	c.Read("k2")
	live := cqrstest.ReadModel(t, d.read)
	require.Len(t, live, 6)

	res := rebuild(t, d)
	assert.Equal(t, int64(40), res.Events)
	assert.Zero(t, res.Changed+res.Removed+res.Parked)
	assert.Equal(t, live, cqrstest.ReadModel(t, d.read), "rebuilt in place: unchanged")

	fresh := dbs{write: d.write, read: testenv.PostgresURL(t)}
	res = rebuild(t, fresh)
	assert.Equal(t, int64(6), res.Changed)
	for i := range live {
		live[i].ReadCount = 0 // reads are query-side state, not events
	}
	assert.Equal(t, live, cqrstest.ReadModel(t, fresh.read), "rebuilt from scratch: the same rows")

	c.MustWrite("k0", "after")
	settle(t, tg)
	r := c.Read("k0")
	assert.Equal(t, "after", r.Body["value"])
	assert.Equal(t, float64(live[0].WriteCount+1), r.Body["write_count"], "the live projector carries on after the rebuild")
}
