// Package l3 is layer 3: reads spread over PostgreSQL streaming replicas, writes to their
// primary, and the Redis read cache of L2 in front — without the original's stale reads.
// The layer is cache-aside (cache.Aside) around a replica store (replica.Store): a read of a
// key this service wrote is answered only by a server that has replayed that write, and
// only such answers fill the cache (internal/replica, README.md).
package l3

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/replica"
)

// Layer is the health "layer" string.
const Layer = "3-read-replicas"

// WriteMessage is the message of a successful write.
const WriteMessage = "Data written successfully to primary"

// Config is L3's environment. The replicas are REPLICA_DATABASE_URLS when it is set, else
// the original's single REPLICA_DATABASE_URL.
type Config struct {
	Server      httpapi.ServerConfig
	PrimaryURL  string             `env:"PRIMARY_DATABASE_URL" default:"postgresql://dbuser:dbpassword@localhost:5435/appdb"`
	ReplicaURL  string             `env:"REPLICA_DATABASE_URL" default:"postgresql://dbuser:dbpassword@localhost:5436/appdb"`
	ReplicaURLs []string           `env:"REPLICA_DATABASE_URLS"` // comma-separated; replaces REPLICA_DATABASE_URL
	RedisURL    string             `env:"REDIS_URL" default:"redis://localhost:6380"`
	CacheTTL    time.Duration      `env:"CACHE_TTL" default:"300s"` // how long a cached record lives
	Pool        pgstore.PoolConfig // each server's pool: DB_POOL_MIN_SIZE/MAX_SIZE, timeouts
	Replicas    replica.Config     // lag bounds, check interval, read-your-writes memory
}

// replicaURLs returns the replica URLs the configuration names.
func (c Config) replicaURLs() []string {
	if len(c.ReplicaURLs) > 0 {
		return c.ReplicaURLs
	}
	return []string{c.ReplicaURL}
}

// Service is a running L3.
type Service struct {
	rdb          *redisclient.Client
	primary      *pgstore.Pool
	primaryDB    *pgstore.Store // for /health
	replicaPools []*pgstore.Pool
	balancer     *replica.Balancer
	store        *replica.Store
	cache        *cache.Aside
	handler      http.Handler
}

// New connects to the primary (required: the records table is created there and reaches
// the replicas by replication), the replicas (optional: reads fall back to the primary) and
// Redis (optional: reads go to the databases), and starts the replica health checks.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	s := &Service{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.rdb, err = redisclient.New(cfg.RedisURL); err != nil {
		return nil, err
	}
	if s.primary, err = pgstore.OpenPool(ctx, cfg.PrimaryURL, cfg.Pool, pgstore.Schema); err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	s.primaryDB = pgstore.NewStore(s.primary)
	var replicas []*replica.Replica
	for i, url := range cfg.replicaURLs() {
		pool, err := pgstore.NewPool(ctx, url, cfg.Pool)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		s.replicaPools = append(s.replicaPools, pool)
		replicas = append(replicas, replica.NewReplica(fmt.Sprint("replica-", i+1), pool))
	}
	s.balancer = replica.NewBalancer(ctx, s.primary, replicas, cfg.Replicas, logger)
	s.store = replica.NewStore(s.primary, s.balancer, replica.NewTracker(cfg.Replicas.TrackWrites, cfg.Replicas.TrackTTL), logger)
	// The cache around the replica store: the whole read path in one line.
	s.cache = cache.NewAside(s.rdb, s.store, cfg.CacheTTL, logger)

	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(httpapi.WriteHandler(s.cache, WriteMessage)), opWrite)
	r.Get("/read/{key}", httpapi.Handle(httpapi.ReadVia(s.cache, readAnswer)), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close stops the health checks, closes Redis, then the pools.
func (s *Service) Close() {
	if s.balancer != nil {
		s.balancer.Close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
	for _, p := range s.replicaPools {
		p.Close()
	}
	if s.primary != nil {
		s.primary.Close()
	}
}

// ReadResponse adds where the record came from: the cache, else a replica or the primary.
type ReadResponse struct {
	httpapi.ReadFields
	FromCache   bool `json:"from_cache"`
	FromReplica bool `json:"from_replica"`
}

func readAnswer(f httpapi.ReadFields, r record.Read) any {
	return ReadResponse{ReadFields: f, FromCache: r.Tier == record.FromCache, FromReplica: r.Replica != ""}
}

// HealthResponse is /health: the primary checked now, the replicas as the balancer last
// saw them (every REPLICA_CHECK_INTERVAL), the cache checked now.
type HealthResponse struct {
	Status   string            `json:"status"`  // "healthy", or "degraded" while a replica does not serve
	Layer    string            `json:"layer"`   //
	Primary  string            `json:"primary"` // "healthy" (else the answer is 503)
	Replica  string            `json:"replica"` // "healthy" (all serve), "degraded" (some) or "unhealthy" (none)
	Replicas map[string]string `json:"replicas"`
	Cache    string            `json:"cache"` // "healthy", "skipped" (its breaker is open) or "unavailable"
}

func (s *Service) health(r *http.Request) (any, error) {
	if err := s.primaryDB.Ping(r.Context()); err != nil {
		return nil, httpapi.Unhealthy("Service unhealthy: primary unavailable", err)
	}
	h := HealthResponse{Status: "healthy", Layer: Layer, Primary: "healthy", Replicas: map[string]string{}, Cache: "healthy"}
	serving := 0
	for _, rep := range s.balancer.Replicas() {
		st := rep.Status()
		if st.Serving {
			serving++
			h.Replicas[st.Name] = "healthy"
		} else {
			h.Replicas[st.Name] = st.Problem
		}
	}
	switch serving {
	case len(h.Replicas):
		h.Replica = "healthy"
	case 0:
		h.Replica, h.Status = "unhealthy", "degraded"
	default:
		h.Replica, h.Status = "degraded", "degraded"
	}
	h.Cache = s.rdb.Health(r.Context())
	return h, nil
}

// StatsResponse is /cache-stats and /stats: the original's fields (cache numbers null while
// Redis is unreachable; pool sizes are live open connections, the original showed the
// configured minimum), then the replica store's: primary and per-replica health, lag and
// reads served, the lag bounds and the read-your-writes memory.
type StatsResponse struct {
	CacheAvailable       bool     `json:"cache_available"`
	CacheHits            *int64   `json:"cache_hits"`
	CacheMisses          *int64   `json:"cache_misses"`
	CacheKeys            *int64   `json:"cache_keys"`
	CacheHitRate         *float64 `json:"cache_hit_rate"` // percent, 0–100
	InvalidationsPending int64    `json:"invalidations_pending"`
	CacheSkipped         bool     `json:"cache_skipped"` // Redis failed and is skipped until a probe finds it back
	PrimaryPoolSize      int32    `json:"primary_pool_size"`
	ReplicaPoolSize      int32    `json:"replica_pool_size"` // all replicas' pools together
	replica.Stats
}

func (s *Service) stats(r *http.Request) (any, error) {
	c := s.cache.Stats(r.Context())
	st := StatsResponse{
		CacheAvailable: c.Available, CacheHits: c.Hits, CacheMisses: c.Misses, CacheKeys: c.Keys, CacheHitRate: c.HitRate,
		InvalidationsPending: c.Pending, CacheSkipped: c.Skipped,
		PrimaryPoolSize: s.primary.Stat().TotalConns(),
		Stats:           s.store.Stats(),
	}
	for _, p := range s.replicaPools {
		st.ReplicaPoolSize += p.Stat().TotalConns()
	}
	return st, nil
}
