package shard_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/shard"
	"github.com/dblayers/dblayers/internal/testenv"
)

// memStore is a hand-written fake shard: a map, a log of the keys asked for, and an
// optional hook run at the start of every Get.
type memStore struct {
	mu     sync.Mutex
	rows   map[string]record.Record
	gets   []string
	down   bool
	onGet  func(key string)
	putErr error
}

var _ record.Store = (*memStore)(nil)

func newMem() *memStore { return &memStore{rows: map[string]record.Record{}} }

func (m *memStore) Get(_ context.Context, key string) (record.Record, error) {
	if m.onGet != nil {
		m.onGet(key)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets = append(m.gets, key)
	if m.down {
		return record.Record{}, record.Unavailable("Database", errors.New("dial tcp 127.0.0.1:5441: connection refused"))
	}
	rec, ok := m.rows[key]
	if !ok {
		return record.Record{}, record.ErrNotFound
	}
	return rec, nil
}

func (m *memStore) Put(_ context.Context, key, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return record.Unavailable("Database", errors.New("dial tcp 127.0.0.1:5441: connection refused"))
	}
	if m.putErr != nil {
		return m.putErr
	}
	now := time.Now().UTC()
	rec, ok := m.rows[key]
	if !ok {
		rec = record.Record{Key: key, CreatedAt: now}
	}
	rec.Value, rec.UpdatedAt = value, now
	m.rows[key] = rec
	return nil
}

func (m *memStore) has(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.rows[key]
	return ok
}

func (m *memStore) move(key string, to *memStore) {
	m.mu.Lock()
	rec := m.rows[key]
	delete(m.rows, key)
	m.mu.Unlock()
	to.mu.Lock()
	to.rows[key] = rec
	to.mu.Unlock()
}

func mems(n int) ([]*memStore, []record.Store) {
	ms, ss := make([]*memStore, n), make([]record.Store, n)
	for i := range ms {
		ms[i] = newMem()
		ss[i] = ms[i]
	}
	return ms, ss
}

func router(t testing.TB, strategy string, stores []record.Store) *shard.Router {
	t.Helper()
	r, err := shard.NewRouter(strategy, stores)
	require.NoError(t, err)
	return r
}

// Each key lives on its owner and nowhere else (test_write_to_correct_shard,
// test_shard_isolation at the Store level).
func TestRouterWritesOnlyToTheOwner(t *testing.T) {
	ctx := context.Background()
	for _, strategy := range shard.Strategies() {
		ms, ss := mems(3)
		r := router(t, strategy, ss)
		for i := range 60 {
			k := fmt.Sprint("k", i)
			require.NoError(t, r.Put(ctx, k, "v"))
			for s, m := range ms {
				assert.Equal(t, s == r.Owner(k), m.has(k), "%s: %q on shard %d", strategy, k, s)
			}
			rec, err := r.Get(ctx, k)
			require.NoError(t, err)
			assert.Equal(t, "v", rec.Value)
		}
	}
}

// A shard that is down costs its own keys only, and says which shard it is.
func TestRouterShardDown(t *testing.T) {
	ctx := context.Background()
	ms, ss := mems(3)
	r := router(t, shard.Modulo, ss)
	ms[1].down = true
	// "a" → 1, "key1" → 0 (the original's reference values)
	err := r.Put(ctx, "a", "v")
	require.True(t, record.IsUnavailable(err), "%v", err)
	var ue *record.UnavailableError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "Shard 1", ue.Backend)
	_, err = r.Get(ctx, "a")
	assert.True(t, record.IsUnavailable(err))
	require.NoError(t, r.Put(ctx, "key1", "v"))
	_, err = r.Get(ctx, "key2") // → 0, never written
	assert.ErrorIs(t, err, record.ErrNotFound)

	ms[0].putErr = errors.New("constraint violated")
	err = r.Put(ctx, "key1", "v")
	assert.False(t, record.IsUnavailable(err), "a non-availability error stays one")
	assert.ErrorContains(t, err, "shard 0")
}

