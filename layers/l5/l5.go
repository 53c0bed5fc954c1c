// Package l5 is layer 5, a multi-tier cache: an in-process L1 (bounded by size and TTL)
// over the Redis L2 of layer 2 over the pooled PostgreSQL of layer 1 (L3). Concurrent
// misses of one key share one database read, writes invalidate L1 on every instance
// through Redis pub/sub, and /clear-cache clears this layer's keys only (see README.md).
package l5

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
)

// Layer is the health "layer" string.
const Layer = "5-multi-tier-cache"

// Config is L5's environment.
type Config struct {
	Server      httpapi.ServerConfig
	DatabaseURL string        `env:"DATABASE_URL" default:"postgresql://dbuser:dbpassword@localhost:5445/appdb"`
	RedisURL    string        `env:"REDIS_URL" default:"redis://localhost:6382"`
	L1CacheSize int           `env:"L1_CACHE_SIZE" default:"100"` // most records kept in this process's L1
	L1CacheTTL  time.Duration `env:"L1_CACHE_TTL" default:"60s"`  // L1 entry lifetime from its fill (s)
	L2CacheTTL  time.Duration `env:"L2_CACHE_TTL" default:"300s"` // Redis entry lifetime (s)
	// L1 entry lifetime while the invalidation subscription is down (s): the staleness
	// bound across instances when Redis pub/sub cannot deliver.
	L1DisconnectedTTL time.Duration `env:"L1_CACHE_DISCONNECTED_TTL" default:"1s"`
	// Redis pub/sub channel of L1 invalidations; instances sharing data must share it.
	// Empty: dblayers:l1-invalidate:db<N>, N being REDIS_URL's database number.
	InvalidationChannel string `env:"L1_INVALIDATION_CHANNEL"`
	Pool                pgstore.PoolConfig
}

// Service is a running L5.
type Service struct {
	pool    *pgstore.Pool
	rdb     *redisclient.Client
	db      *pgstore.Store
	cache   *cache.Tiered
	handler http.Handler
}

// New connects to PostgreSQL (required) and Redis (optional: without it reads are served
// from L1, then PostgreSQL), creates the records table and returns the service.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	rdb, err := redisclient.New(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	pool, err := pgstore.OpenPool(ctx, cfg.DatabaseURL, cfg.Pool, pgstore.Schema)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	channel := cfg.InvalidationChannel
	if channel == "" {
		channel = cache.DefaultChannel(rdb.Options().DB)
	}
	db := pgstore.NewStore(pool)
	// L1 over L2 over L3: the whole layer in one line.
	tiered, err := cache.NewTiered(cache.NewAside(rdb, db, cfg.L2CacheTTL, logger), rdb, cache.TieredOptions{
		L1Size: cfg.L1CacheSize, L1TTL: cfg.L1CacheTTL, DisconnectedTTL: cfg.L1DisconnectedTTL,
		Bus: cache.NewBus(rdb, channel, logger), Logger: logger,
	})
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, err
	}
	s := &Service{pool: pool, rdb: rdb, db: db, cache: tiered}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(httpapi.WriteHandler(s.cache, msgWritten)), opWrite)
	r.Get("/read/{key}", httpapi.Handle(httpapi.ReadVia(s.cache, readAnswer)), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Post("/clear-cache", httpapi.Handle(s.clear), opClear)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close stops the invalidation listener, closes Redis, then the pool.
func (s *Service) Close() {
	s.cache.Close()
	s.rdb.Close()
	s.pool.Close()
}

// ReadResponse adds the level that answered: "L1", "L2" or "L3".
type ReadResponse struct {
	httpapi.ReadFields
	CacheLevel string `json:"cache_level"`
}

func readAnswer(f httpapi.ReadFields, r record.Read) any {
	return ReadResponse{ReadFields: f, CacheLevel: cache.Level(r.Tier)}
}

func (s *Service) health(r *http.Request) (any, error) {
	if err := s.db.Ping(r.Context()); err != nil {
		return nil, httpapi.Unhealthy("Service unhealthy: database unavailable", err)
	}
	return map[string]string{"status": "healthy", "layer": Layer, "database": "healthy", "l1_cache": "healthy", "l2_cache": s.rdb.Health(r.Context())}, nil
}

// ClearResponse is the answer of POST /clear-cache.
type ClearResponse struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

func (s *Service) clear(r *http.Request) (any, error) {
	if err := s.cache.Clear(r.Context()); err != nil {
		return nil, err
	}
	return ClearResponse{Success: true, Message: msgCleared}, nil
}

// Stats is the /stats document: the original's 15 fields, with L1 really working, then
// what this port adds. Rates are percentages (0–100, two decimals).
type Stats struct {
	L1Available    bool    `json:"l1_cache_available"`
	L1Size         int     `json:"l1_cache_size"`
	L1MaxSize      int     `json:"l1_cache_max_size"`
	L1Hits         int64   `json:"l1_cache_hits"`
	L1Misses       int64   `json:"l1_cache_misses"`
	L1HitRate      float64 `json:"l1_hit_rate"`
	L2Available    bool    `json:"l2_cache_available"`
	L2Keys         int64   `json:"l2_cache_keys"` // record:* keys in Redis
	L2Hits         int64   `json:"l2_cache_hits"`
	L2Misses       int64   `json:"l2_cache_misses"`
	L2HitRate      float64 `json:"l2_hit_rate"`
	DBPoolSize     int32   `json:"db_pool_size"` // open connections now (the original: the configured minimum)
	TotalHits      int64   `json:"total_hits"`   // l1 hits + l2 hits
	TotalMisses    int64   `json:"total_misses"` // l1 misses + l2 misses: a read missing both counts twice
	OverallHitRate float64 `json:"overall_hit_rate"`

	DBReads             int64 `json:"db_reads"`                   // reads that reached PostgreSQL (shared by concurrent misses)
	L1InvalidationsRecv int64 `json:"l1_invalidations_received"`  // from other instances
	L1Subscribed        bool  `json:"l1_invalidation_subscribed"` // other instances' writes reach this L1
	L2Pending           int64 `json:"l2_invalidations_pending"`   // L2 deletes waiting for Redis
	L2Skipped           bool  `json:"l2_skipped"`                 // Redis failed and is skipped until a probe finds it back
}

func (s *Service) stats(r *http.Request) (any, error) {
	st := s.cache.Stats(r.Context())
	return Stats{
		L1Available: true, L1Size: st.L1Size, L1MaxSize: st.L1MaxSize,
		L1Hits: st.L1Hits, L1Misses: st.L1Misses, L1HitRate: cache.HitRate(st.L1Hits, st.L1Misses),
		L2Available: st.L2Available, L2Keys: st.L2Keys,
		L2Hits: st.L2Hits, L2Misses: st.L2Misses, L2HitRate: cache.HitRate(st.L2Hits, st.L2Misses),
		DBPoolSize: s.pool.Stat().TotalConns(),
		TotalHits:  st.L1Hits + st.L2Hits, TotalMisses: st.L1Misses + st.L2Misses,
		// The share of reads answered by a cache: every read is an L1 hit or an L1 miss.
		OverallHitRate: st.HitRate(),
		DBReads:        st.DBReads, L1InvalidationsRecv: st.Received, L1Subscribed: st.Subscribed, L2Pending: st.L2Pending,
		L2Skipped: s.rdb.Skipped(),
	}, nil
}
