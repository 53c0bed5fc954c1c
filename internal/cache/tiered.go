package cache

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/dblayers/dblayers/internal/record"
)

// Level is the original's cache_level name of the tier that answered a Tiered read: "L1"
// (this process's memory), "L2" (Redis) or "L3" (the store).
func Level(t record.Tier) string {
	switch t {
	case record.FromMemory:
		return "L1"
	case record.FromCache:
		return "L2"
	}
	return "L3"
}

// Tiered is a two-level cache over a store: an in-process L1 bounded by size and TTL
// (otter), over an Aside (Redis L2 with lease-guarded fills), over the store (L3).
//
//   - A read tries L1, then L2, then the store, and fills the levels it missed. Concurrent
//     misses of one key in one process share a single L2/store read (singleflight).
//   - A write goes to the store through the Aside (which then deletes the L2 copy), drops
//     the L1 copy, and publishes the key on the Bus so that every other process drops its
//     L1 copy too.
//   - L1 fills cannot resurrect an old value: each key has a version (its stripe's counter
//     plus a global epoch) that every invalidation bumps before it deletes; a fill records
//     the version before it reads L2 or the store and stores its result only if the
//     version is unchanged, checked under otter's per-key lock. This is the L1
//     counterpart of the Aside's leases.
//
// Staleness across processes: a write on another process stops this one serving the
// old value once its Bus message arrives (pub/sub latency, milliseconds). If the
// subscription breaks, L1 is cleared at once, entries filled meanwhile live at most
// DisconnectedTTL, and L1 is cleared again when the subscription is back; a dead
// connection that was not closed is noticed within two Bus idle intervals (2 s).
type Tiered struct {
	l1        *otter.Cache[string, *l1Entry]
	l2        *Aside
	rdb       redis.UniversalClient
	bus       *Bus
	ttl       time.Duration
	degraded  time.Duration
	maxSize   int
	seed      maphash.Seed
	epoch     atomic.Uint64 // bumped by every clear of the whole L1
	stripes   [versionStripes]atomic.Uint64
	flights   atomic.Pointer[singleflight.Group]
	l1Hits    atomic.Int64
	l1Misses  atomic.Int64
	l2Hits    atomic.Int64
	l2Misses  atomic.Int64
	dbReads   atomic.Int64
	cleared   atomic.Int64
	l1Removed atomic.Int64
}

var _ record.Reader = (*Tiered)(nil)

// versionStripes is how many per-key version counters there are: an invalidation only
// cancels the in-flight fills of keys that share its stripe.
const versionStripes = 1024

type l1Entry struct {
	rec record.Record
	ttl time.Duration
}

// TieredOptions configure NewTiered.
type TieredOptions struct {
	L1Size int           // most entries kept in L1 (the original's L1_CACHE_SIZE, 100)
	L1TTL  time.Duration // how long an L1 entry lives after it was filled (L1_CACHE_TTL, 60 s)
	// DisconnectedTTL is how long an L1 entry filled while the Bus is not subscribed
	// lives (default 1 s): without invalidations, this bounds how stale L1 can be.
	DisconnectedTTL time.Duration
	// Bus broadcasts invalidations to, and receives them from, the other processes
	// sharing the store. Nil means this process is alone: L1 is invalidated locally only.
	Bus    *Bus
	Logger *slog.Logger
}

