package l10

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
)

func isBreakerOpen(err error) bool { return errors.Is(err, breaker.ErrOpen) }

// shardError turns an open breaker into the original's message, as a fast 503 instead of
// a 500: "Circuit breaker shardN is open", the shard named by the router. An unreachable
// shard is already the router's 503 "shardN unavailable"; anything else passes unchanged.
func shardError(err error) error {
	var ue *record.UnavailableError
	if isBreakerOpen(err) && errors.As(err, &ue) {
		return httpapi.Errorf(http.StatusServiceUnavailable, "Circuit breaker %s is open", ue.Backend)
	}
	return err
}

type ctxKey int

const (
	writeKey ctxKey = iota
	readKey
)

// decodeWrite validates the /write body before authentication (the original's order:
// a malformed body is 422 even without a key) and hands it to the handler.
func decodeWrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _, err := httpapi.DecodeWrite(r)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), writeKey, req)))
	})
}

// validateKey is decodeWrite for the {key} of /read/{key}.
func validateKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := httpapi.PathKey(r)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), readKey, key)))
	})
}

// WriteResponse is the original's write answer.
type WriteResponse struct {
	Success bool   `json:"success"`
	Key     string `json:"key"`
	Shard   string `json:"shard"`  // the shard that stored the record
	Cached  bool   `json:"cached"` // whether the new value is in L1 and L2 (false if the cache fill failed)
	Message string `json:"message"`
}

// write stores the record on its shard, invalidates L1 (on every instance) and L2, then
// reads it back through the cache, which fills both tiers: the original's write-through,
// without its race (a fill can only store what the shard holds after this write, see
// cache.Tiered and cache.Aside).
func (s *Service) write(r *http.Request) (any, error) {
	req, _ := r.Context().Value(writeKey).(httpapi.WriteRequest)
	if err := s.cache.Put(r.Context(), req.Key, req.Value); err != nil {
		return nil, shardError(err)
	}
	name := s.Owner(req.Key)
	_, err := s.cache.Read(r.Context(), req.Key)
	resp := WriteResponse{Success: true, Key: req.Key, Shard: name, Cached: err == nil, Message: "Written to " + name + " and cached"}
	if !resp.Cached {
		resp.Message = "Written to " + name
	}
	return resp, nil
}

// ReadResponse is the original's read answer, with the record's timestamps added.
type ReadResponse struct {
	httpapi.ReadFields
	CacheHit   bool     `json:"cache_hit"`
	CacheLevel *string  `json:"cache_level"` // "L1", "L2", or null when a shard answered
	Shard      *string  `json:"shard"`       // the shard that answered; null for a cache hit or a missing key
	LatencyMs  *float64 `json:"latency_ms"`  // time of the lookup, ms (2 decimals); null for a missing key
}

// read answers GET /read/{key}: an L1 hit costs no network round trip besides the rate
// limiter's.
func (s *Service) read(w http.ResponseWriter, r *http.Request) {
	key, _ := r.Context().Value(readKey).(string)
	start := time.Now()
	read, err := s.cache.Read(r.Context(), key)
	latency := math.Round(float64(time.Since(start).Microseconds())/10) / 100 // ms, 2 decimals
	switch {
	case errors.Is(err, record.ErrNotFound):
		s.metrics.cacheMisses.Inc()
		httpapi.WriteJSON(w, http.StatusOK, ReadResponse{ReadFields: httpapi.NotFound(key, httpapi.MsgKeyNotFound)})
	case err != nil:
		httpapi.WriteError(w, r, shardError(err))
	default:
		resp := ReadResponse{ReadFields: httpapi.Found(read.Record), LatencyMs: &latency}
		if read.Tier == record.FromStore {
			s.metrics.cacheMisses.Inc()
			name := s.Owner(key)
			resp.Shard = &name
		} else {
			s.metrics.cacheHits[read.Tier].Inc()
			level := cache.Level(read.Tier)
			resp.CacheHit, resp.CacheLevel = true, &level
		}
		httpapi.WriteJSON(w, http.StatusOK, resp)
	}
}

// HealthResponse is the /health document: the original's fields, reporting the truth.
type HealthResponse struct {
	Status             string                   `json:"status"` // healthy, or degraded when anything below is not
	Layer              string                   `json:"layer"`
	Environment        string                   `json:"environment"`
	ShardsHealthy      map[string]bool          `json:"shards_healthy"`
	CachesHealthy      map[string]bool          `json:"caches_healthy"`       // L1 (in-process, always) and L2 (Redis PING)
	RateLimiterHealthy bool                     `json:"rate_limiter_healthy"` // the limiter's Redis answers PING
	CircuitBreakers    map[string]breaker.State `json:"circuit_breakers"`
}

