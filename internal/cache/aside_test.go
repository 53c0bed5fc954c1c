package cache_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
)

func newDB(t testing.TB) *pgstore.Store {
	t.Helper()
	cfg := pgstore.PoolConfig{Timeouts: pgstore.Timeouts{ConnectTimeout: 2 * time.Second, QueryTimeout: 2 * time.Second}, MinConns: 1, MaxConns: 10}
	pool, err := pgstore.NewPool(context.Background(), testenv.PostgresURL(t), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgstore.EnsureSchema(context.Background(), pool, pgstore.Schema))
	return pgstore.NewStore(pool)
}

func newRedis(t testing.TB, url string) *redisclient.Client {
	t.Helper()
	rdb, err := redisclient.New(url)
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// readAside is a.Read as the record, whether the cache answered, and the error.
func readAside(ctx context.Context, a *cache.Aside, key string) (record.Record, bool, error) {
	r, err := a.Read(ctx, key)
	return r.Record, r.Tier == record.FromCache, err
}

func TestAsideContract(t *testing.T) {
	recordtest.Run(t, cache.NewAside(newRedis(t, testenv.RedisURL(t)), newDB(t), time.Minute, slog.Default()))
}

func TestAsideHitsMissesAndInvalidation(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	a := cache.NewAside(rdb, newDB(t), time.Minute, slog.Default())

	_, _, err := readAside(ctx, a, "nope")
	assert.ErrorIs(t, err, record.ErrNotFound)
	assert.Equal(t, int64(0), rdb.Exists(ctx, cache.CacheKey("nope")).Val(), "misses are not cached")

	require.NoError(t, a.Put(ctx, "k", "v1"))
	rec, fromCache, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.False(t, fromCache)
	rec2, fromCache, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.True(t, fromCache)
	assert.Equal(t, rec, rec2, "the cached copy is the row, timestamps included")

	require.NoError(t, a.Put(ctx, "k", "v2"))
	assert.Equal(t, int64(0), rdb.Exists(ctx, cache.CacheKey("k")).Val(), "a write deletes the cached copy")
	rec, fromCache, err = readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, "v2", rec.Value)

	st := a.Stats(ctx)
	require.True(t, st.Available)
	assert.Equal(t, int64(1), *st.Hits)
	assert.Equal(t, int64(3), *st.Misses)
	assert.Equal(t, int64(1), *st.Keys)
	assert.Equal(t, 25.0, *st.HitRate)
}

func TestAsideEntriesExpire(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	a := cache.NewAside(rdb, newDB(t), 200*time.Millisecond, slog.Default())
	require.NoError(t, a.Put(ctx, "k", "v"))
	_, _, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.Equal(t, int64(1), rdb.Exists(ctx, cache.CacheKey("k")).Val())
	testenv.WaitFor(t, 5*time.Second, "the entry to expire", func() bool {
		return rdb.Exists(ctx, cache.CacheKey("k")).Val() == 0
	})
}

// pausingStore stops every Get after it has read from the store, until released: it
// holds a reader at the exact point where plain cache-aside goes wrong.
type pausingStore struct {
	record.Store
	mu      sync.Mutex
	paused  chan struct{} // closed when a Get is held
	release chan struct{}
}

func (p *pausingStore) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused, p.release = make(chan struct{}), make(chan struct{})
}

func (p *pausingStore) Get(ctx context.Context, key string) (record.Record, error) {
	rec, err := p.Store.Get(ctx, key)
	p.mu.Lock()
	paused, release := p.paused, p.release
	p.paused = nil
	p.mu.Unlock()
	if paused != nil {
		close(paused)
		<-release
	}
	return rec, err
}

