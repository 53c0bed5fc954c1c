package metrics_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/metrics"
	"github.com/dblayers/dblayers/internal/metrics/metricstest"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

func TestHTTPByRoutePattern(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.NewHTTP(reg)
	r := httpapi.NewRouter(httpapi.Options{Layer: "test", Logger: slog.New(slog.DiscardHandler), Observe: m.Observe})
	r.Get("/read/{key}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	r.Get("/limited", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
	r.Handle("/metrics", metrics.Handler(reg))
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, path := range []string{"/read/a", "/read/b", "/read/c", "/limited", "/nowhere"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
	}
	fams := metricstest.Scrape(t, srv.URL+"/metrics")

	v, ok := fams.Value("http_requests_total", map[string]string{"method": "GET", "route": "/read/{key}", "status": "200"})
	require.True(t, ok, "series by route pattern: %v", fams.Series("http_requests_total"))
	assert.Equal(t, 3.0, v)
	v, _ = fams.Value("http_requests_total", map[string]string{"route": "/limited", "status": "429"})
	assert.Equal(t, 1.0, v)
	v, _ = fams.Value("http_requests_total", map[string]string{"route": "unmatched", "status": "404"})
	assert.Equal(t, 1.0, v)
	v, _ = fams.Value("http_request_duration_seconds", map[string]string{"route": "/read/{key}"})
	assert.Equal(t, 3.0, v, "a histogram sample per request")
	for _, s := range fams.Series("http_requests_total") {
		assert.NotContains(t, s["route"], "/read/a", "never a raw path")
	}
	_, ok = fams["go_goroutines"]
	assert.True(t, ok, "runtime metrics")
}

func TestHTTPCountsPanicsAs500(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.NewHTTP(reg)
	r := httpapi.NewRouter(httpapi.Options{Layer: "test", Logger: slog.New(slog.DiscardHandler), Observe: m.Observe})
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	r.Handle("/metrics", metrics.Handler(reg))
	srv := httptest.NewServer(r)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/panic")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	v, _ := metricstest.Scrape(t, srv.URL+"/metrics").Value("http_requests_total", map[string]string{"route": "/panic", "status": "500"})
	assert.Equal(t, 1.0, v)
}

type fakeStore struct {
	get func(ctx context.Context, key string) (record.Record, error)
	put func(ctx context.Context, key, value string) error
}

func (f *fakeStore) Get(ctx context.Context, key string) (record.Record, error) {
	return f.get(ctx, key)
}
func (f *fakeStore) Put(ctx context.Context, key, value string) error { return f.put(ctx, key, value) }

var errRejected = errors.New("breaker open")

func TestStoresAndPools(t *testing.T) {
	reg := metrics.NewRegistry()
	stores := metrics.NewStores(reg)
	results := map[string]error{
		"ok": nil, "missing": record.ErrNotFound, "down": record.Unavailable("Database", errors.New("refused")),
		"bad": errors.New("constraint"), "rejected": errRejected,
	}
	s := stores.Instrument("shard1", &fakeStore{
		get: func(_ context.Context, key string) (record.Record, error) { return record.Record{}, results[key] },
		put: func(context.Context, string, string) error { return nil },
	}, func(err error) bool { return errors.Is(err, errRejected) })
	for key := range results {
		_, _ = s.Get(context.Background(), key)
	}
	require.NoError(t, s.Put(context.Background(), "k", "v"))

	reg.MustRegister(metrics.NewPools(map[string]func() pgstore.PoolStats{
		"shard1": func() pgstore.PoolStats {
			return pgstore.PoolStats{PoolSize: 3, PoolAvailable: 1, InUse: 2, MaxSize: 20, MinSize: 2, AcquireCount: 7, WaitTimeMs: 1500}
		},
	}))
	var state atomic.Int64
	state.Store(2)
	metrics.NewGaugeFuncs(reg, "circuit_breaker_state", "help", "breaker", []string{"shard1", "shard2"},
		func(name string) float64 {
			if name == "shard1" {
				return float64(state.Load())
			}
			return 0
		})

	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	fams := metricstest.Scrape(t, srv.URL)

	for result, want := range map[string]float64{"ok": 1, "not_found": 1, "unavailable": 1, "error": 1, "rejected": 1} {
		v, ok := fams.Value("db_queries_total", map[string]string{"shard": "shard1", "operation": "get", "result": result})
		assert.True(t, ok, result)
		assert.Equal(t, want, v, result)
	}
	v, _ := fams.Value("db_query_duration_seconds", map[string]string{"shard": "shard1", "operation": "get"})
	assert.Equal(t, 4.0, v, "rejected calls never reached the database and are not timed")
	v, _ = fams.Value("db_queries_total", map[string]string{"operation": "put", "result": "ok"})
	assert.Equal(t, 1.0, v)

	for name, want := range map[string]float64{"db_pool_max_connections": 20, "db_pool_min_connections": 2,
		"active_connections": 2, "db_pool_acquires_total": 7, "db_pool_acquire_wait_seconds_total": 1.5} {
		v, ok := fams.Value(name, map[string]string{"shard": "shard1"})
		assert.True(t, ok, name)
		assert.Equal(t, want, v, name)
	}
	v, _ = fams.Value("db_pool_connections", map[string]string{"shard": "shard1", "state": "idle"})
	assert.Equal(t, 1.0, v)

	v, _ = fams.Value("circuit_breaker_state", map[string]string{"breaker": "shard1"})
	assert.Equal(t, 2.0, v)
	state.Store(0)
	v, _ = metricstest.Scrape(t, srv.URL).Value("circuit_breaker_state", map[string]string{"breaker": "shard1"})
	assert.Equal(t, 0.0, v, "read at scrape time")
}
