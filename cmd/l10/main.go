// Command l10 serves layer 10 (enterprise: auth, rate limiting, circuit breakers, sharding,
// two-tier cache, Prometheus metrics) on port 8010.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l10"
)

func main() { service.Main("l10", run) }

func run(ctx context.Context) error {
	var cfg l10.Config
	return service.Run(ctx, "l10", 8010, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l10.New(ctx, cfg, logger)
	})
}
