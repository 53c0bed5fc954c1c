// Package metrics exposes a service's numbers to Prometheus (client_golang) from a
// private registry: HTTP requests by route pattern and status, store queries by shard,
// connection-pool statistics read at scrape time, and gauges read from a function at
// scrape time (circuit-breaker states). The only package-level state is the collectors'
// descriptions; every registry is the caller's.
//
// Labels never carry raw paths or keys: a route is its pattern (/read/{key}), so the
// number of series is bounded by the number of routes.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

// LatencyBuckets are the histogram buckets for request and query durations, in seconds:
// fine below a millisecond (an in-process cache hit) up to the 10 s a request may take.
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewRegistry returns a private registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// HTTP counts and times requests.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTP registers http_requests_total{method,route,status} and
// http_request_duration_seconds{method,route,status} on reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	m := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by method, route pattern and status code.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by method, route pattern and status code.",
			Buckets: LatencyBuckets,
		}, []string{"method", "route", "status"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Observe counts one answered request; it is httpapi.Options.Observe, so the router's
// access log, which already times every request and knows its route and status, feeds it.
func (m *HTTP) Observe(method, route string, status int, elapsed time.Duration) {
	labels := []string{method, route, statusText(status)}
	m.requests.WithLabelValues(labels...).Inc()
	m.duration.WithLabelValues(labels...).Observe(elapsed.Seconds())
}

// statusTexts are the status labels of the common codes, made once.
var statusTexts = func() map[int]string {
	m := map[int]string{}
	for _, c := range []int{200, 400, 401, 404, 405, 413, 422, 429, 499, 500, 503} {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func statusText(code int) string {
	if s, ok := statusTexts[code]; ok {
		return s
	}
	return strconv.Itoa(code)
}

// Stores counts and times the queries of record stores, per shard.
type Stores struct {
	queries  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewStores registers db_queries_total{shard,operation,result} and
// db_query_duration_seconds{shard,operation} on reg.
func NewStores(reg prometheus.Registerer) *Stores {
	m := &Stores{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "db_queries_total",
			Help: "Record store calls by shard, operation (get, put) and result (ok, not_found, error, unavailable, rejected by an open circuit breaker).",
		}, []string{"shard", "operation", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "db_query_duration_seconds",
			Help:    "Time of the record store calls that reached the database, by shard and operation.",
			Buckets: LatencyBuckets,
		}, []string{"shard", "operation"}),
	}
	reg.MustRegister(m.queries, m.duration)
	return m
}

// Instrument wraps next so that its calls are counted and timed as shard's. Calls that
// isRejected says never reached the database (an open breaker) are counted as "rejected"
// and not timed.
func (m *Stores) Instrument(shard string, next record.Store, isRejected func(error) bool) record.Store {
	return &instrumented{m: m, shard: shard, next: next, rejected: isRejected}
}

type instrumented struct {
	m        *Stores
	shard    string
	next     record.Store
	rejected func(error) bool
}

func (s *instrumented) Get(ctx context.Context, key string) (record.Record, error) {
	start := time.Now()
	rec, err := s.next.Get(ctx, key)
	s.observe("get", start, err)
	return rec, err
}

func (s *instrumented) Put(ctx context.Context, key, value string) error {
	start := time.Now()
	err := s.next.Put(ctx, key, value)
	s.observe("put", start, err)
	return err
}

func (s *instrumented) observe(op string, start time.Time, err error) {
	result := "ok"
	switch {
	case err == nil:
	case s.rejected != nil && s.rejected(err):
		s.m.queries.WithLabelValues(s.shard, op, "rejected").Inc()
		return
	case errors.Is(err, record.ErrNotFound):
		result = "not_found"
	case record.IsUnavailable(err):
		result = "unavailable"
	default:
		result = "error"
	}
	s.m.queries.WithLabelValues(s.shard, op, result).Inc()
	s.m.duration.WithLabelValues(s.shard, op).Observe(time.Since(start).Seconds())
}

// Pools is a collector of connection-pool statistics, read from the pools when
// Prometheus scrapes (never stale, nothing to update on the request path).
type Pools struct {
	pools map[string]func() pgstore.PoolStats
}

var (
	poolConns = prometheus.NewDesc("db_pool_connections",
		"Connections of the pool now, by state: idle, in_use, total (idle + in use + being opened).", []string{"shard", "state"}, nil)
	poolMax = prometheus.NewDesc("db_pool_max_connections",
		"The pool's configured maximum size (DB_POOL_MAX_SIZE).", []string{"shard"}, nil)
	poolMin = prometheus.NewDesc("db_pool_min_connections",
		"The pool's configured minimum size (DB_POOL_MIN_SIZE).", []string{"shard"}, nil)
	poolWaiting = prometheus.NewDesc("db_pool_requests_waiting",
		"Requests waiting for a connection now.", []string{"shard"}, nil)
	poolActive = prometheus.NewDesc("active_connections",
		"Connections in use by requests now (the original's gauge, which reported idle ones).", []string{"shard"}, nil)
	poolAcquires = prometheus.NewDesc("db_pool_acquires_total",
		"Connections handed out by the pool.", []string{"shard"}, nil)
	poolEmptyAcquires = prometheus.NewDesc("db_pool_empty_acquires_total",
		"Acquires that found no idle connection and had to wait for one.", []string{"shard"}, nil)
	poolWaitSeconds = prometheus.NewDesc("db_pool_acquire_wait_seconds_total",
		"Time spent waiting in those acquires.", []string{"shard"}, nil)
	poolCanceled = prometheus.NewDesc("db_pool_canceled_acquires_total",
		"Acquires abandoned (timeout or client gone).", []string{"shard"}, nil)
	poolOpened = prometheus.NewDesc("db_pool_connections_opened_total",
		"Connections the pool opened.", []string{"shard"}, nil)
)

// NewPools returns a collector of the named pools' statistics (name → the pool's
// Stats method); register it on a registry.
func NewPools(pools map[string]func() pgstore.PoolStats) *Pools { return &Pools{pools: pools} }

// Describe implements prometheus.Collector.
func (p *Pools) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolConns, poolMax, poolMin, poolWaiting, poolActive, poolAcquires,
		poolEmptyAcquires, poolWaitSeconds, poolCanceled, poolOpened} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p *Pools) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for name, stats := range p.pools {
		s := stats()
		gauge(poolConns, float64(s.PoolAvailable), name, "idle")
		gauge(poolConns, float64(s.InUse), name, "in_use")
		gauge(poolConns, float64(s.PoolSize), name, "total")
		gauge(poolMax, float64(s.MaxSize), name)
		gauge(poolMin, float64(s.MinSize), name)
		gauge(poolWaiting, float64(s.RequestsWaiting), name)
		gauge(poolActive, float64(s.InUse), name)
		counter(poolAcquires, float64(s.AcquireCount), name)
		counter(poolEmptyAcquires, float64(s.WaitCount), name)
		counter(poolWaitSeconds, s.WaitTimeMs/1000, name)
		counter(poolCanceled, float64(s.CanceledCount), name)
		counter(poolOpened, float64(s.NewConnsCount), name)
	}
}

// NewGaugeFuncs registers one gauge series per name, labelled label=name, whose value is
// read from value(name) at scrape time (e.g. circuit_breaker_state{breaker="shard1"}).
func NewGaugeFuncs(reg prometheus.Registerer, metric, help, label string, names []string, value func(name string) float64) {
	for _, name := range names {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metric, Help: help, ConstLabels: prometheus.Labels{label: name},
		}, func() float64 { return value(name) }))
	}
}
