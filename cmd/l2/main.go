// Command l2 serves layer 2 (Redis read cache) on port 8002.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l2"
)

func main() { service.Main("l2", run) }

func run(ctx context.Context) error {
	var cfg l2.Config
	return service.Run(ctx, "l2", 8002, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l2.New(ctx, cfg, logger)
	})
}
