// Command l6-worker applies the writes layer 6 queued to PostgreSQL, in batches, until
// SIGTERM; then it finishes the batch in hand and exits. Run as many as you like: they
// share the work through a Redis consumer group and take over each other's entries when
// one dies. With -healthcheck it only reports whether a worker on this host sent a
// heartbeat recently (the container health check).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/layers/l6"
)

func main() { service.Main("l6-worker", run) }

func run(ctx context.Context) error {
	fs := flag.NewFlagSet("l6-worker", flag.ContinueOnError)
	healthcheck := fs.Bool("healthcheck", false, "exit 0 if a worker on this host sent a heartbeat within 10 s")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	var cfg l6.WorkerConfig
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if *healthcheck {
		return l6.CheckWorker(ctx, cfg)
	}
	logger := service.NewLogger(cfg.LogLevel).With("service", "l6-worker")
	logger.Info("starting", "config", config.LogValue(&cfg))
	p, err := l6.NewWorkerProcess(ctx, cfg, logger)
	if err != nil {
		return fmt.Errorf("start l6-worker: %w", err)
	}
	defer p.Close()
	p.Run(ctx)
	return nil
}
