// Package l10 is layer 10, "enterprise grade": layer 4's shard router over two PostgreSQL
// shards, each behind its own circuit breaker, under layer 5's two-tier cache (in-process
// L1 over Redis L2), with API-key or JWT authentication, per-identity rate limiting in
// Redis (GCRA), and Prometheus metrics. See README.md.
//
//	request → validate (422) → auth (401) → rate limit (429) → L1 → L2 → shard router → breaker → PostgreSQL
package l10

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/auth"
	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/metrics"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/ratelimit"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/shard"
)

// Layer is the health "layer" string.
const Layer = "10-enterprise-grade"

// Config is L10's environment: the original's variables and defaults, and what this port
// adds (auth sources, L1 sizing, limiter failure mode).
type Config struct {
	Server    httpapi.ServerConfig
	Shard1URL string `env:"DB_SHARD1_URL" default:"postgresql://dbuser:dbpassword@localhost:5453/enterprise_db"`
	Shard2URL string `env:"DB_SHARD2_URL" default:"postgresql://dbuser:dbpassword@localhost:5454/enterprise_db"`
	// CacheL2URL is the Redis of the L2 cache (and of the L1 invalidation messages).
	CacheL2URL string `env:"CACHE_L2_URL" default:"redis://localhost:6391"`
	// RateLimiterURL is the Redis that keeps the rate limits.
	RateLimiterURL string `env:"RATE_LIMITER_URL" default:"redis://localhost:6392"`

	PoolMinSize int32 `env:"DB_POOL_MIN_SIZE" default:"2"`  // connections kept open per shard
	PoolMaxSize int32 `env:"DB_POOL_MAX_SIZE" default:"20"` // most connections per shard
	Timeouts    pgstore.Timeouts

	CacheTTL    time.Duration `env:"CACHE_TTL" default:"300"`      // L2 entry lifetime (s)
	L1CacheSize int           `env:"L1_CACHE_SIZE" default:"1000"` // L1 entries (the original's hard-coded 1000)
	L1CacheTTL  time.Duration `env:"L1_CACHE_TTL" default:"60"`    // L1 entry lifetime from its fill (the original's 60 s)
	// L1 entry lifetime while the invalidation subscription is down (s).
	L1DisconnectedTTL time.Duration `env:"L1_CACHE_DISCONNECTED_TTL" default:"1"`
	// Redis pub/sub channel of L1 invalidations; instances sharing data must share it.
	// Empty: dblayers:l1-invalidate:db<N>, N being CACHE_L2_URL's database number.
	InvalidationChannel string `env:"L1_INVALIDATION_CHANNEL"`

	RateLimitRequests int           `env:"RATE_LIMIT_REQUESTS" default:"100"` // requests per window and identity
	RateLimitWindow   time.Duration `env:"RATE_LIMIT_WINDOW" default:"60"`    // (s)
	// RateLimitFailOpen lets requests through while the limiter's Redis is down (true,
	// the original's choice); false answers them 503 "Rate limiter unavailable".
	RateLimitFailOpen bool          `env:"RATE_LIMIT_FAIL_OPEN" default:"true"`
	RateLimitTimeout  time.Duration `env:"RATE_LIMIT_TIMEOUT" default:"250ms"` // bound of one limiter call

	BreakerThreshold int           `env:"CIRCUIT_BREAKER_THRESHOLD" default:"5"` // consecutive failures that open a shard's breaker
	BreakerTimeout   time.Duration `env:"CIRCUIT_BREAKER_TIMEOUT" default:"30"`  // open time before a probe (s)

	Auth auth.Config
	// Environment is echoed in /health and /stats; "development" also accepts the
	// development API key (see auth.Config.DevMode).
	Environment   string `env:"ENVIRONMENT" default:"production"`
	EnableMetrics bool   `env:"ENABLE_METRICS" default:"true"` // serve /metrics
}

// RateLimitPrefix namespaces this layer's keys in the limiter's Redis: a limit is kept
// under rate:l10:<identity> (auth.Identity.Key).
const RateLimitPrefix = "l10:"

// shardNames are the original's names of the two shards, in placement order: md5(key)
// mod 2 = 0 is shard1.
var shardNames = []string{"shard1", "shard2"}

// Service is a running L10.
type Service struct {
	cfg      Config
	pools    []*pgstore.Pool
	breakers []*breaker.Store
	router   *shard.Router
	l2       *redis.Client
	cache    *cache.Tiered
	limitRDB *redis.Client
	limiter  *ratelimit.Limiter
	auth     *auth.Authenticator
	metrics  *layerMetrics
	handler  http.Handler
}

