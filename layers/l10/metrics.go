package l10

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/metrics"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

// layerMetrics are L10's Prometheus series besides the shared HTTP ones.
type layerMetrics struct {
	http              *metrics.HTTP
	stores            *metrics.Stores
	cacheHits         map[record.Tier]prometheus.Counter // by the tier that answered: L1 or L2
	cacheMisses       prometheus.Counter
	rateLimited       prometheus.Counter
	rateLimiterErrors prometheus.Counter
	authFailures      *prometheus.CounterVec
}

func newLayerMetrics(reg *prometheus.Registry) *layerMetrics {
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_hits_total", Help: "Reads answered by a cache tier (L1 in-process, L2 Redis).",
	}, []string{"cache_level"})
	m := &layerMetrics{
		http:   metrics.NewHTTP(reg),
		stores: metrics.NewStores(reg),
		cacheHits: map[record.Tier]prometheus.Counter{
			record.FromMemory: hits.WithLabelValues(cache.Level(record.FromMemory)),
			record.FromCache:  hits.WithLabelValues(cache.Level(record.FromCache)),
		},
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cache_misses_total", Help: "Reads that missed both cache tiers and went to a shard.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rate_limit_exceeded_total", Help: "Requests refused with 429 by the rate limiter.",
		}),
		rateLimiterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rate_limiter_errors_total", Help: "Requests whose rate-limit check failed (limiter Redis unreachable); they passed or got 503 per RATE_LIMIT_FAIL_OPEN.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_failures_total", Help: "Requests refused with 401, by reason (missing, invalid_key, invalid_token, expired_token).",
		}, []string{"reason"}),
	}
	reg.MustRegister(hits, m.cacheMisses, m.rateLimited, m.rateLimiterErrors, m.authFailures)
	return m
}

// registerScraped adds the series read from s at scrape time: breaker states and pool
// statistics.
func registerScraped(reg *prometheus.Registry, s *Service) {
	metrics.NewGaugeFuncs(reg, "circuit_breaker_state",
		"State of a shard's circuit breaker: 0 closed, 1 half-open, 2 open.", "breaker", shardNames,
		func(name string) float64 { return s.Breaker(name).Value() })
	pools := map[string]func() pgstore.PoolStats{}
	for i, p := range s.pools {
		pools[shardNames[i]] = p.Stats
	}
	reg.MustRegister(metrics.NewPools(pools))
}
