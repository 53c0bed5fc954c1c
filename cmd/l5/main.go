// Command l5 serves layer 5 (multi-tier cache: in-process L1, Redis L2, PostgreSQL L3) on
// port 8005.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l5"
)

func main() { service.Main("l5", run) }

func run(ctx context.Context) error {
	var cfg l5.Config
	return service.Run(ctx, "l5", 8005, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l5.New(ctx, cfg, logger)
	})
}
