package cache_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
)

// countingStore counts the reads that reach the store and can hold them at a gate.
type countingStore struct {
	record.Store
	gets atomic.Int64
	gate atomic.Pointer[chan struct{}] // while set, every Get waits for it to close
}

func (c *countingStore) Get(ctx context.Context, key string) (record.Record, error) {
	c.gets.Add(1)
	if g := c.gate.Load(); g != nil {
		<-*g
	}
	return c.Store.Get(ctx, key)
}

type tieredOpts struct {
	size     int
	ttl      time.Duration
	alone    bool // no invalidation bus
	disconnd time.Duration
}

// newTiered builds an L1 over an Aside over store on rdb, with a bus on the channel of
// rdb's database unless o.alone.
func newTiered(t testing.TB, rdb *redisclient.Client, store record.Store, o tieredOpts) *cache.Tiered {
	t.Helper()
	if o.size == 0 {
		o.size = 100
	}
	if o.ttl == 0 {
		o.ttl = time.Minute
	}
	var bus *cache.Bus
	if !o.alone {
		bus = cache.NewBus(rdb, cache.DefaultChannel(rdb.Options().DB), slog.Default())
	}
	tc, err := cache.NewTiered(cache.NewAside(rdb, store, time.Minute, slog.Default()), rdb, cache.TieredOptions{
		L1Size: o.size, L1TTL: o.ttl, DisconnectedTTL: o.disconnd, Bus: bus, Logger: slog.Default(),
	})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	if bus != nil {
		testenv.WaitFor(t, 5*time.Second, "the invalidation subscription", bus.Subscribed)
	}
	return tc
}

func lookup(t testing.TB, tc *cache.Tiered, key string) (string, record.Tier) {
	t.Helper()
	r, err := tc.Read(context.Background(), key)
	require.NoError(t, err, key)
	return r.Value, r.Tier
}

func TestTieredContract(t *testing.T) {
	rdb := newRedis(t, testenv.RedisURL(t))
	recordtest.Run(t, newTiered(t, rdb, newDB(t), tieredOpts{}))
}

// The original's test_cache_tiers.py, with the L1 really working: test_l1_cache_set_and_get,
// test_l1_cache_miss, test_l2_cache_set_and_get, test_l2_cache_miss,
// test_multi_tier_cache_hit_l1, test_multi_tier_cache_hit_l2, test_multi_tier_cache_miss,
// test_set_in_both_caches, test_cache_stats_tracking. The first read is L3 and fills both
// tiers, the next ones are L1; a second process (its own L1, the same Redis) is served
// from L2, then L1; a missing key is L3 every time.
func TestTieredLevels(t *testing.T) {
	ctx := context.Background()
	rdb, db := newRedis(t, testenv.RedisURL(t)), newDB(t)
	a := newTiered(t, rdb, db, tieredOpts{})
	b := newTiered(t, rdb, db, tieredOpts{})
	require.NoError(t, a.Put(ctx, "k", "v"))

	for i, want := range []record.Tier{record.FromStore, record.FromMemory, record.FromMemory} {
		v, level := lookup(t, a, "k")
		assert.Equal(t, "v", v)
		assert.Equal(t, want, level, "read %d", i)
	}
	v, level := lookup(t, b, "k")
	assert.Equal(t, "v", v)
	assert.Equal(t, record.FromCache, level, "promoted from Redis")
	_, level = lookup(t, b, "k")
	assert.Equal(t, record.FromMemory, level)

	miss, err := a.Read(ctx, "missing")
	assert.ErrorIs(t, err, record.ErrNotFound)
	assert.Equal(t, record.FromStore, miss.Tier)
	miss, err = a.Read(ctx, "missing")
	assert.ErrorIs(t, err, record.ErrNotFound)
	assert.Equal(t, record.FromStore, miss.Tier, "misses are not cached")

	st := a.Stats(ctx)
	assert.Equal(t, int64(2), st.L1Hits)
	assert.Equal(t, int64(3), st.L1Misses)
	assert.Equal(t, int64(0), st.L2Hits)
	assert.Equal(t, int64(3), st.L2Misses)
	assert.Equal(t, int64(3), st.DBReads)
	assert.Equal(t, 1, st.L1Size)
	assert.Equal(t, int64(1), st.L2Keys)
	assert.True(t, st.L2Available)
	assert.True(t, st.Subscribed)
}

