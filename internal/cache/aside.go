package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
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
type Aside struct {
	rdb    redis.UniversalClient
	next   record.Store
	ttl    time.Duration
	logger *slog.Logger

	hits, misses atomic.Int64
	pending      pendingKeys
}

var _ record.Store = (*Aside)(nil)

// leaseTTL bounds how long a lease outlives a reader that died between lease and fill.
const leaseTTL = 10 * time.Second

// NewAside returns cache-aside over next, keeping entries for ttl.
func NewAside(rdb redis.UniversalClient, next record.Store, ttl time.Duration, logger *slog.Logger) *Aside {
	return &Aside{rdb: rdb, next: next, ttl: ttl, logger: logger, pending: pendingKeys{keys: map[string]struct{}{}}}
}

// CacheKey is the Redis key of a cached record, as in the original: record:{key}.
func CacheKey(key string) string { return "record:" + key }

func leaseKey(key string) string { return "lease:record:" + key }

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

// Get implements record.Store.
func (a *Aside) Get(ctx context.Context, key string) (record.Record, error) {
	rec, _, err := a.Lookup(ctx, key)
	return rec, err
}

// Lookup reads key, from the cache when it can. fromCache tells where the record came from.
func (a *Aside) Lookup(ctx context.Context, key string) (rec record.Record, fromCache bool, err error) {
	if !a.pending.deliver(ctx, a.rdb) {
		a.misses.Add(1)
		rec, err = a.next.Get(ctx, key)
		return rec, false, err
	}
	data, err := a.rdb.Get(ctx, CacheKey(key)).Bytes()
	if err == nil {
		if json.Unmarshal(data, &rec) == nil {
			a.hits.Add(1)
			return rec, true, nil
		}
	}
	a.misses.Add(1)
	cacheUp := err == nil || errors.Is(err, redis.Nil)
	var token string
	if cacheUp {
		token = newToken()
		if a.rdb.Set(ctx, leaseKey(key), token, leaseTTL).Err() != nil {
			token = ""
		}
	}
	rec, err = a.next.Get(ctx, key)
	if token == "" {
		return rec, false, err
	}
	if err != nil {
		_ = releaseScript.Run(ctx, a.rdb, []string{leaseKey(key)}, token).Err()
		return rec, false, err
	}
	if data, err := json.Marshal(rec); err == nil {
		keys := []string{CacheKey(key), leaseKey(key)}
		_ = fillScript.Run(ctx, a.rdb, keys, token, data, a.ttl.Milliseconds()).Err()
	}
	return rec, false, nil
}

// Put writes through to the store, then invalidates the cached copy and any fill lease.
// The write is acknowledged once the store committed it, even if Redis is unreachable.
func (a *Aside) Put(ctx context.Context, key, value string) error {
	if err := a.next.Put(ctx, key, value); err != nil {
		return err
	}
	a.Invalidate(ctx, key)
	return nil
}

// Invalidate deletes the cached copy of key and its lease; if Redis cannot be reached the
// key is kept until the delete can be delivered.
func (a *Aside) Invalidate(ctx context.Context, key string) {
	if err := a.rdb.Del(ctx, CacheKey(key), leaseKey(key)).Err(); err != nil {
		a.pending.add(key)
		a.logger.Warn("cache invalidation deferred", "key", key, "error", err)
	}
}

// Stats are the cache's counters: this process's hits and misses, and the number of keys
// in its Redis database.
type Stats struct {
	Available bool     `json:"available"`
	Hits      *int64   `json:"hits"`
	Misses    *int64   `json:"misses"`
	Keys      *int64   `json:"keys"`
	HitRate   *float64 `json:"hit_rate"` // percent, 0–100, two decimals
	Pending   int64    `json:"invalidations_pending"`
}

// Stats returns the counters; the numeric fields are null while Redis is unreachable, as
// in the original.
func (a *Aside) Stats(ctx context.Context) Stats {
	st := Stats{Pending: int64(a.pending.count.Load())}
	keys, err := a.rdb.DBSize(ctx).Result()
	if err != nil {
		return st
	}
	hits, misses := a.hits.Load(), a.misses.Load()
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

// pendingKeys are keys whose invalidation could not be delivered.
type pendingKeys struct {
	count atomic.Int32
	mu    sync.Mutex
	keys  map[string]struct{}
}

func (p *pendingKeys) add(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[key] = struct{}{}
	p.count.Store(int32(len(p.keys)))
}

// deliver sends the pending deletes, if any, and reports whether the cache may be used.
func (p *pendingKeys) deliver(ctx context.Context, rdb redis.UniversalClient) bool {
	if p.count.Load() == 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.keys) == 0 {
		return true
	}
	keys := make([]string, 0, 2*len(p.keys))
	for k := range p.keys {
		keys = append(keys, CacheKey(k), leaseKey(k))
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		return false
	}
	clear(p.keys)
	p.count.Store(0)
	return true
}
