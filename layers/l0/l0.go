// Package l0 is layer 0, a single PostgreSQL: every request opens a brand-new connection,
// runs one statement and closes it. No pool, no cache. Its cost per request (a TCP
// connect, authentication and a backend process start) is what layer 1 removes.
package l0

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
)

// Layer is the health "layer" string.
const Layer = "0-single-db"

// Config is L0's environment.
type Config struct {
	Server      httpapi.ServerConfig
	DatabaseURL string `env:"DATABASE_URL" default:"postgresql://dbuser:dbpassword@localhost:5432/appdb"`
	DB          pgstore.DirectConfig
}

// Service is a running L0.
type Service struct {
	direct  *pgstore.Direct
	store   *pgstore.Store
	handler http.Handler
}

// New creates the records table (waiting up to DB_STARTUP_TIMEOUT for the database) and
// returns the service.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	direct, err := pgstore.NewDirect(cfg.DatabaseURL, cfg.DB)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.DB.StartupTimeout)
	defer cancel()
	if err := pgstore.EnsureSchema(sctx, direct, pgstore.Schema); err != nil {
		return nil, err
	}
	s := &Service{direct: direct, store: pgstore.NewStore(direct)}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(httpapi.WriteHandler(s.store, msgWritten)), opWrite)
	r.Get("/read/{key}", httpapi.Handle(httpapi.ReadHandler(s.store)), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats)
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close has nothing to release: L0 holds no connections between requests.
func (s *Service) Close() {}

func (s *Service) health(r *http.Request) (any, error) {
	if err := s.store.Ping(r.Context()); err != nil {
		return nil, httpapi.Unhealthy(msgUnhealthy, err)
	}
	return map[string]string{"status": "healthy", "layer": Layer}, nil
}

// stats reports the connections this process opened (one per request) and holds now.
func (s *Service) stats(*http.Request) (any, error) {
	return s.direct.Stats(), nil
}