// test_l1_cache_invalidation, test_l2_cache_invalidation, test_invalidate_both_caches: a
// write (or Invalidate) drops the key from L1 and L2, so the next read comes from the
// database with the new value.
func TestTieredWriteInvalidates(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	tc := newTiered(t, rdb, newDB(t), tieredOpts{})
	require.NoError(t, tc.Put(ctx, "k", "v1"))
	lookup(t, tc, "k")
	_, level := lookup(t, tc, "k")
	require.Equal(t, record.FromMemory, level)

	require.NoError(t, tc.Put(ctx, "k", "v2"))
	assert.Equal(t, int64(0), rdb.Exists(ctx, cache.CacheKey("k")).Val(), "L2 copy deleted")
	v, level := lookup(t, tc, "k")
	assert.Equal(t, "v2", v)
	assert.Equal(t, record.FromStore, level)

	tc.Invalidate(ctx, "k")
	_, level = lookup(t, tc, "k")
	assert.Equal(t, record.FromStore, level, "Invalidate drops both tiers")
}

// Many concurrent misses of one key make one database read: the first is held in the
// store until every reader has started, and all of them get the value.
func TestTieredStampedeOneDatabaseRead(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	db := &countingStore{Store: newDB(t)}
	tc := newTiered(t, rdb, db, tieredOpts{})
	require.NoError(t, tc.Put(ctx, "hot", "v"))

	gate := make(chan struct{})
	db.gate.Store(&gate)
	const readers = 50
	var started atomic.Int64
	var wg sync.WaitGroup
	values := make(chan string, readers)
	for range readers {
		wg.Go(func() {
			started.Add(1)
			rec, err := tc.Read(ctx, "hot")
			assert.NoError(t, err)
			values <- rec.Value
		})
	}
	testenv.WaitFor(t, 10*time.Second, "every reader to start", func() bool { return started.Load() == readers })
	testenv.WaitFor(t, 10*time.Second, "the first read to reach the store", func() bool { return db.gets.Load() >= 1 })
	db.gate.Store(nil)
	close(gate)
	wg.Wait()
	close(values)
	for v := range values {
		assert.Equal(t, "v", v)
	}
	assert.Equal(t, int64(1), db.gets.Load(), "one database read for %d concurrent misses", readers)
	assert.Equal(t, int64(1), tc.Stats(ctx).DBReads)
}

// A hot key is answered from L1 without any Redis command or database read.
func TestTieredHotKeyNoRoundTrip(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	redisSent := testenv.CountRedis(rdb)
	db := &countingStore{Store: newDB(t)}
	tc := newTiered(t, rdb, db, tieredOpts{})
	require.NoError(t, tc.Put(ctx, "hot", "v"))
	lookup(t, tc, "hot")

	redisBefore, dbBefore := redisSent.Commands(), db.gets.Load()
	for range 1000 {
		v, level := lookup(t, tc, "hot")
		require.Equal(t, "v", v)
		require.Equal(t, record.FromMemory, level)
	}
	assert.Equal(t, redisBefore, redisSent.Commands(), "no Redis command")
	assert.Equal(t, dbBefore, db.gets.Load(), "no database read")
}

// test_l1_cache_size_limit (test_cache_tiers.py): after 110 fills L1 holds at most 100.
func TestTieredL1SizeBound(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	tc := newTiered(t, rdb, newDB(t), tieredOpts{size: 100})
	for i := range 110 {
		k := fmt.Sprint("k", i)
		require.NoError(t, tc.Put(ctx, k, "v"))
		lookup(t, tc, k)
	}
	st := tc.Stats(ctx)
	assert.LessOrEqual(t, st.L1Size, 100)
	assert.Greater(t, st.L1Size, 0)
	assert.Equal(t, 100, st.L1MaxSize)
}