// The race of reference §3.3: a reader loads the old row, a writer commits and
// invalidates, then the reader fills the cache. With leases the old row never lands.
func TestAsideSlowReaderCannotFillAfterWrite(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	db := &pausingStore{Store: newDB(t)}
	a := cache.NewAside(rdb, db, time.Minute, slog.Default())
	require.NoError(t, a.Put(ctx, "k", "old"))

	db.arm()
	paused, release := db.paused, db.release
	slow := make(chan record.Record)
	go func() {
		rec, _, _ := readAside(ctx, a, "k")
		slow <- rec
	}()
	<-paused // the reader has read "old" and not yet filled the cache

	require.NoError(t, a.Put(ctx, "k", "new"))
	close(release)
	assert.Equal(t, "old", (<-slow).Value, "the slow read began before the write")

	assert.Equal(t, int64(0), rdb.Exists(ctx, cache.CacheKey("k")).Val(), "the old row was not put back")
	rec, _, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.Equal(t, "new", rec.Value)
	rec, fromCache, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.True(t, fromCache)
	assert.Equal(t, "new", rec.Value, "the cache holds the new row")
}

// A second interleaving: after the write another reader fills the new row; the slow
// reader's later fill must not replace it.
func TestAsideSlowReaderCannotOverwriteNewerFill(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	db := &pausingStore{Store: newDB(t)}
	a := cache.NewAside(rdb, db, time.Minute, slog.Default())
	require.NoError(t, a.Put(ctx, "k", "old"))

	db.arm()
	paused, release := db.paused, db.release
	slow := make(chan struct{})
	go func() {
		_, _, _ = readAside(ctx, a, "k")
		close(slow)
	}()
	<-paused
	require.NoError(t, a.Put(ctx, "k", "new"))
	rec, _, err := readAside(ctx, a, "k") // fills "new"
	require.NoError(t, err)
	require.Equal(t, "new", rec.Value)
	close(release)
	<-slow

	rec, fromCache, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.True(t, fromCache)
	assert.Equal(t, "new", rec.Value)
}

// If the delete after a write cannot reach Redis, the cached old copy must not be served
// once Redis answers reads again; the delete is delivered first.
func TestAsideDeferredInvalidation(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	rdb := newRedis(t, srv.URL(0))
	a := cache.NewAside(rdb, newDB(t), time.Minute, slog.Default())
	require.NoError(t, a.Put(ctx, "k", "old"))
	_, _, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	require.Equal(t, int64(1), rdb.Exists(ctx, cache.CacheKey("k")).Val())

	// Redis keeps serving reads but blocks writes: the invalidation times out.
	admin := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	defer admin.Close()
	require.NoError(t, admin.Do(ctx, "CLIENT", "PAUSE", "1500", "WRITE").Err())
	require.NoError(t, a.Put(ctx, "k", "new"), "the write is acknowledged: the database has it")
	assert.Equal(t, int64(1), a.Stats(ctx).Pending)

	rec, fromCache, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.False(t, fromCache, "the cache is bypassed while an invalidation is pending")
	assert.Equal(t, "new", rec.Value)

	require.NoError(t, admin.Do(ctx, "CLIENT", "UNPAUSE").Err())
	rec, fromCache, err = readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.Equal(t, "new", rec.Value)
	assert.False(t, fromCache)
	assert.Equal(t, int64(0), a.Stats(ctx).Pending)
}

// With Redis down, reads come from the database and writes succeed; when it is back, the
// same client uses it again.
func TestAsideRedisOutage(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	a := cache.NewAside(newRedis(t, srv.URL(0)), newDB(t), time.Minute, slog.Default())
	require.NoError(t, a.Put(ctx, "k", "v1"))

	srv.Stop(t)
	require.NoError(t, a.Put(ctx, "k", "v2"))
	rec, fromCache, err := readAside(ctx, a, "k")
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, "v2", rec.Value)
	assert.False(t, a.Stats(ctx).Available)

	srv.Start(t)
	testenv.WaitFor(t, 5*time.Second, "reads to be cached again", func() bool {
		_, fromCache, err := readAside(ctx, a, "k")
		return err == nil && fromCache
	})
	assert.True(t, a.Stats(ctx).Available)
}

func TestHitRate(t *testing.T) {
	assert.Equal(t, 0.0, cache.HitRate(0, 0))
	assert.Equal(t, 66.67, cache.HitRate(2, 1))
	assert.Equal(t, 100.0, cache.HitRate(5, 0))
}