// NewTiered returns an L1 cache over l2 (whose Redis client is rdb). If opts.Bus is set,
// the cache starts listening on it; Close stops it.
func NewTiered(l2 *Aside, rdb redis.UniversalClient, opts TieredOptions) (*Tiered, error) {
	if opts.L1Size <= 0 || opts.L1TTL <= 0 {
		return nil, fmt.Errorf("L1 cache size and TTL must be positive (got %d, %s)", opts.L1Size, opts.L1TTL)
	}
	if opts.DisconnectedTTL <= 0 {
		opts.DisconnectedTTL = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Tiered{
		l2: l2, rdb: rdb, bus: opts.Bus, ttl: opts.L1TTL, degraded: min(opts.DisconnectedTTL, opts.L1TTL),
		maxSize: opts.L1Size, seed: maphash.MakeSeed(),
	}
	l1, err := otter.New(&otter.Options[string, *l1Entry]{
		MaximumSize: opts.L1Size,
		// TTL counts from the fill, not from the last read, so that it bounds staleness.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *l1Entry]) time.Duration { return e.Value.ttl }),
		Logger:           &otterLogger{opts.Logger},
	})
	if err != nil {
		return nil, fmt.Errorf("L1 cache: %w", err)
	}
	t.l1 = l1
	t.flights.Store(new(singleflight.Group))
	if t.bus != nil {
		t.bus.start(t.invalidateLocal, t.clearLocal)
	}
	return t, nil
}

// Close stops listening for invalidations. It does not close the Redis client.
func (t *Tiered) Close() {
	if t.bus != nil {
		t.bus.Close()
	}
	t.l1.StopAllGoroutines()
}

// Get implements record.Store.
func (t *Tiered) Get(ctx context.Context, key string) (record.Record, error) {
	r, err := t.Read(ctx, key)
	return r.Record, err
}

// Read reads key and tells which tier answered: FromMemory (L1, no network round trip),
// FromCache (L2) or the store's own answer (L3). A missing key is record.ErrNotFound from
// the store; misses are not cached.
func (t *Tiered) Read(ctx context.Context, key string) (record.Read, error) {
	if e, ok := t.l1.GetIfPresent(key); ok {
		t.l1Hits.Add(1)
		return record.Read{Record: e.rec, Tier: record.FromMemory}, nil
	}
	// The shared read runs without the caller's cancellation, so that one client going
	// away does not fail the others waiting on it; it is bounded by the store's and
	// Redis's own timeouts. Each caller still stops waiting when its context ends.
	ch := t.flights.Load().DoChan(key, func() (any, error) {
		return t.load(context.WithoutCancel(ctx), key)
	})
	select {
	case res := <-ch:
		r, _ := res.Val.(record.Read)
		t.count(r.Tier)
		return r, res.Err
	case <-ctx.Done():
		t.l1Misses.Add(1)
		return record.Read{}, ctx.Err()
	}
}

// count records one read answered at level: hits and misses per tier, as the original
// counted them (a read that misses both tiers is one L1 and one L2 miss).
func (t *Tiered) count(tier record.Tier) {
	switch tier {
	case record.FromMemory:
		t.l1Hits.Add(1)
	case record.FromCache:
		t.l1Misses.Add(1)
		t.l2Hits.Add(1)
	default:
		t.l1Misses.Add(1)
		t.l2Misses.Add(1)
	}
}

// load is the one read that concurrent misses of key share. A panic in it becomes an
// error: singleflight would re-raise it where no middleware can recover it.
func (t *Tiered) load(ctx context.Context, key string) (r record.Read, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = record.Read{}, fmt.Errorf("L1 load of %q panicked: %v", key, p)
		}
	}()
	v := t.version(key) // before anything is read: see Tiered
	if e, ok := t.l1.GetIfPresent(key); ok {
		// Filled by a flight that ended after this caller missed: no second read.
		return record.Read{Record: e.rec, Tier: record.FromMemory}, nil
	}
	r, err = t.l2.Read(ctx, key)
	if r.Tier != record.FromCache {
		t.dbReads.Add(1)
	}
	if err != nil {
		return r, err
	}
	t.fill(key, r.Record, v)
	return r, nil
}

// version is key's version: the global epoch and the counter of key's stripe.
type version struct{ epoch, stripe uint64 }

func (t *Tiered) stripe(key string) *atomic.Uint64 {
	return &t.stripes[maphash.String(t.seed, key)%versionStripes]
}

func (t *Tiered) version(key string) version {
	return version{t.epoch.Load(), t.stripe(key).Load()}
}

// fill stores rec in L1 if no invalidation of key happened since v was taken. The check
// and the store are one step under otter's lock of the key, and invalidations bump the
// version before they delete, so an invalidation either cancels the fill or deletes it.
func (t *Tiered) fill(key string, rec record.Record, v version) {
	ttl := t.ttl
	if t.bus != nil && !t.bus.Subscribed() {
		ttl = t.degraded
	}
	e := &l1Entry{rec: rec, ttl: ttl}
	t.l1.Compute(key, func(old *l1Entry, found bool) (*l1Entry, otter.ComputeOp) {
		if t.version(key) != v {
			return old, otter.CancelOp
		}
		return e, otter.WriteOp
	})
}

// Put writes through the L2 cache to the store, drops the key from this process's L1
// and tells the other processes to drop it from theirs.
func (t *Tiered) Put(ctx context.Context, key, value string) error {
	err := t.l2.Put(ctx, key, value)
	// Even a failed write may have committed (a timeout after the commit), so the
	// invalidation is unconditional: it costs at most one refill.
	t.invalidateLocal(key)
	if t.bus != nil {
		t.bus.Publish(ctx, key)
	}
	return err
}

// Invalidate drops key from L1 here and on the other processes, and from L2.
func (t *Tiered) Invalidate(ctx context.Context, key string) {
	t.l2.Invalidate(ctx, key)
	t.invalidateLocal(key)
	if t.bus != nil {
		t.bus.Publish(ctx, key)
	}
}

// invalidateLocal drops key from this process's L1: version first, so that no fill in
// flight can store what it read before; then the shared read, so that later readers
// start a new one; then the entry.
func (t *Tiered) invalidateLocal(key string) {
	t.stripe(key).Add(1)
	t.flights.Load().Forget(key)
	if _, ok := t.l1.Invalidate(key); ok {
		t.l1Removed.Add(1)
	}
}

