// Command l7-projector applies layer 7's events from the write database's outbox to the
// read database until SIGTERM. With -rebuild it instead recomputes the read model from the
// whole outbox, prints what it did as JSON and exits; with -healthcheck it exits 0 only if a
// projector has shown itself alive in the read database within PROJECTOR_STALL_AFTER.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l7"
)

func main() { service.Main("l7-projector", run) }

func run(ctx context.Context) error {
	fs := flag.NewFlagSet("l7-projector", flag.ContinueOnError)
	rebuild := fs.Bool("rebuild", false, "rebuild the read model from the outbox, print the result and exit")
	healthcheck := fs.Bool("healthcheck", false, "exit 0 if a projector was alive within PROJECTOR_STALL_AFTER")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	var cfg l7.ProjectorConfig
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if *healthcheck {
		return l7.CheckProjector(ctx, cfg)
	}
	logger := service.NewLogger(cfg.LogLevel).With("service", "l7-projector")
	logger.Info("starting", "rebuild", *rebuild, "config", config.LogValue(&cfg))
	if !*rebuild {
		return l7.RunProjector(ctx, cfg, logger)
	}
	res, err := l7.Rebuild(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
