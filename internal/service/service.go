// Package service is the start-up and shutdown sequence every layer binary shares: flags,
// configuration from the environment, the JSON logger, serving until SIGTERM, and closing
// the layer's resources afterwards. A cmd/lN/main.go only names its layer and wires it.
package service

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/redisclient"
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
	out := newBufferedWriter(os.Stderr)
	defer out.Flush()
	go out.flushEvery(ctx, logFlushInterval)
	logger := processLogger(out, srv.LogLevel).With("service", name)
	logger.Info("starting", "config", config.LogValue(cfg))
	svc, err := build(ctx, logger)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	defer svc.Close()
	return httpapi.Serve(ctx, *srv, svc.Handler(), logger)
}

// NewLogger returns a JSON slog logger on stderr at the named level (default info), the
// process's logger: go-redis's lines go to it too, so that stderr holds only JSON.
func NewLogger(level string) *slog.Logger { return processLogger(os.Stderr, level) }

// processLogger is newLogger on w that also gets go-redis's lines (go-redis has one logger
// per process).
func processLogger(w io.Writer, level string) *slog.Logger {
	logger := newLogger(w, level)
	redisclient.LogTo(logger)
	return logger
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// logFlushInterval bounds how long a served request's access-log line may wait in memory.
const logFlushInterval = 100 * time.Millisecond

// bufferedWriter gathers log lines and writes them in batches. An HTTP service logs one
// line per request; written one by one, each line costs a write(2) under the logger's
// lock, on the path of every request (docs/hot-read-cost.md says how to measure it).
// Lines wait at most logFlushInterval, and Run flushes on exit; a crash loses at most
// that last interval of access lines.
type bufferedWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func newBufferedWriter(w io.Writer) *bufferedWriter {
	return &bufferedWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *bufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

func (b *bufferedWriter) flushEvery(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = b.Flush()
		}
	}
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