// clearLocal empties this process's L1, cancelling every fill in flight.
func (t *Tiered) clearLocal() {
	t.epoch.Add(1)
	t.flights.Store(new(singleflight.Group))
	t.l1.InvalidateAll()
	t.cleared.Add(1)
}

// Clear empties this layer's caches: the record:* keys (and fill leases) in Redis, by
// SCAN and UNLINK in batches, never FLUSHDB; this process's L1; and, through the Bus,
// the L1 of every other process. L1 is cleared even if Redis cannot be reached; the
// error then says L2 was not.
func (t *Tiered) Clear(ctx context.Context) error {
	_, err := unlinkMatching(ctx, t.rdb, CacheKey("*"), LeaseKey(CacheKey("*")))
	t.clearLocal()
	if t.bus != nil {
		t.bus.PublishAll(ctx)
	}
	if err != nil {
		return record.Unavailable("Cache", fmt.Errorf("clear L2: %w", err))
	}
	return nil
}

// TieredStats are a Tiered cache's numbers. Hits and misses are this process's,
// counted per read (see count); L2Keys counts record:* keys in Redis.
type TieredStats struct {
	L1Size       int
	L1MaxSize    int
	L1Hits       int64
	L1Misses     int64
	L2Available  bool
	L2Keys       int64
	L2Hits       int64
	L2Misses     int64
	DBReads      int64 // reads that went past L2 to the store (one per shared flight)
	L2Pending    int64 // L2 invalidations waiting for Redis
	Subscribed   bool  // whether other processes' invalidations reach this one (true without a Bus)
	Received     int64 // invalidations received from other processes
	L1Clears     int64 // times the whole L1 was cleared (clear-cache, subscription changes)
	L1Invalidate int64 // L1 entries dropped by a write of their key
}

// HitRate is the percentage of reads answered by either tier. A read that missed L1 and hit
// L2 is one hit, not a miss and a hit; the counters are read one by one while reads go
// on, so the misses are clamped at 0.
func (s TieredStats) HitRate() float64 {
	return HitRate(s.L1Hits+s.L2Hits, max(0, s.L1Misses-s.L2Hits))
}

// Stats returns the cache's numbers; the L2 fields need Redis (L2Available false and
// L2Keys 0 when it cannot be reached).
func (t *Tiered) Stats(ctx context.Context) TieredStats {
	t.l1.CleanUp() // apply pending evictions and expiries, so the size is exact
	st := TieredStats{
		L1Size: t.l1.EstimatedSize(), L1MaxSize: t.maxSize,
		L1Hits: t.l1Hits.Load(), L1Misses: t.l1Misses.Load(),
		L2Hits: t.l2Hits.Load(), L2Misses: t.l2Misses.Load(),
		DBReads: t.dbReads.Load(), Subscribed: t.bus == nil || t.bus.Subscribed(),
		L1Clears: t.cleared.Load(), L1Invalidate: t.l1Removed.Load(),
	}
	if t.bus != nil {
		st.Received = t.bus.Received()
	}
	a := t.l2.Stats(ctx)
	st.L2Pending = a.Pending
	if a.Available {
		if n, err := countMatching(ctx, t.rdb, CacheKey("*")); err == nil {
			st.L2Available, st.L2Keys = true, n
		}
	}
	return st
}

// scanBatch is how many keys one SCAN step asks for and one UNLINK removes.
const scanBatch = 500

// unlinkMatching removes the keys matching the patterns with SCAN and UNLINK, a batch at
// a time, so that Redis is never blocked by one big command.
func unlinkMatching(ctx context.Context, rdb redis.UniversalClient, patterns ...string) (int64, error) {
	var n int64
	for _, pattern := range patterns {
		it := rdb.Scan(ctx, 0, pattern, scanBatch).Iterator()
		batch := make([]string, 0, scanBatch)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			removed, err := rdb.Unlink(ctx, batch...).Result()
			n += removed
			batch = batch[:0]
			return err
		}
		for it.Next(ctx) {
			if batch = append(batch, it.Val()); len(batch) == scanBatch {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
		if err := it.Err(); err != nil {
			return n, err
		}
		if err := flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// countMatching counts the keys matching pattern with SCAN (never KEYS).
func countMatching(ctx context.Context, rdb redis.UniversalClient, pattern string) (int64, error) {
	var n int64
	it := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for it.Next(ctx) {
		n++
	}
	return n, it.Err()
}

// otterLogger sends otter's warnings to slog.
type otterLogger struct{ l *slog.Logger }

func (o *otterLogger) Warn(ctx context.Context, msg string, err error) {
	o.l.WarnContext(ctx, msg, "error", err)
}

func (o *otterLogger) Error(ctx context.Context, msg string, err error) {
	o.l.ErrorContext(ctx, msg, "error", err)
}
