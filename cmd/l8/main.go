// Command l8 serves layer 8 (polyglot persistence: PostgreSQL transactions, MongoDB
// documents, Redis cache) on port 8008.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l8"
)

func main() { service.Main("l8", run) }

func run(ctx context.Context) error {
	var cfg l8.Config
	return service.Run(ctx, "l8", 8008, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l8.New(ctx, cfg, logger)
	})
}
