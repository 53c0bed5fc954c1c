package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/testenv"
)

// Leased caches any JSON value: here a list, as L8 caches a user's transactions.
func TestLeasedCachesValuesAndNotErrors(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	l := cache.NewLeased[[]int](rdb, time.Minute, slog.Default())
	loads := 0
	load := func(context.Context) ([]int, error) { loads++; return []int{1, 2, 3}, nil }

	v, fromCache, err := l.Lookup(ctx, "list:a", load)
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, []int{1, 2, 3}, v)
	v, fromCache, err = l.Lookup(ctx, "list:a", load)
	require.NoError(t, err)
	assert.True(t, fromCache)
	assert.Equal(t, []int{1, 2, 3}, v)
	assert.Equal(t, 1, loads)
	assert.Equal(t, int64(0), rdb.Exists(ctx, cache.LeaseKey("list:a")).Val(), "a fill drops its lease")

	errEmpty := errors.New("empty")
	_, _, err = l.Lookup(ctx, "list:b", func(context.Context) ([]int, error) { return nil, errEmpty })
	assert.ErrorIs(t, err, errEmpty)
	assert.Equal(t, int64(0), rdb.Exists(ctx, "list:b", cache.LeaseKey("list:b")).Val(), "a failed load caches nothing and releases its lease")

	l.Invalidate(ctx, "list:a")
	_, fromCache, err = l.Lookup(ctx, "list:a", load)
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, 2, loads)

	hits, misses := l.Counts()
	assert.Equal(t, int64(1), hits)
	assert.Equal(t, int64(3), misses)
	assert.Equal(t, int64(0), l.Pending())
}

// A loader that read before an invalidation cannot fill the cache after it.
func TestLeasedSlowLoadCannotFillAfterInvalidate(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	l := cache.NewLeased[string](rdb, time.Minute, slog.Default())
	loaded, release := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		v, _, _ := l.Lookup(ctx, "k", func(context.Context) (string, error) {
			close(loaded)
			<-release
			return "old", nil
		})
		done <- v
	}()
	<-loaded
	l.Invalidate(ctx, "k") // a write committed after the slow load read "old"
	close(release)
	assert.Equal(t, "old", <-done)
	assert.Equal(t, int64(0), rdb.Exists(ctx, "k").Val(), "the old value was not cached")

	v, fromCache, err := l.Lookup(ctx, "k", func(context.Context) (string, error) { return "new", nil })
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, "new", v)
}

// Raw JSON inside a cached value comes back byte for byte (no HTML escaping on the way).
func TestLeasedKeepsRawJSON(t *testing.T) {
	ctx := context.Background()
	type doc struct{ Data json.RawMessage }
	l := cache.NewLeased[doc](newRedis(t, testenv.RedisURL(t)), time.Minute, slog.Default())
	raw := json.RawMessage(`{"h":"<b>&</b>","n":1.0}`)
	load := func(context.Context) (doc, error) { return doc{Data: raw}, nil }
	_, _, err := l.Lookup(ctx, "d", load)
	require.NoError(t, err)
	v, fromCache, err := l.Lookup(ctx, "d", load)
	require.NoError(t, err)
	require.True(t, fromCache)
	assert.Equal(t, string(raw), string(v.Data))
}

// With Redis down every lookup loads, and an invalidation that could not be delivered is
// delivered before the cache is used again.
func TestLeasedRedisOutage(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	l := cache.NewLeased[string](newRedis(t, srv.URL(0)), time.Minute, slog.Default())
	value := "v1"
	load := func(context.Context) (string, error) { return value, nil }
	_, _, err := l.Lookup(ctx, "k", load)
	require.NoError(t, err)

	srv.Stop(t)
	value = "v2"
	l.Invalidate(ctx, "k")
	assert.Equal(t, int64(1), l.Pending())
	v, fromCache, err := l.Lookup(ctx, "k", load)
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, "v2", v)

	srv.Start(t)
	testenv.WaitFor(t, 5*time.Second, "the cache to be used again", func() bool {
		v, fromCache, err := l.Lookup(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, "v2", v)
		return fromCache
	})
	assert.Equal(t, int64(0), l.Pending())
}

// Overlapping misses of one key: the first reader's fill lands even though a second reader
// started loading before it finished (a later miss must not take the lease over, or a stream
// of overlapping misses on a hot key would never fill it).
func TestLeasedOverlappingMissesStillFill(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	l := cache.NewLeased[string](rdb, time.Minute, slog.Default())
	blockingLoad := func(started, release chan struct{}) func(context.Context) (string, error) {
		return func(context.Context) (string, error) {
			close(started)
			<-release
			return "v", nil
		}
	}
	startedA, releaseA, doneA := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		_, _, _ = l.Lookup(ctx, "hot", blockingLoad(startedA, releaseA))
		close(doneA)
	}()
	<-startedA
	startedB, releaseB, doneB := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		_, _, _ = l.Lookup(ctx, "hot", blockingLoad(startedB, releaseB))
		close(doneB)
	}()
	<-startedB

	close(releaseA)
	<-doneA
	assert.Equal(t, int64(1), rdb.Exists(ctx, "hot").Val(), "the first reader filled the cache")
	close(releaseB)
	<-doneB
	v, fromCache, err := l.Lookup(ctx, "hot", func(context.Context) (string, error) { return "", errors.New("not called") })
	require.NoError(t, err)
	assert.True(t, fromCache)
	assert.Equal(t, "v", v)
}
