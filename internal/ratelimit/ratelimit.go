// Package ratelimit limits requests per identity with GCRA (the generic cell rate
// algorithm, go-redis/redis_rate) kept in Redis: one atomic Lua script per request, so
// concurrent requests on any number of instances can never all pass a check that only one
// of them should (the original's check-then-add could), and every request counts (the
// original counted distinct seconds, so its limit could never trigger).
//
// A limit of N requests per window W allows a burst of N and then one request every W/N;
// an identity that stays idle for W is back to a full N. The identity is whatever the
// caller authenticated (an API key id, a JWT subject), never a header the client picks.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/logthrottle"
	"github.com/dblayers/dblayers/internal/record"
)

// Config is a limit and what to do when Redis cannot be asked.
type Config struct {
	Requests int           // requests allowed per Window (RATE_LIMIT_REQUESTS, 100)
	Window   time.Duration // RATE_LIMIT_WINDOW (60 s)
	// FailOpen lets requests through while the limiter's Redis cannot be reached (the
	// original's behaviour, and the default); false answers them 503.
	FailOpen bool
	// Timeout bounds one check (default 250 ms), so that a Redis that hangs costs each
	// request at most this much.
	Timeout time.Duration
	// Prefix namespaces the Redis keys (after redis_rate's own "rate:"), e.g. "l10:".
	Prefix string
}

// Limiter checks requests against the limit.
type Limiter struct {
	cfg    Config
	limit  redis_rate.Limit
	rl     *redis_rate.Limiter
	rdb    redis.UniversalClient
	logger *slog.Logger

	// OnReject and OnError, if set, are called for every request refused by the limit
	// and for every check that failed (metrics).
	OnReject func()
	OnError  func()

	batches  coalescer
	warnings logthrottle.Every // "limiter unavailable" lines
}

// New returns a limiter on rdb.
func New(rdb redis.UniversalClient, cfg Config, logger *slog.Logger) (*Limiter, error) {
	if cfg.Requests < 1 {
		return nil, fmt.Errorf("rate limit: requests per window must be at least 1 (got %d)", cfg.Requests)
	}
	if cfg.Window <= 0 {
		return nil, fmt.Errorf("rate limit: window must be positive (got %s)", cfg.Window)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 250 * time.Millisecond
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		cfg:      cfg,
		limit:    redis_rate.Limit{Rate: cfg.Requests, Burst: cfg.Requests, Period: cfg.Window},
		rl:       redis_rate.NewLimiter(rdb),
		rdb:      rdb,
		logger:   logger,
		warnings: logthrottle.Every{Interval: 10 * time.Second},
	}
	l.batches = coalescer{check: l.checkMany, queues: map[string]*queue{}}
	return l, nil
}

// Decision is the outcome of one check.
type Decision struct {
	Allowed    bool
	Limit      int           // requests per window
	Remaining  int           // requests that could be made right now
	RetryAfter time.Duration // until the next request is allowed (0 when allowed)
	ResetAfter time.Duration // until the identity is back to a full limit
}

// Allow counts one request of identity and says whether it may proceed. An error means
// Redis could not be asked; nothing was counted.
//
// Concurrent calls for one identity are coalesced (see coalescer): at most two checks of
// an identity are in flight, and the calls arriving meanwhile share the next one, which
// asks Redis for all of them at once. Counting stays exact and atomic in Redis.
func (l *Limiter) Allow(ctx context.Context, identity string) (Decision, error) {
	return l.batches.allow(ctx, identity)
}

// Peek says what Allow would say now, without counting a request.
func (l *Limiter) Peek(ctx context.Context, identity string) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	res, err := l.rl.AllowN(ctx, l.cfg.Prefix+identity, l.limit, 0)
	if err != nil {
		return Decision{}, record.Unavailable("Rate limiter", err)
	}
	return Decision{Allowed: res.Remaining >= 1, Limit: l.cfg.Requests, Remaining: res.Remaining,
		ResetAfter: max(res.ResetAfter, 0)}, nil
}

// checkMany counts n requests of identity in one atomic call (GCRA, redis_rate's
// AllowAtMost) and returns the decision of each, in order: the first ones allowed, the
// rest (if the limit had fewer left) refused.
//
// When fewer than n are left, AllowAtMost takes everything that is left, including the
// part of the next request that has been earned back since the last one: after a partial
// grant the identity waits one full emission interval (Window/Requests) for its next
// request, at most that much longer than a one-by-one check would have made it wait.
func (l *Limiter) checkMany(identity string, n int) ([]Decision, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	res, err := l.rl.AllowAtMost(ctx, l.cfg.Prefix+identity, l.limit, n)
	if err != nil {
		return nil, record.Unavailable("Rate limiter", err)
	}
	out := make([]Decision, n)
	for i := range out {
		d := Decision{Limit: l.cfg.Requests, ResetAfter: max(res.ResetAfter, 0)}
		switch {
		case i < res.Allowed:
			// As if they had been counted one by one: the first sees the most left.
			d.Allowed, d.Remaining = true, res.Remaining+res.Allowed-1-i
		case res.Allowed == 0:
			d.RetryAfter = max(res.RetryAfter, 0)
		default:
			d.RetryAfter = l.cfg.Window / time.Duration(l.cfg.Requests) // the limit is drained: one interval
		}
		out[i] = d
	}
	return out, nil
}

// Ping reports whether the limiter's Redis answers.
func (l *Limiter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	return l.rdb.Ping(ctx).Err()
}

// Middleware limits the requests of the identity that identify returns (the
// authenticated caller: it runs after authentication). Every answer carries
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (seconds until the limit
// is whole again); a refused request is 429 with Retry-After (seconds) and the original's
// message. While Redis cannot be asked, requests pass (FailOpen) or get 503.
func (l *Limiter) Middleware(identify func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, err := l.Allow(r.Context(), identify(r))
			if err != nil {
				if l.OnError != nil {
					l.OnError()
				}
				l.warn(err)
				if l.cfg.FailOpen {
					next.ServeHTTP(w, r)
					return
				}
				httpapi.WriteError(w, r, err)
				return
			}
			h := w.Header()
			h["X-Ratelimit-Limit"] = []string{strconv.Itoa(d.Limit)}
			h["X-Ratelimit-Remaining"] = []string{strconv.Itoa(d.Remaining)}
			h["X-Ratelimit-Reset"] = []string{strconv.Itoa(seconds(d.ResetAfter))}
			if !d.Allowed {
				if l.OnReject != nil {
					l.OnReject()
				}
				retry := max(seconds(d.RetryAfter), 1)
				h["Retry-After"] = []string{strconv.Itoa(retry)}
				httpapi.WriteError(w, r, httpapi.Errorf(http.StatusTooManyRequests,
					"Rate limit exceeded. Try again in %d seconds", retry))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// warn logs that the limiter cannot be asked, at most once every 10 seconds: during an
// outage every request would otherwise add a line.
func (l *Limiter) warn(err error) {
	if ok, held := l.warnings.Allow(); ok {
		l.logger.Warn("rate limiter unavailable", "fail_open", l.cfg.FailOpen, "error", err, "repeats_held_back", held)
	}
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
