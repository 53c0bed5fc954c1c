// Package l10 is layer 10, "enterprise grade": layer 4's shard router over two PostgreSQL
// shards, each behind its own circuit breaker, under layer 5's two-tier cache (in-process
// L1 over Redis L2), with API-key or JWT authentication, per-identity rate limiting in
// Redis (GCRA), and Prometheus metrics. See README.md.
//
//	request → validate (422) → auth (401) → rate limit (429) → L1 → L2 → shard router → breaker → PostgreSQL
package l10

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/auth"
	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/metrics"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/ratelimit"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
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

	// Each shard's pool: DB_POOL_MIN_SIZE (2), DB_POOL_MAX_SIZE (20 here, the original's
	// L10 value), timeouts.
	Pool pgstore.PoolConfig `defaults:"DB_POOL_MAX_SIZE=20"`

	CacheTTL    time.Duration `env:"CACHE_TTL" default:"300s"`     // L2 entry lifetime (s)
	L1CacheSize int           `env:"L1_CACHE_SIZE" default:"1000"` // L1 entries (the original's hard-coded 1000)
	L1CacheTTL  time.Duration `env:"L1_CACHE_TTL" default:"60s"`   // L1 entry lifetime from its fill (the original's 60 s)
	// L1 entry lifetime while the invalidation subscription is down (s).
	L1DisconnectedTTL time.Duration `env:"L1_CACHE_DISCONNECTED_TTL" default:"1s"`
	// Redis pub/sub channel of L1 invalidations; instances sharing data must share it.
	// Empty: dblayers:l1-invalidate:db<N>, N being CACHE_L2_URL's database number.
	InvalidationChannel string `env:"L1_INVALIDATION_CHANNEL"`

	RateLimitRequests int           `env:"RATE_LIMIT_REQUESTS" default:"100"` // requests per window and identity
	RateLimitWindow   time.Duration `env:"RATE_LIMIT_WINDOW" default:"60s"`   // (s)
	// RateLimitFailOpen lets requests through while the limiter's Redis is down (true,
	// the original's choice); false answers them 503 "Rate limiter unavailable".
	RateLimitFailOpen bool          `env:"RATE_LIMIT_FAIL_OPEN" default:"true"`
	RateLimitTimeout  time.Duration `env:"RATE_LIMIT_TIMEOUT" default:"250ms"` // bound of one limiter call

	BreakerThreshold int           `env:"CIRCUIT_BREAKER_THRESHOLD" default:"5"` // consecutive failures that open a shard's breaker
	BreakerTimeout   time.Duration `env:"CIRCUIT_BREAKER_TIMEOUT" default:"30s"` // open time before a probe (s)

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
	l2       *redisclient.Client
	cache    *cache.Tiered
	limitRDB *redisclient.Client
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
	if s.l2, err = redisclient.New(cfg.CacheL2URL); err != nil {
		return nil, fmt.Errorf("CACHE_L2_URL: %w", err)
	}
	if s.limitRDB, err = redisclient.New(cfg.RateLimiterURL); err != nil {
		return nil, fmt.Errorf("RATE_LIMITER_URL: %w", err)
	}
	if s.pools, err = pgstore.OpenPools(ctx, []string{cfg.Shard1URL, cfg.Shard2URL}, shardNames, cfg.Pool, pgstore.Schema); err != nil {
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
		Bus: cache.NewBus(s.l2, channel, logger), Logger: logger,
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
