// Command l3 serves layer 3 (read replicas + cache) on port 8003.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l3"
)

func main() { service.Main("l3", run) }

func run(ctx context.Context) error {
	var cfg l3.Config
	return service.Run(ctx, "l3", 8003, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l3.New(ctx, cfg, logger)
	})
}
