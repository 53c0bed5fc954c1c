// Command l9 serves layer 9 (global distribution: three regions, asynchronous replication,
// geo-routing by X-Region) on port 8009.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l9"
)

func main() { service.Main("l9", run) }

func run(ctx context.Context) error {
	var cfg l9.Config
	return service.Run(ctx, "l9", 8009, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l9.New(ctx, cfg, logger)
	})
}
