// Command l1 serves layer 1 (connection pooling) on port 8001.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l1"
)

func main() { service.Main("l1", run) }

func run(ctx context.Context) error {
	var cfg l1.Config
	return service.Run(ctx, "l1", 8001, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l1.New(ctx, cfg, logger)
	})
}
