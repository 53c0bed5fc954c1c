// Package service is the start-up and shutdown sequence every layer binary shares: flags,
// configuration from the environment, the JSON logger, serving until SIGTERM, and closing
// the layer's resources afterwards. A cmd/lN/main.go only names its layer and wires it.
package service

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/httpapi"
)

// Service is what a layer package builds: its HTTP handler and the resources behind it.
// Close releases them (workers first, database pools last).
type Service interface {
	Handler() http.Handler
	Close()
}

// Build constructs a layer's service from its loaded configuration.
type Build func(ctx context.Context, logger *slog.Logger) (Service, error)

// Run is the body of a layer binary's run(ctx): cfg (a pointer to the layer's config
// struct) is loaded from the environment, srv points at its embedded server settings, and
// the built service is served on srv's address (default port defaultPort) until ctx ends.
// With -healthcheck it only probes a running instance's /health and reports the result.
func Run(ctx context.Context, name string, defaultPort int, cfg any, srv *httpapi.ServerConfig, build Build) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	healthcheck := fs.Bool("healthcheck", false, "probe http://127.0.0.1:$PORT/health and exit 0 if it answers 200")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if err := config.Load(cfg); err != nil {
		return err
	}
	if srv.Port == 0 {
		srv.Port = defaultPort
	}
	if *healthcheck {
		return httpapi.Probe(srv.Port)
	}
	logger := NewLogger(srv.LogLevel).With("service", name)
	logger.Info("starting", "config", config.LogValue(cfg))
	svc, err := build(ctx, logger)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	defer svc.Close()
	return httpapi.Serve(ctx, *srv, svc.Handler(), logger)
}

// NewLogger returns a JSON slog logger on stderr at the named level (default info).
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// Main runs a binary's run function with a context that ends on SIGINT or SIGTERM, and
// exits 1 if it fails.
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
