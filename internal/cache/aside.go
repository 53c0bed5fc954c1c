// Package cache holds the caching parts the layers compose: Redis cache-aside with
// lease-guarded fills (Aside, Leased; L2 on), the in-process tier over it (Tiered; L5,
// L10) and the invalidation bus between processes.
package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/record"
)

// Aside is cache-aside over another record.Store: reads try Redis first and fill it from
// the store on a miss; writes go to the store and then delete the cached copy.
//
// Plain cache-aside has a race (the original's, reference §3.3): a reader misses, loads the
// old row, a writer commits and deletes the key, and then the reader puts the old row back,
// stale for the whole TTL. Aside closes it with fill leases:
//
//  1. on a miss the reader stores a random token under the key's lease before it reads
//     the store;
//  2. a writer, after its commit, deletes both the cached copy and the lease;
//  3. the reader fills the cache only if its token is still the lease (one Lua script).
//
// A reader whose read may predate a commit therefore always finds its lease gone or taken
// by a later reader, and does not fill. If the delete after a commit fails (Redis
// unreachable), the key is remembered and no read uses the cache until those deletes have
// been delivered, so a stale copy that survived the outage is never served.
//
// The lease mechanics live in Leased, which other layers use to cache other values.
type Aside struct {
	rdb  redis.UniversalClient
	next record.Store
	fill *Leased[record.Record]
}

// leaseTTL bounds how long a lease outlives a reader that died between lease and fill.
const leaseTTL = 10 * time.Second

// NewAside returns cache-aside over next, keeping entries for ttl.
func NewAside(rdb redis.UniversalClient, next record.Store, ttl time.Duration, logger *slog.Logger) *Aside {
	return &Aside{rdb: rdb, next: next, fill: NewLeased[record.Record](rdb, ttl, logger)}
}

// CacheKey is the Redis key of a cached record, as in the original: record:{key}.
func CacheKey(key string) string { return "record:" + key }

// RecordKeys are the Redis keys of key's cached record and of its fill lease: what to
// delete when the record changes behind cache-aside's back (a write buffer's worker, a
// shard move).
func RecordKeys(key string) []string {
	ck := CacheKey(key)
	return []string{ck, LeaseKey(ck)}
}

// fillScript sets KEYS[1] to ARGV[2] for ARGV[3] ms if KEYS[2] (the lease) still holds
// ARGV[1], and drops the lease.
var fillScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then
	redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
	redis.call('DEL', KEYS[2])
	return 1
end
return 0`)

// releaseScript drops the lease KEYS[1] if it still holds ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)

var _ record.Reader = (*Aside)(nil)

// Get implements record.Store.
func (a *Aside) Get(ctx context.Context, key string) (record.Record, error) {
	r, err := a.Read(ctx, key)
	return r.Record, err
}

// Read reads key, from the cache when it can (FromCache), else from the store, whose
// provenance it passes on (a replica's name, say): what the store answered is what fills
// the cache.
func (a *Aside) Read(ctx context.Context, key string) (record.Read, error) {
	var loaded record.Read
	rec, fromCache, err := a.fill.Lookup(ctx, CacheKey(key), func(ctx context.Context) (record.Record, error) {
		r, err := record.ReadFrom(ctx, a.next, key)
		loaded = r
		return r.Record, err
	})
	if fromCache {
		return record.Read{Record: rec, Tier: record.FromCache}, nil
	}
	return loaded, err
}

// PeekKey is the Redis key of key's cached record, for a caller that reads it in a command
// of its own, with other keys (L6 reads its write buffer in the same MGET), and decodes what
// it read with Cached. "" when the cache must not be read now (an invalidation is still
// undelivered; Read delivers it first). The caller's command must go to the Aside's Redis.
func (a *Aside) PeekKey(key string) string {
	if !a.fill.Usable() {
		return ""
	}
	return CacheKey(key)
}

// Cached decodes the value read from PeekKey(key), counted as a hit; false means it could
// not be used, and the caller then reads through Read, which counts the miss.
func (a *Aside) Cached(data []byte) (record.Record, bool) { return a.fill.Cached(data) }

// Put writes through to the store, then invalidates the cached copy and any fill lease.
// The write is acknowledged once the store committed it, even if Redis is unreachable.
// Even a failed write may have committed (a timeout after the commit), so the
// invalidation is unconditional: it costs at most one refill.
func (a *Aside) Put(ctx context.Context, key, value string) error {
	err := a.next.Put(ctx, key, value)
	a.Invalidate(ctx, key)
	return err
}

// Invalidate deletes the cached copy of key and its lease; if Redis cannot be reached the
// key is kept until the delete can be delivered.
func (a *Aside) Invalidate(ctx context.Context, key string) { a.fill.Invalidate(ctx, CacheKey(key)) }

// Stats are the cache's counters: this process's hits and misses, and the number of keys
// in its Redis database.
type Stats struct {
	Available bool     `json:"available"`
	Hits      *int64   `json:"hits"`
	Misses    *int64   `json:"misses"`
	Keys      *int64   `json:"keys"`
	HitRate   *float64 `json:"hit_rate"` // percent, 0–100, two decimals
	Pending   int64    `json:"invalidations_pending"`
	Skipped   bool     `json:"skipped"` // Redis failed and is skipped: reads go to the store until a probe finds it back
}

// skipper is a Redis client that can say it is being skipped (redisclient.Client).
type skipper interface{ Skipped() bool }

// Stats returns the counters; the numeric fields are null while Redis is unreachable, as
// in the original.
func (a *Aside) Stats(ctx context.Context) Stats {
	st := Stats{Pending: a.fill.Pending()}
	if s, ok := a.rdb.(skipper); ok {
		st.Skipped = s.Skipped()
	}
	keys, err := a.rdb.DBSize(ctx).Result()
	if err != nil {
		return st
	}
	hits, misses := a.fill.Counts()
	rate := HitRate(hits, misses)
	st.Available, st.Hits, st.Misses, st.Keys, st.HitRate = true, &hits, &misses, &keys, &rate
	return st
}

// HitRate is hits/(hits+misses) as a percentage rounded to two decimals; 0 with no traffic.
func HitRate(hits, misses int64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return float64(int64(float64(hits)/float64(hits+misses)*10000+0.5)) / 100
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
