package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/ratelimit"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
)

func newRedis(t *testing.T, url string) *redisclient.Client {
	t.Helper()
	rdb, err := redisclient.New(url)
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func newLimiter(t *testing.T, rdb *redisclient.Client, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(rdb, cfg, nil)
	require.NoError(t, err)
	return l
}

func TestLimitTriggersAndResets(t *testing.T) {
	rdb := newRedis(t, testenv.RedisURL(t))
	ctx := context.Background()

	// 5 an hour: a request comes back every 12 minutes, so nothing here depends on how fast
	// the machine runs it.
	const interval = time.Hour / 5
	l := newLimiter(t, rdb, ratelimit.Config{Requests: 5, Window: time.Hour})
	for i := range 5 {
		d, err := l.Allow(ctx, "alice")
		require.NoError(t, err)
		require.True(t, d.Allowed, "request %d of 5", i+1)
		assert.Equal(t, 5, d.Limit)
		assert.Equal(t, 4-i, d.Remaining)
	}
	for range 2 {
		d, err := l.Allow(ctx, "alice")
		require.NoError(t, err)
		assert.False(t, d.Allowed, "a 6th request in the window is refused")
		assert.Equal(t, 0, d.Remaining)
		testenv.AssertCountdown(t, interval, d.RetryAfter, "one request comes back every window/limit")
		// Refused requests do not count: the limit is whole one window after the first
		// request, not an interval later for each refusal.
		testenv.AssertCountdown(t, time.Hour, d.ResetAfter, "until the limit is whole")
	}
	d, err := l.Peek(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, 0, d.Remaining, "peeking counts nothing")
	testenv.AssertCountdown(t, time.Hour, d.ResetAfter, "peeking counts nothing")

	other, err := l.Allow(ctx, "bob")
	require.NoError(t, err)
	assert.True(t, other.Allowed, "identities have separate limits")

	// 5 per 2 s, for time passing: after a window the whole limit is back. (Only what more
	// time cannot break is checked here.)
	short := newLimiter(t, rdb, ratelimit.Config{Requests: 5, Window: 2 * time.Second})
	for i := range 5 {
		d, err := short.Allow(ctx, "frank")
		require.NoError(t, err)
		require.True(t, d.Allowed, "request %d of 5", i+1)
	}
	testenv.WaitFor(t, 10*time.Second, "frank's limit to be whole again", func() bool {
		d, err := short.Peek(ctx, "frank")
		return err == nil && d.Remaining == 5
	})
	for i := range 5 {
		d, err := short.Allow(ctx, "frank")
		require.NoError(t, err)
		require.True(t, d.Allowed, "request %d of 5 after the reset", i+1)
	}
}

// Concurrent checks are atomic: exactly the limit passes, however many ask at once.
func TestConcurrentRequestsCannotOvershoot(t *testing.T) {
	l := newLimiter(t, newRedis(t, testenv.RedisURL(t)), ratelimit.Config{Requests: 20, Window: time.Hour})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 4 {
				d, err := l.Allow(context.Background(), "carol")
				if assert.NoError(t, err) && d.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(20), allowed.Load())
}

func TestMiddleware(t *testing.T) {
	l := newLimiter(t, newRedis(t, testenv.RedisURL(t)), ratelimit.Config{Requests: 2, Window: time.Hour})
	var rejected atomic.Int64
	l.OnReject = func() { rejected.Add(1) }
	h := l.Middleware(func(r *http.Request) string { return r.Header.Get("Who") })(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	do := func(who string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Who", who)
		h.ServeHTTP(rec, req)
		return rec
	}

	r := do("dave")
	assert.Equal(t, http.StatusNoContent, r.Code)
	assert.Equal(t, "2", r.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "1", r.Header().Get("X-RateLimit-Remaining"))
	assert.Equal(t, "1800", r.Header().Get("X-RateLimit-Reset"), "half the hour until a full limit")
	assert.Empty(t, r.Header().Get("Retry-After"))

	assert.Equal(t, http.StatusNoContent, do("dave").Code)
	r = do("dave")
	assert.Equal(t, http.StatusTooManyRequests, r.Code)
	assert.JSONEq(t, `{"detail":"Rate limit exceeded. Try again in 1800 seconds"}`, r.Body.String())
	assert.Equal(t, "1800", r.Header().Get("Retry-After"))
	assert.Equal(t, "0", r.Header().Get("X-RateLimit-Remaining"))
	assert.Equal(t, "3600", r.Header().Get("X-RateLimit-Reset"))
	assert.Equal(t, int64(1), rejected.Load())

	assert.Equal(t, http.StatusNoContent, do("erin").Code, "another identity is not limited")
}

// While Redis is down the limiter fails open or closed, as configured, within its timeout.
func TestRedisDown(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := newRedis(t, srv.URL(0))
	for _, failOpen := range []bool{true, false} {
		l := newLimiter(t, rdb, ratelimit.Config{Requests: 1, Window: time.Hour, FailOpen: failOpen, Timeout: 200 * time.Millisecond})
		var errs atomic.Int64
		l.OnError = func() { errs.Add(1) }
		h := l.Middleware(func(*http.Request) string { return "frank" })(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
		do := func() *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			return rec
		}
		require.NoError(t, l.Ping(context.Background()))
		srv.Stop(t)

		assert.Error(t, l.Ping(context.Background()))
		start := time.Now()
		r := do()
		assert.Less(t, time.Since(start), time.Second)
		if failOpen {
			assert.Equal(t, http.StatusNoContent, r.Code, "fail open")
		} else {
			assert.Equal(t, http.StatusServiceUnavailable, r.Code, "fail closed")
			assert.JSONEq(t, `{"detail":"Rate limiter unavailable"}`, r.Body.String())
		}
		assert.Equal(t, int64(1), errs.Load())

		srv.Start(t)
		testenv.WaitFor(t, 10*time.Second, "the limiter to answer again", func() bool { return l.Ping(context.Background()) == nil })
		require.NoError(t, rdb.FlushDB(context.Background()).Err())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := ratelimit.New(nil, ratelimit.Config{Requests: 0, Window: time.Second}, nil)
	assert.Error(t, err)
	_, err = ratelimit.New(nil, ratelimit.Config{Requests: 1}, nil)
	assert.Error(t, err)
}
