package cache_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/testenv"
)

// InvalidateMany drops several cached values and leases in one call; with Redis down it
// defers them all, and the cache is not used until they are delivered.
func TestLeasedInvalidateMany(t *testing.T) {
	ctx := context.Background()
	rs := testenv.StartRedis(t)
	rdb := newRedis(t, rs.URL(0))
	l := cache.NewLeased[string](rdb, time.Minute, slog.New(slog.DiscardHandler))
	load := func(v string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return v, nil }
	}
	for _, k := range []string{"a", "b", "c"} {
		_, _, err := l.Lookup(ctx, k, load("old"))
		require.NoError(t, err)
	}
	l.InvalidateMany(ctx, "a", "b")
	assert.Equal(t, int64(1), rdb.Exists(ctx, "a", "b", "c").Val(), "only c is still cached")
	l.InvalidateMany(ctx) // nothing to do

	rs.Stop(t)
	l.InvalidateMany(ctx, "c", "d")
	assert.Equal(t, int64(2), l.Pending())
	rs.Start(t)
	v, fromCache, err := l.Lookup(ctx, "c", load("new"))
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, "new", v)
	assert.Equal(t, int64(0), l.Pending())
}