func TestResharding(t *testing.T) {
	ctx := context.Background()
	ms, ss := mems(4)
	r, err := router(t, shard.Jump, ss).Resharding(3)
	require.NoError(t, err)
	old, err := shard.NewPlacement(shard.Jump, 3)
	require.NoError(t, err)
	assert.Equal(t, old.Owner("x"), r.Previous().Owner("x"))

	// A key whose owner changes (3 shards → 4) and one whose owner stays.
	var moving, staying string
	for i := 0; moving == "" || staying == ""; i++ {
		k := fmt.Sprint("k", i)
		if old.Owner(k) != r.Owner(k) {
			moving = k
		} else {
			staying = k
		}
	}
	from, to := old.Owner(moving), r.Owner(moving)
	require.Equal(t, 3, to, "jump moves keys only to the new shard")

	t.Run("a key still on its old shard is read from there", func(t *testing.T) {
		require.NoError(t, ms[from].Put(ctx, moving, "old"))
		rec, err := r.Get(ctx, moving)
		require.NoError(t, err)
		assert.Equal(t, "old", rec.Value)
	})
	t.Run("writes go to the new owner, whose version wins", func(t *testing.T) {
		require.NoError(t, r.Put(ctx, moving, "new"))
		assert.True(t, ms[to].has(moving))
		rec, err := r.Get(ctx, moving)
		require.NoError(t, err)
		assert.Equal(t, "new", rec.Value)
	})
	t.Run("a key whose owner stays is read once", func(t *testing.T) {
		o := r.Owner(staying)
		ms[o].gets = nil
		_, err := r.Get(ctx, staying)
		assert.ErrorIs(t, err, record.ErrNotFound)
		assert.Equal(t, []string{staying}, ms[o].gets)
	})
	t.Run("a row moved between the two reads is found by the third", func(t *testing.T) {
		k := moving + "-raced"
		for old.Owner(k) == r.Owner(k) {
			k += "x"
		}
		f, n := old.Owner(k), r.Owner(k)
		require.NoError(t, ms[f].Put(ctx, k, "v"))
		// The new owner misses; before the old owner answers, a Mover copies and deletes.
		ms[f].onGet = func(key string) {
			if key == k {
				ms[f].move(k, ms[n])
			}
		}
		t.Cleanup(func() { ms[f].onGet = nil })
		ms[n].gets = nil
		rec, err := r.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, "v", rec.Value)
		assert.Equal(t, []string{k, k}, ms[n].gets, "the new owner was asked twice")
	})
	t.Run("the old shard down only matters for keys not yet on the new one", func(t *testing.T) {
		ms[from].down = true
		t.Cleanup(func() { ms[from].down = false })
		rec, err := r.Get(ctx, moving)
		require.NoError(t, err)
		assert.Equal(t, "new", rec.Value)
		_, err = r.Get(ctx, moving+"-never-written")
		if old.Owner(moving+"-never-written") == from && r.Owner(moving+"-never-written") != from {
			assert.True(t, record.IsUnavailable(err))
		}
	})
	t.Run("bad resharding sizes", func(t *testing.T) {
		for _, from := range []int{0, 4, 5} {
			_, err := router(t, shard.Jump, ss).Resharding(from)
			assert.Error(t, err, "from %d", from)
		}
	})
}

// The record.Store contract holds for a Router over three PostgreSQL databases, for every
// strategy, and while resharding.
func TestRouterContract(t *testing.T) {
	stores := make([]record.Store, 4)
	for i := range stores {
		stores[i] = pgStore(t)
	}
	for _, strategy := range shard.Strategies() {
		t.Run(strategy, func(t *testing.T) { recordtest.Run(t, router(t, strategy, stores[:3])) })
	}
	t.Run("resharding", func(t *testing.T) {
		r, err := router(t, shard.Modulo, stores).Resharding(3)
		require.NoError(t, err)
		recordtest.Run(t, r)
	})
}

func pgStore(t testing.TB) *pgstore.Store {
	return pgstore.NewStore(pgPool(t, testenv.PostgresURL(t)))
}

func pgPool(t testing.TB, url string) *pgstore.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgstore.NewPool(ctx, url, pgstore.PoolConfig{
		Timeouts: pgstore.Timeouts{ConnectTimeout: 2 * time.Second, QueryTimeout: 10 * time.Second},
		MinConns: 0, MaxConns: 10,
	})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, pgstore.EnsureSchema(sctx, pool, pgstore.Schema))
	return pool
}
