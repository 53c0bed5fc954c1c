// Package recordtest is the behaviour every record.Store keeps, as one suite that runs
// against each implementation: plain PostgreSQL, pooled, cached, tiered, sharded …
package recordtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/record"
)

// Run checks store against the record.Store contract. Keys are prefixed with t's name, so
// a store may be shared with other tests.
func Run(t *testing.T, store record.Store) {
	ctx := context.Background()
	key := func(t *testing.T, k string) string { return t.Name() + "/" + k }

	t.Run("missing key is ErrNotFound", func(t *testing.T) {
		_, err := store.Get(ctx, key(t, "nope"))
		assert.ErrorIs(t, err, record.ErrNotFound)
	})
	t.Run("put then get", func(t *testing.T) {
		k := key(t, "k")
		require.NoError(t, store.Put(ctx, k, "v1"))
		rec, err := store.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, k, rec.Key)
		assert.Equal(t, "v1", rec.Value)
		assert.False(t, rec.CreatedAt.IsZero())
		assert.Equal(t, rec.CreatedAt, rec.UpdatedAt, "a new record's timestamps are equal")
	})
	t.Run("overwrite keeps created_at and moves updated_at", func(t *testing.T) {
		k := key(t, "k")
		require.NoError(t, store.Put(ctx, k, "v1"))
		first, err := store.Get(ctx, k)
		require.NoError(t, err)
		require.NoError(t, store.Put(ctx, k, "v2"))
		second, err := store.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, "v2", second.Value)
		assert.Equal(t, first.CreatedAt, second.CreatedAt)
		assert.True(t, second.UpdatedAt.After(first.UpdatedAt), "updated_at %v not after %v", second.UpdatedAt, first.UpdatedAt)
	})
	t.Run("values round-trip exactly", func(t *testing.T) {
		for name, v := range map[string]string{
			"empty":   "",
			"unicode": "测试数据 — ümlaut ✓ 🚀",
			"quotes":  `'; DROP TABLE records; -- "x" \n`,
			"large":   strings.Repeat("x", 100_000),
		} {
			k := key(t, name)
			require.NoError(t, store.Put(ctx, k, v), name)
			rec, err := store.Get(ctx, k)
			require.NoError(t, err, name)
			assert.Equal(t, v, rec.Value, name)
		}
	})
	t.Run("a key that looks like SQL is just a key", func(t *testing.T) {
		k := key(t, "x' OR '1'='1")
		_, err := store.Get(ctx, k)
		assert.ErrorIs(t, err, record.ErrNotFound)
		require.NoError(t, store.Put(ctx, k, "v"))
		rec, err := store.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, "v", rec.Value)
	})
	t.Run("concurrent writers of distinct keys all land", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 50)
		for i := range errs {
			wg.Go(func() { errs[i] = store.Put(ctx, key(t, fmt.Sprint(i)), fmt.Sprint("v", i)) })
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err)
			rec, err := store.Get(ctx, key(t, fmt.Sprint(i)))
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprint("v", i), rec.Value)
		}
	})
	t.Run("a cancelled context fails without storing", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		k := key(t, "k")
		err := store.Put(cctx, k, "v")
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.Canceled) || record.IsUnavailable(err), "error %v", err)
		_, err = store.Get(ctx, k)
		assert.ErrorIs(t, err, record.ErrNotFound)
	})
}
