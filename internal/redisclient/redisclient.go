// Package redisclient makes the Redis clients of every layer and worker, with the settings
// they share: short timeouts and no retries, so that a Redis outage costs milliseconds.
package redisclient

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/logthrottle"
)

// New returns a client for url with Options.
func New(url string) (*redis.Client, error) {
	opt, err := Options(url)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opt), nil
}

// Options are the client settings for url: short timeouts and no retries, so that a
// Redis outage costs a request milliseconds, not seconds: callers fall back to the
// database. That includes dialing: go-redis's default is five dials 100 ms apart, which
// made every call wait 400 ms while Redis refused connections.
func Options(url string) (*redis.Options, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis URL: %w", err)
	}
	opt.DialTimeout = time.Second
	opt.ReadTimeout = 500 * time.Millisecond
	opt.WriteTimeout = 500 * time.Millisecond
	opt.MaxRetries = -1   // no retries: a failed cache call falls back, it does not wait
	opt.DialerRetries = 1 // one dial per connection attempt
	opt.DisableIdentity = true
	return opt, nil
}

// Ping reports whether rdb answers within a short bound.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

// LogTo sends go-redis's own log lines to logger, as warnings, at most one every 10
// seconds (with the number held back). go-redis has one logger per process, which would
// otherwise write plain-text lines to stderr amid a service's JSON, one for every failed
// dial while Redis is down.
func LogTo(logger *slog.Logger) {
	redis.SetLogger(&redisLog{logger: logger, lines: logthrottle.Every{Interval: 10 * time.Second}})
}

type redisLog struct {
	logger *slog.Logger
	lines  logthrottle.Every
}

func (l *redisLog) Printf(ctx context.Context, format string, v ...any) {
	if ok, held := l.lines.Allow(); ok {
		l.logger.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis", "repeats_held_back", held)
	}
}