// New checks the authentication settings (refusing to start without any key), connects
// to both shards (required at start-up, to create the records table) and to the two
// Redis servers (optional: without L2 reads go to the shards; without the limiter
// requests pass or get 503, see RATE_LIMIT_FAIL_OPEN), and returns the service.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	if strings.EqualFold(cfg.Environment, "development") {
		cfg.Auth.DevMode = true
	}
	authn, err := auth.NewAuthenticator(cfg.Auth)
	if err != nil {
		return nil, err
	}
	logAuth(logger, authn)

	s := &Service{cfg: cfg, auth: authn}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if s.l2, err = cache.NewRedis(cfg.CacheL2URL); err != nil {
		return nil, fmt.Errorf("CACHE_L2_URL: %w", err)
	}
	if s.limitRDB, err = cache.NewRedis(cfg.RateLimiterURL); err != nil {
		return nil, fmt.Errorf("RATE_LIMITER_URL: %w", err)
	}
	if s.pools, err = pgstore.OpenPools(ctx, []string{cfg.Shard1URL, cfg.Shard2URL}, shardNames, pgstore.PoolConfig{
		Timeouts: cfg.Timeouts, MinConns: cfg.PoolMinSize, MaxConns: cfg.PoolMaxSize,
	}, pgstore.Schema); err != nil {
		return nil, err
	}

	reg := metrics.NewRegistry()
	s.metrics = newLayerMetrics(reg)
	stores := make([]record.Store, len(s.pools))
	for i, p := range s.pools {
		b, err := breaker.New(shardNames[i], pgstore.NewStore(p), breaker.Settings{
			Threshold: uint32(max(cfg.BreakerThreshold, 0)), Timeout: cfg.BreakerTimeout,
			OnStateChange: func(name string, from, to breaker.State) {
				logger.Warn("circuit breaker state changed", "breaker", name, "from", from, "to", to)
			},
		})
		if err != nil {
			return nil, err
		}
		s.breakers = append(s.breakers, b)
		stores[i] = s.metrics.stores.Instrument(shardNames[i], b, isBreakerOpen)
	}
	if s.router, err = shard.NewRouter(shard.Modulo, stores, shardNames...); err != nil {
		return nil, err
	}
	registerScraped(reg, s)

	channel := cfg.InvalidationChannel
	if channel == "" {
		channel = cache.DefaultChannel(s.l2.Options().DB)
	}
	// L1 over L2 over the shard router: the read path in one line.
	s.cache, err = cache.NewTiered(cache.NewAside(s.l2, s.router, cfg.CacheTTL, logger), s.l2, cache.TieredOptions{
		L1Size: cfg.L1CacheSize, L1TTL: cfg.L1CacheTTL, DisconnectedTTL: cfg.L1DisconnectedTTL,
		Bus: cache.NewBus(s.l2, channel, logger), Render: renderL1, Logger: logger,
	})
	if err != nil {
		return nil, err
	}

	if s.limiter, err = ratelimit.New(s.limitRDB, ratelimit.Config{
		Requests: cfg.RateLimitRequests, Window: cfg.RateLimitWindow, FailOpen: cfg.RateLimitFailOpen,
		Timeout: cfg.RateLimitTimeout, Prefix: RateLimitPrefix,
	}, logger); err != nil {
		return nil, err
	}
	s.limiter.OnReject = s.metrics.rateLimited.Inc
	s.limiter.OnError = s.metrics.rateLimiterErrors.Inc
	authn.OnFailure = func(reason string) { s.metrics.authFailures.WithLabelValues(reason).Inc() }
	if err := s.limiter.Ping(ctx); err != nil {
		logger.Warn("rate limiter unreachable at start-up", "fail_open", cfg.RateLimitFailOpen, "error", err)
	}

	s.handler = s.routes(logger, reg)
	ok = true
	return s, nil
}

// routes builds the HTTP API. Middleware order: the shared ones (request id, real IP,
// access log, which also feeds the HTTP metrics, recovery, body limit); on /write and
// /read/{key}: validation (422) → authentication (401) → rate limit (429) → handler, the
// original's order. /health, /stats, /cache-stats and /metrics are open, as in the
// original: they carry no record data (see README.md).
func (s *Service) routes(logger *slog.Logger, reg *prometheus.Registry) http.Handler {
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: s.cfg.Server.Limits(),
		Observe: s.metrics.http.Observe}, apiInfo(s.auth.Enabled()))
	limit := s.limiter.Middleware(auth.IdentityKey)
	r.With(decodeWrite, s.auth.Middleware, limit).Post("/write", httpapi.Handle(s.write), opWrite)
	r.With(validateKey, s.auth.Middleware, limit).Get("/read/{key}", s.read, opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	if s.cfg.EnableMetrics {
		r.Get("/metrics", metrics.Handler(reg).ServeHTTP, opMetrics)
	} else {
		r.Get("/metrics", httpapi.Handle(func(*http.Request) (any, error) {
			return nil, httpapi.Errorf(http.StatusNotFound, "Metrics disabled")
		}), opMetrics)
	}
	return r
}