// test_l1_ttl_expiration, made real: an L1 entry expires after its TTL, counted from the
// fill (reads do not extend it).
func TestTieredL1Expires(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	tc := newTiered(t, rdb, newDB(t), tieredOpts{ttl: 300 * time.Millisecond})
	require.NoError(t, tc.Put(ctx, "k", "v"))
	lookup(t, tc, "k")
	testenv.WaitFor(t, 5*time.Second, "the L1 entry to expire", func() bool {
		_, level := lookup(t, tc, "k") // reads keep hitting until it expires
		return level == record.FromCache
	})
}

// pausedStore holds the first Get after it has read from the store, until released: a
// reader caught between its read and its fill.
type pausedStore struct {
	record.Store
	held    atomic.Bool
	paused  chan struct{}
	release chan struct{}
}

func newPausedStore(s record.Store) *pausedStore {
	return &pausedStore{Store: s, paused: make(chan struct{}), release: make(chan struct{})}
}

func (p *pausedStore) Get(ctx context.Context, key string) (record.Record, error) {
	rec, err := p.Store.Get(ctx, key)
	if p.held.CompareAndSwap(false, true) {
		close(p.paused)
		<-p.release
	}
	return rec, err
}

// A reader that read the old row before a write must not put it into L1 after the write,
// and a reader that starts after the write must not share the old reader's result.
func TestTieredSlowFillCannotResurrect(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	base := newDB(t)
	require.NoError(t, base.Put(ctx, "k", "old"))
	db := newPausedStore(base)
	tc := newTiered(t, rdb, db, tieredOpts{})

	slow := make(chan string)
	go func() {
		rec, _ := tc.Read(ctx, "k")
		slow <- rec.Value
	}()
	<-db.paused // the slow reader holds "old" and has filled nothing yet

	require.NoError(t, tc.Put(ctx, "k", "new"))
	v, _ := lookup(t, tc, "k")
	assert.Equal(t, "new", v, "a read after the write does not join the older read")
	close(db.release)
	assert.Equal(t, "old", <-slow, "the slow read began before the write")

	for range 3 {
		v, _ := lookup(t, tc, "k")
		assert.Equal(t, "new", v, "the old row never lands in L1 or L2")
	}
}

// Two processes' L1s on one Redis: a write through one stops the other serving the old
// value as soon as the invalidation arrives.
func TestTieredCrossInstanceInvalidation(t *testing.T) {
	ctx := context.Background()
	url := testenv.RedisURL(t)
	db := newDB(t)
	a := newTiered(t, newRedis(t, url), db, tieredOpts{})
	b := newTiered(t, newRedis(t, url), db, tieredOpts{})
	require.NoError(t, a.Put(ctx, "k", "v1"))
	// The write's invalidation reaches b asynchronously: let it land before b fills.
	testenv.WaitFor(t, 2*time.Second, "b to receive the first write", func() bool { return b.Stats(ctx).Received == 1 })
	lookup(t, b, "k")
	_, level := lookup(t, b, "k")
	require.Equal(t, record.FromMemory, level)

	require.NoError(t, a.Put(ctx, "k", "v2"))
	testenv.WaitFor(t, 2*time.Second, "b to drop its L1 copy", func() bool {
		v, _ := lookup(t, b, "k")
		return v == "v2"
	})
	assert.Equal(t, int64(2), b.Stats(ctx).Received)

	lookup(t, a, "k")
	require.NoError(t, b.Clear(ctx))
	testenv.WaitFor(t, 2*time.Second, "a to clear its L1", func() bool {
		_, level := lookup(t, a, "k")
		return level != record.FromMemory
	})
}

