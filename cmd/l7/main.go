// Command l7 serves layer 7 (CQRS) on port 8007: commands into the write database's
// outbox, queries from the read database. The projector is cmd/l7-projector.
package main

import (
	"context"
	"log/slog"

	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l7"
)

func main() { service.Main("l7", run) }

func run(ctx context.Context) error {
	var cfg l7.Config
	return service.Run(ctx, "l7", 8007, &cfg, &cfg.Server, func(ctx context.Context, logger *slog.Logger) (service.Service, error) {
		return l7.New(ctx, cfg, logger)
	})
}
