// Command l4 serves layer 4 (sharding + cache) on port 8004.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l4"
)

func main() { service.Main("l4", run) }

func run(ctx context.Context) error {
	var cfg l4.Config
	return service.Run(ctx, "l4", 8004, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l4.New(ctx, cfg, logger)
	})
}