func logAuth(logger *slog.Logger, a *auth.Authenticator) {
	if !a.Enabled() {
		logger.Warn("authentication is disabled (AUTH_ENABLED=false): every request is anonymous, rate limits are per client address")
		return
	}
	alg, jwt := a.JWT()
	if !jwt {
		alg = "off"
	}
	logger.Info("authentication", "api_keys", a.Keys(), "jwt", alg)
	if a.DevMode() {
		logger.Warn("development mode: the development API key " + auth.DevAPIKey + " is accepted; never run so in production")
	}
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close stops the invalidation listener, closes both Redis clients, then the pools.
func (s *Service) Close() {
	if s.cache != nil {
		s.cache.Close()
	}
	if s.l2 != nil {
		s.l2.Close()
	}
	if s.limitRDB != nil {
		s.limitRDB.Close()
	}
	for _, p := range s.pools {
		p.Close()
	}
}

// Owner is the name of the shard that owns key ("shard1" or "shard2").
func (s *Service) Owner(key string) string { return shardNames[s.router.Owner(key)] }

// Breaker is the state of the named shard's circuit breaker.
func (s *Service) Breaker(name string) breaker.State {
	for _, b := range s.breakers {
		if b.Name() == name {
			return b.State()
		}
	}
	return ""
}

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
	_, _, err := s.cache.Lookup(r.Context(), req.Key)
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

// read answers GET /read/{key}. An L1 hit is sent as the bytes rendered when the entry was
// first read (renderL1) followed by this read's latency: a hot key costs a map lookup, no
// encoding and no network round trip besides the rate limiter's.
func (s *Service) read(w http.ResponseWriter, r *http.Request) {
	key, _ := r.Context().Value(readKey).(string)
	start := time.Now()
	prefix, rec, level, err := s.cache.LookupRendered(r.Context(), key)
	latency := math.Round(float64(time.Since(start).Microseconds())/10) / 100 // ms, 2 decimals
	switch {
	case prefix != nil:
		s.metrics.cacheHits[cache.LevelL1].Inc()
		body := make([]byte, 0, len(prefix)+16)
		body = append(body, prefix...)
		body = strconv.AppendFloat(body, latency, 'f', -1, 64)
		body = append(body, "}\n"...)
		w.Header()["Content-Type"] = contentTypeJSON
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	case errors.Is(err, record.ErrNotFound):
		s.metrics.cacheMisses.Inc()
		httpapi.WriteJSON(w, http.StatusOK, ReadResponse{ReadFields: httpapi.NotFound(key, httpapi.MsgKeyNotFound)})
	case err != nil:
		httpapi.WriteError(w, r, shardError(err))
	default:
		resp := ReadResponse{ReadFields: httpapi.Found(rec), LatencyMs: &latency}
		if level == cache.LevelL3 {
			s.metrics.cacheMisses.Inc()
			name := s.Owner(key)
			resp.Shard = &name
		} else {
			s.metrics.cacheHits[level].Inc()
			l := string(level)
			resp.CacheHit, resp.CacheLevel = true, &l
		}
		httpapi.WriteJSON(w, http.StatusOK, resp)
	}
}

var contentTypeJSON = []string{"application/json"}

// renderL1 encodes an L1 answer as httpapi.WriteJSON would, up to the latency: the
// bytes end with `"latency_ms":` and each read appends its own latency and the `}`.
func renderL1(rec record.Record) []byte {
	l1 := string(cache.LevelL1)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ReadResponse{ReadFields: httpapi.Found(rec), CacheHit: true, CacheLevel: &l1}); err != nil {
		return nil // cannot happen for these types; a nil body falls back to the slow path
	}
	body, ok := bytes.CutSuffix(buf.Bytes(), []byte("null}\n")) // the template's latency_ms
	if !ok || !bytes.HasSuffix(body, []byte(`"latency_ms":`)) {
		return nil
	}
	return body
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
	wg.Go(func() { l2Err = cache.Ping(ctx, s.l2) })
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

func (s *Service) breakerStates() map[string]breaker.State {
	states := make(map[string]breaker.State, len(s.breakers))
	for _, b := range s.breakers {
		states[b.Name()] = b.State()
	}
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

// layerMetrics are L10's Prometheus series besides the shared HTTP ones.
type layerMetrics struct {
	http              *metrics.HTTP
	stores            *metrics.Stores
	cacheHits         map[cache.Level]prometheus.Counter
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
		cacheHits: map[cache.Level]prometheus.Counter{
			cache.LevelL1: hits.WithLabelValues(string(cache.LevelL1)),
			cache.LevelL2: hits.WithLabelValues(string(cache.LevelL2)),
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
