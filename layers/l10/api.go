package l10

import (
	"net/http"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/auth"
)

// apiInfo describes the API, served at /openapi.json, /docs and /redoc: /write and
// /read/{key} need an API key or a bearer token (unless authentication is off) and are
// rate-limited; the rest is open, the docs too.
func apiInfo(secured bool) apidoc.Info {
	return apidoc.Info{
		Title: "L10 · enterprise",
		Description: "Everything together: two shards behind circuit breakers, an in-process L1 and a Redis L2 " +
			"cache, API keys or JWTs, a per-caller rate limit and Prometheus metrics.\n\n" +
			"In \"Try it out\", press **Authorize** and give an API key (in development mode `" + auth.DevAPIKey + "`).",
		Secured: secured,
	}
}

var (
	opWrite = func() apidoc.Operation {
		op := apidoc.WriteOp("Writes to the shard that owns the key, then fills both cache tiers.",
			WriteResponse{Success: true, Key: "user:1", Shard: "shard1", Cached: true, Message: "Written to shard1 and cached"})
		op.Secured, op.RateLimited = true, true
		return op
	}()
	opRead = func() apidoc.Operation {
		l1, latency := "L1", 0.12
		op := apidoc.ReadOp("Reads from L1, else L2, else the owning shard.",
			ReadResponse{ReadFields: apidoc.Found(), CacheHit: true, CacheLevel: &l1, LatencyMs: &latency})
		op.Secured, op.RateLimited = true, true
		return op
	}()
	opHealth = apidoc.HealthOp("Degraded when a shard, the cache or the rate limiter is down; 503 when no shard answers.",
		HealthResponse{Status: "healthy", Layer: Layer, Environment: "development",
			ShardsHealthy: map[string]bool{"shard1": true, "shard2": true}, CachesHealthy: map[string]bool{"L1": true, "L2": true},
			RateLimiterHealthy: true}, "Service unhealthy: no shard available")
	opStats   = apidoc.StatsOp("Shards, caches, circuit breakers and the rate limit's settings.", Stats{Environment: "development"})
	opMetrics = apidoc.Operation{
		Summary:     "Prometheus metrics",
		Description: "The Prometheus text format; 404 when ENABLE_METRICS=false.",
		OKText:      "# TYPE http_requests_total counter\nhttp_requests_total{method=\"GET\",route=\"/read/{key}\",status=\"200\"} 42\n",
		Offline:     true,
		Errors:      []apidoc.Answer{{Status: http.StatusNotFound, Detail: "Metrics disabled"}},
	}
)
