// Command l6 serves layer 6 (write buffering) on port 8006. The writes it queues are
// applied by cmd/l6-worker (or by workers in this process with WORKER_ENABLED=true).
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l6"
)

func main() { service.Main("l6", run) }

func run(ctx context.Context) error {
	var cfg l6.Config
	return service.Run(ctx, "l6", 8006, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l6.New(ctx, cfg, logger)
	})
}