// If the subscription's connection is killed, L1 is cleared and refilled with short
// lifetimes until the bus has subscribed again, then cleared once more.
func TestTieredSubscriptionLossClearsL1(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	rdb := newRedis(t, srv.URL(0))
	tc := newTiered(t, rdb, newDB(t), tieredOpts{})
	require.NoError(t, tc.Put(ctx, "k", "v"))
	lookup(t, tc, "k")
	_, level := lookup(t, tc, "k")
	require.Equal(t, record.FromMemory, level)
	clears := tc.Stats(ctx).L1Clears

	require.NoError(t, rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	testenv.WaitFor(t, 5*time.Second, "L1 to be cleared twice (lost, then back)", func() bool {
		return tc.Stats(ctx).L1Clears >= clears+2
	})
	testenv.WaitFor(t, 5*time.Second, "the subscription to be back", func() bool { return tc.Stats(ctx).Subscribed })
	_, level = lookup(t, tc, "k")
	assert.NotEqual(t, record.FromMemory, level, "nothing from before the loss survives")
}

// With Redis down, reads are served from L1, then the database; L1 entries filled
// meanwhile are short-lived; writes succeed. When Redis is back, the bus subscribes again.
func TestTieredRedisOutage(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	rdb := newRedis(t, srv.URL(0))
	tc := newTiered(t, rdb, newDB(t), tieredOpts{disconnd: 300 * time.Millisecond})
	require.NoError(t, tc.Put(ctx, "k", "v1"))
	lookup(t, tc, "k")

	srv.Stop(t)
	testenv.WaitFor(t, 5*time.Second, "the bus to notice", func() bool { return !tc.Stats(ctx).Subscribed })
	require.NoError(t, tc.Put(ctx, "k", "v2"), "the database has the write")
	v, level := lookup(t, tc, "k")
	assert.Equal(t, "v2", v)
	assert.Equal(t, record.FromStore, level)
	st := tc.Stats(ctx)
	assert.False(t, st.L2Available)
	assert.Equal(t, int64(1), st.L2Pending)
	testenv.WaitFor(t, 5*time.Second, "L1 to serve again", func() bool {
		_, level := lookup(t, tc, "k")
		return level == record.FromMemory
	})
	testenv.WaitFor(t, 5*time.Second, "the short-lived L1 entry to expire", func() bool {
		_, level := lookup(t, tc, "k")
		return level == record.FromStore
	})

	srv.Start(t)
	testenv.WaitFor(t, 10*time.Second, "the bus to subscribe again", func() bool { return tc.Stats(ctx).Subscribed })
	assert.True(t, tc.Stats(ctx).L2Available)
}

// Clear removes record:* keys and leases, and nothing else, from Redis, and empties L1.
func TestTieredClear(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	tc := newTiered(t, rdb, newDB(t), tieredOpts{})
	for i := range 1200 { // more than one SCAN/UNLINK batch
		require.NoError(t, rdb.Set(ctx, cache.CacheKey(fmt.Sprint("bulk", i)), "{}", time.Minute).Err())
	}
	require.NoError(t, rdb.Set(ctx, "other:key", "x", 0).Err())
	require.NoError(t, rdb.Set(ctx, cache.LeaseKey(cache.CacheKey("x")), "t", time.Minute).Err())
	require.NoError(t, tc.Put(ctx, "k", "v"))
	lookup(t, tc, "k")

	require.NoError(t, tc.Clear(ctx))
	n, err := rdb.DBSize(ctx).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "only the foreign key is left")
	assert.Equal(t, "x", rdb.Get(ctx, "other:key").Val())
	assert.Equal(t, 0, tc.Stats(ctx).L1Size)
	_, level := lookup(t, tc, "k")
	assert.Equal(t, record.FromStore, level)
}

// A Tiered without a bus works alone; its stats say invalidations are not missed.
func TestTieredWithoutBus(t *testing.T) {
	ctx := context.Background()
	rdb := newRedis(t, testenv.RedisURL(t))
	tc := newTiered(t, rdb, newDB(t), tieredOpts{alone: true})
	require.NoError(t, tc.Put(ctx, "k", "v"))
	lookup(t, tc, "k")
	_, level := lookup(t, tc, "k")
	assert.Equal(t, record.FromMemory, level)
	assert.True(t, tc.Stats(ctx).Subscribed)
}

func TestNewTieredRejectsBadOptions(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", "1")})
	defer rdb.Close()
	_, err := cache.NewTiered(cache.NewAside(rdb, nil, time.Minute, slog.Default()), rdb, cache.TieredOptions{L1Size: 0, L1TTL: time.Second})
	assert.Error(t, err)
}
