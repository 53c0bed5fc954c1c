// Command l0 serves layer 0 (single database, a connection per request) on port 8000.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l0"
)

func main() { service.Main("l0", run) }

func run(ctx context.Context) error {
	var cfg l0.Config
	return service.Run(ctx, "l0", 8000, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l0.New(ctx, cfg, logger)
	})
}
