// Package redisclient makes the Redis clients of every layer and worker, with the settings
// they share: short timeouts and no retries, so that a Redis outage costs milliseconds, and
// a breaker.Guard on every command, so that a Redis that hangs with its connections open
// costs a few timeouts and then nothing: its callers are refused at once and fall back
// (a cache is skipped) or answer a fast 503 (a queue), until a probe finds Redis back.
package redisclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/logthrottle"
)

// The guard's settings, the same for every Redis client: SkipAfter consecutive failed
// commands (timeouts, refused or broken connections; not a server's error reply) open it,
// and while it is open every command is refused at once, but for one probe every
// ProbeEvery. A hanging Redis thus costs its callers SkipAfter timeouts (ReadTimeout each,
// concurrently), then one probe's timeout a second.
const (
	SkipAfter  = 3
	ProbeEvery = time.Second
)

// ReadTimeout bounds waiting for one reply (and WriteTimeout sending one command).
const (
	ReadTimeout  = 500 * time.Millisecond
	WriteTimeout = 500 * time.Millisecond
)

// Client is a go-redis client whose every command and pipeline goes through a Guard.
type Client struct {
	*redis.Client
	guard *breaker.Guard
}

// New returns a client for url with Options and its Guard, named "Redis".
func New(url string) (*Client, error) {
	opt, err := Options(url)
	if err != nil {
		return nil, err
	}
	return Guarded(redis.NewClient(opt))
}

// Guarded puts a Guard in front of every command and pipeline of rdb.
func Guarded(rdb *redis.Client) (*Client, error) {
	g, err := breaker.NewGuard("Redis", breaker.Settings{Threshold: SkipAfter, Timeout: ProbeEvery}, IsFailure)
	if err != nil {
		return nil, err
	}
	rdb.AddHook(guardHook{g})
	return &Client{Client: rdb, guard: g}, nil
}

// State is the guard's state: closed while Redis answers; open (every command refused) or
// half-open (one probe in flight, the rest refused) while it is skipped.
func (c *Client) State() breaker.State { return c.guard.State() }

// Skipped reports whether commands are being refused without reaching Redis.
func (c *Client) Skipped() bool { return c.guard.State() != breaker.Closed }

// Health is the word /health uses for this Redis: "healthy" when a PING answers;
// "skipped" when the guard is open after it (the PING was refused, or it was the probe and
// failed), so that callers no longer wait on Redis; "unavailable" when it failed but fewer
// than SkipAfter commands in a row have.
func (c *Client) Health(ctx context.Context) string {
	switch {
	case Ping(ctx, c) == nil:
		return "healthy"
	case c.Skipped():
		return "skipped"
	default:
		return "unavailable"
	}
}

// IsFailure reports whether err says Redis could not serve: a timeout, a connection that
// could not be made or broke, a pool with no connection to give. A reply (redis.Nil, an
// error reply such as NOSCRIPT) means Redis answered, and a caller that went away says
// nothing about Redis.
func IsFailure(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, breaker.ErrOpen) {
		return false
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}

// guardHook runs every command and pipeline through the Guard, once: a command that has
// to dial makes go-redis run the connection's handshake (HELLO …) through the same hooks,
// inside it, and those pass as part of the command that caused them. Otherwise they would
// count twice, and a half-open guard's one probe could never open a connection.
type guardHook struct{ g *breaker.Guard }

// inGuard marks a context whose command the guard has already let through.
type inGuard struct{}

func (h guardHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h guardHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(inGuard{}) != nil {
			return next(ctx, cmd)
		}
		done, err := h.g.Allow()
		if err != nil {
			return err
		}
		err = next(context.WithValue(ctx, inGuard{}, true), cmd)
		done(err)
		return err
	}
}

func (h guardHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(inGuard{}) != nil {
			return next(ctx, cmds)
		}
		done, err := h.g.Allow()
		if err != nil {
			for _, cmd := range cmds {
				cmd.SetErr(err)
			}
			return err
		}
		err = next(context.WithValue(ctx, inGuard{}, true), cmds)
		done(err)
		return err
	}
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
	opt.ReadTimeout = ReadTimeout
	opt.WriteTimeout = WriteTimeout
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
