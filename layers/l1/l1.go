// Package l1 is layer 1, connection pooling: one pgxpool shared by all requests, so a
// request borrows an open connection instead of making one. /pool-stats shows the pool
// at work with live numbers.
package l1

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
)

// Layer is the health "layer" string.
const Layer = "1-connection-pooling"

// Config is L1's environment.
type Config struct {
	Server      httpapi.ServerConfig
	DatabaseURL string `env:"DATABASE_URL" default:"postgresql://dbuser:dbpassword@localhost:5433/appdb"`
	Pool        pgstore.PoolConfig
}

// Service is a running L1.
type Service struct {
	pool    *pgstore.Pool
	store   *pgstore.Store
	handler http.Handler
}

// New opens the pool, creates the records table and returns the service.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	pool, err := pgstore.OpenPool(ctx, cfg.DatabaseURL, cfg.Pool, pgstore.Schema)
	if err != nil {
		return nil, err
	}
	s := &Service{pool: pool, store: pgstore.NewStore(pool)}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(httpapi.WriteHandler(s.store, msgWritten)), opWrite)
	r.Get("/read/{key}", httpapi.Handle(httpapi.ReadHandler(s.store)), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/pool-stats")
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close closes the pool.
func (s *Service) Close() { s.pool.Close() }

func (s *Service) health(r *http.Request) (any, error) {
	if err := s.store.Ping(r.Context()); err != nil {
		return nil, httpapi.Unhealthy(msgUnhealthy, err)
	}
	return map[string]string{"status": "healthy", "layer": Layer}, nil
}

func (s *Service) stats(*http.Request) (any, error) { return s.pool.Stats(), nil }