// health pings every shard through its breaker (an open breaker answers at once; once its
// timeout has passed the ping is the probe that can close it), L2 and the limiter, all at
// once. Some part down → 200 "degraded"; no shard up → 503, as L4.
func (s *Service) health(r *http.Request) (any, error) {
	ctx := r.Context()
	errs := make([]error, len(s.breakers))
	var l2Err, limiterErr error
	var wg sync.WaitGroup
	for i, b := range s.breakers {
		wg.Go(func() { errs[i] = b.Ping(ctx) })
	}
	wg.Go(func() { l2Err = redisclient.Ping(ctx, s.l2) })
	wg.Go(func() { limiterErr = s.limiter.Ping(ctx) })
	wg.Wait()

	h := HealthResponse{
		Status: "healthy", Layer: Layer, Environment: s.cfg.Environment,
		ShardsHealthy: map[string]bool{}, CachesHealthy: map[string]bool{"L1": true, "L2": l2Err == nil},
		RateLimiterHealthy: limiterErr == nil, CircuitBreakers: s.breakerStates(),
	}
	down := 0
	for i, err := range errs {
		h.ShardsHealthy[shardNames[i]] = err == nil
		if err != nil {
			down++
		}
	}
	if down == len(errs) {
		return nil, httpapi.Unhealthy("Service unhealthy: no shard available", errors.Join(errs...))
	}
	if down > 0 || l2Err != nil || limiterErr != nil {
		h.Status = "degraded"
	}
	return h, nil
}

// breakerStates are the shards' breakers and the guards of the two Redis servers (the
// shared cache tier and the rate limiter's), which skip a Redis that fails.
func (s *Service) breakerStates() map[string]breaker.State {
	states := make(map[string]breaker.State, len(s.breakers)+2)
	for _, b := range s.breakers {
		states[b.Name()] = b.State()
	}
	states["redis_cache"] = s.l2.State()
	states["redis_rate_limiter"] = s.limitRDB.State()
	return states
}

// Stats is the /stats (and /cache-stats) document: the original's sections, with live
// numbers.
type Stats struct {
	Environment     string                   `json:"environment"`
	Shards          map[string]ShardStats    `json:"shards"`
	Cache           CacheStats               `json:"cache"`
	CircuitBreakers map[string]breaker.State `json:"circuit_breakers"`
	RateLimiting    RateLimitStats           `json:"rate_limiting"`
	Features        map[string]bool          `json:"features"`
}

// ShardStats are a shard's pool numbers: the original's pool_min and pool_max, then the
// live pgxpool statistics (as L1's /pool-stats).
type ShardStats struct {
	PoolMin int32 `json:"pool_min"`
	PoolMax int32 `json:"pool_max"`
	pgstore.PoolStats
}

// CacheStats describe both tiers; hits and misses are this process's.
type CacheStats struct {
	L1Size      int     `json:"l1_size"`
	L1MaxSize   int     `json:"l1_maxsize"`
	L2Keys      int64   `json:"l2_keys"` // record:* keys in the L2 Redis
	L1Hits      int64   `json:"l1_hits"`
	L1Misses    int64   `json:"l1_misses"`
	L2Available bool    `json:"l2_available"`
	L2Hits      int64   `json:"l2_hits"`
	L2Misses    int64   `json:"l2_misses"`
	HitRate     float64 `json:"hit_rate"` // share of reads answered by L1 or L2, percent
	// L1Subscribed: other instances' invalidations reach this one now (while not, L1
	// entries live only briefly; see cache.TieredOptions.DisconnectedTTL).
	L1Subscribed bool `json:"l1_invalidation_subscribed"`
}

// RateLimitStats describe the limit.
type RateLimitStats struct {
	Enabled       bool `json:"enabled"`
	MaxRequests   int  `json:"max_requests"`
	WindowSeconds int  `json:"window_seconds"`
	FailOpen      bool `json:"fail_open"` // requests pass while the limiter is down
	Healthy       bool `json:"healthy"`
}

func (s *Service) stats(r *http.Request) (any, error) {
	cs := s.cache.Stats(r.Context())
	_, jwt := s.auth.JWT()
	st := Stats{
		Environment: s.cfg.Environment,
		Shards:      map[string]ShardStats{},
		Cache: CacheStats{
			L1Size: cs.L1Size, L1MaxSize: cs.L1MaxSize, L2Keys: cs.L2Keys, L1Hits: cs.L1Hits, L1Misses: cs.L1Misses,
			L2Available: cs.L2Available, L2Hits: cs.L2Hits, L2Misses: cs.L2Misses,
			HitRate:      cs.HitRate(),
			L1Subscribed: cs.Subscribed,
		},
		CircuitBreakers: s.breakerStates(),
		RateLimiting: RateLimitStats{
			Enabled: true, MaxRequests: s.cfg.RateLimitRequests, WindowSeconds: int(s.cfg.RateLimitWindow / time.Second),
			FailOpen: s.cfg.RateLimitFailOpen, Healthy: s.limiter.Ping(r.Context()) == nil,
		},
		Features: map[string]bool{
			"authentication": s.auth.Enabled(), "jwt": jwt, "metrics": s.cfg.EnableMetrics,
			"circuit_breakers": true, "rate_limiting": true, "multi_tier_cache": true, "database_sharding": true,
		},
	}
	for i, p := range s.pools {
		ps := p.Stats()
		st.Shards[shardNames[i]] = ShardStats{PoolMin: ps.MinSize, PoolMax: ps.MaxSize, PoolStats: ps}
	}
	return st, nil
}
