package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ServerConfig is the part of every binary's configuration that concerns HTTP.
type ServerConfig struct {
	Host            string        `env:"HOST"`                              // listen address; empty = all interfaces
	Port            int           `env:"PORT"`                              // default 8000+N for layer N
	MaxBodyBytes    int64         `env:"MAX_BODY_BYTES" default:"2097152"`  // request body limit (2 MiB) → 413
	MaxValueBytes   int64         `env:"MAX_VALUE_BYTES" default:"1048576"` // stored value limit (1 MiB) → 413
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" default:"10s"`    // grace period for in-flight requests on SIGTERM
	LogLevel        string        `env:"LOG_LEVEL" default:"info"`          // debug, info, warn or error
	AccessLog       AccessLogConfig
}

// Addr is host:port.
func (c ServerConfig) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Limits returns the request limits of this configuration.
func (c ServerConfig) Limits() Limits {
	return Limits{MaxBodyBytes: c.MaxBodyBytes, MaxValueBytes: c.MaxValueBytes}
}

// Serve runs an HTTP server with read, write and idle timeouts until ctx is cancelled, then
// shuts it down gracefully: no new connections, in-flight requests get ShutdownTimeout to end.
func Serve(ctx context.Context, cfg ServerConfig, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Addr:              cfg.Addr(),
		Handler:           withAccessLog(cfg.AccessLog, h),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	logger.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Probe asks http://127.0.0.1:port/health and returns nil on 200: the container
// healthcheck of images that carry no curl.
func Probe(port int) error {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: HTTP %d", resp.StatusCode)
	}
	return nil
}
