// Command l4-reshard moves L4's records to the shards that own them after shards were
// added, while the service keeps serving. It reads the service's environment (SHARD_URLS
// or SHARD_n_URL, SHARD_STRATEGY, RESHARD_FROM, REDIS_URL, DB_*), prints progress to
// stderr and the report of what it moved to stdout as JSON. The procedure is in
// layers/l4/README.md ("Adding a shard").
//
//	l4-reshard [-dry-run] [-batch N] [-statement-timeout 60s] [-no-cache]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/service"
	"github.com/dblayers/dblayers/internal/shard"
	"github.com/dblayers/dblayers/layers/l4"
)

func main() { service.Main("l4-reshard", run) }

func run(ctx context.Context) error {
	var opts l4.ReshardOptions
	fs := flag.NewFlagSet("l4-reshard", flag.ContinueOnError)
	fs.BoolVar(&opts.DryRun, "dry-run", false, "count the rows that would move, change nothing")
	fs.IntVar(&opts.BatchSize, "batch", 100, "rows read and moved per page")
	fs.DurationVar(&opts.StatementTimeout, "statement-timeout", time.Minute, "bound on each page's statements")
	fs.BoolVar(&opts.NoCache, "no-cache", false, "do not drop cached copies of merged keys (only when no service caches records)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	var cfg l4.Config
	if err := config.Load(&cfg); err != nil {
		return err
	}
	logger := service.NewLogger(cfg.Server.LogLevel).With("service", "l4-reshard")
	logger.Info("starting", "config", config.LogValue(&cfg), "dry_run", opts.DryRun)
	last := time.Now()
	opts.Progress = func(r shard.Report) {
		if time.Since(last) >= time.Second {
			last = time.Now()
			logger.Info("progress", "scanned", r.Scanned, "moved", r.Moved, "routes", r.Routes)
		}
	}
	rep, err := l4.Reshard(ctx, cfg, opts)
	if rep.Strategy == "" { // it did not get as far as moving anything
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false) // routes read "0->3"
	enc.SetIndent("", "  ")
	if jerr := enc.Encode(rep); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil {
		return fmt.Errorf("reshard stopped (the report above is what was done; running it again is safe): %w", err)
	}
	logger.Info("done", "scanned", rep.Scanned, "moved", rep.Moved, "seconds", rep.Seconds)
	return nil
}
