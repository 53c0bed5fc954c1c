// Package l2 is layer 2, a Redis read cache in front of the pooled PostgreSQL of layer 1:
// cache-aside with invalidation on write, and fill leases so that a slow reader can never
// put an old row back after a write (see README.md).
package l2

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
const Layer = "2-read-cache"

// Config is L2's environment.
type Config struct {
	Server      httpapi.ServerConfig
	DatabaseURL string        `env:"DATABASE_URL" default:"postgresql://dbuser:dbpassword@localhost:5434/appdb"`
	RedisURL    string        `env:"REDIS_URL" default:"redis://localhost:6379"`
	CacheTTL    time.Duration `env:"CACHE_TTL" default:"300s"` // how long a cached record lives
	Pool        pgstore.PoolConfig
}

// Service is a running L2.
type Service struct {
	pool    *pgstore.Pool
	rdb     *redisclient.Client
	db      *pgstore.Store
	cache   *cache.Aside
	handler http.Handler
}

// New connects to PostgreSQL (required) and Redis (optional: without it reads go to the
// database), creates the records table and returns the service.
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
	db := pgstore.NewStore(pool)
	s := &Service{pool: pool, rdb: rdb, db: db, cache: cache.NewAside(rdb, db, cfg.CacheTTL, logger)}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(httpapi.WriteHandler(s.cache, msgWritten)), opWrite)
	r.Get("/read/{key}", httpapi.Handle(httpapi.ReadVia(s.cache, readAnswer)), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats)
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close closes Redis, then the pool.
func (s *Service) Close() {
	s.rdb.Close()
	s.pool.Close()
}

// ReadResponse adds where the record came from.
type ReadResponse struct {
	httpapi.ReadFields
	FromCache bool `json:"from_cache"`
}

func readAnswer(f httpapi.ReadFields, r record.Read) any {
	return ReadResponse{ReadFields: f, FromCache: r.Tier == record.FromCache}
}

func (s *Service) health(r *http.Request) (any, error) {
	if err := s.db.Ping(r.Context()); err != nil {
		return nil, httpapi.Unhealthy(msgUnhealthy, err)
	}
	return map[string]string{"status": "healthy", "layer": Layer, "database": "healthy", "cache": s.rdb.Health(r.Context())}, nil
}

func (s *Service) stats(r *http.Request) (any, error) { return s.cache.Stats(r.Context()), nil }
