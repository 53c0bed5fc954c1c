package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leased is the read side of cache-aside for any value kept as JSON under a Redis key, with
// the fill leases described on Aside: a miss takes a lease before it loads, Invalidate
// drops the cached copy and the lease, and a fill lands only while its lease still stands.
// Aside uses it for records; other layers use it for whatever they cache (L8: documents and
// per-user transaction lists), each with its own cache keys.
//
// One reader at a time holds a key's lease (SET NX): other misses meanwhile read the store
// and answer without filling. Were a later miss to take the lease over, a stream of
// overlapping misses on a hot key (loads slower than the gap between requests) would keep
// invalidating each other's fills, and the key would never be cached while the stream lasts.
//
// Values are encoded with encoding/json (without HTML escaping), so T must round-trip
// through it exactly.
type Leased[T any] struct {
	rdb    redis.UniversalClient
	ttl    time.Duration
	logger *slog.Logger

	hits, misses atomic.Int64
	pending      pendingKeys
}

// NewLeased returns a lease-guarded cache on rdb whose entries live for ttl.
func NewLeased[T any](rdb redis.UniversalClient, ttl time.Duration, logger *slog.Logger) *Leased[T] {
	return &Leased[T]{rdb: rdb, ttl: ttl, logger: logger, pending: pendingKeys{keys: map[string]struct{}{}}}
}

// LeaseKey is the Redis key of the fill lease of cacheKey.
func LeaseKey(cacheKey string) string { return "lease:" + cacheKey }

// Lookup returns the value cached under cacheKey, or else the one load returns, which it
// then caches if no invalidation of cacheKey happened meanwhile. fromCache tells where the
// value came from. An error from load is returned as is and nothing is cached, so a load
// that returns e.g. record.ErrNotFound keeps misses out of the cache. When Redis is
// unreachable, or an invalidation is still undelivered, every call loads.
func (l *Leased[T]) Lookup(ctx context.Context, cacheKey string, load func(context.Context) (T, error)) (v T, fromCache bool, err error) {
	if !l.pending.deliver(ctx, l.rdb) {
		l.misses.Add(1)
		v, err = load(ctx)
		return v, false, err
	}
	data, err := l.rdb.Get(ctx, cacheKey).Bytes()
	if err == nil {
		var cached T
		if json.Unmarshal(data, &cached) == nil {
			l.hits.Add(1)
			return cached, true, nil
		}
	}
	l.misses.Add(1)
	cacheUp := err == nil || errors.Is(err, redis.Nil)
	var token string
	if cacheUp {
		token = newToken()
		if ok, err := l.rdb.SetNX(ctx, LeaseKey(cacheKey), token, leaseTTL).Result(); err != nil || !ok {
			token = "" // Redis failed, or another reader holds the lease and will fill
		}
	}
	v, err = load(ctx)
	if token == "" {
		return v, false, err
	}
	if err != nil {
		_ = releaseScript.Run(ctx, l.rdb, []string{LeaseKey(cacheKey)}, token).Err()
		return v, false, err
	}
	if data, err := encode(v); err == nil {
		keys := []string{cacheKey, LeaseKey(cacheKey)}
		_ = fillScript.Run(ctx, l.rdb, keys, token, data, l.ttl.Milliseconds()).Err()
	}
	return v, false, nil
}

// Usable reports whether the cache may be read now by a caller that reads a cache key in a
// command of its own (see Cached): not while an invalidation is undelivered, which Lookup
// delivers first.
func (l *Leased[T]) Usable() bool { return l.pending.count.Load() == 0 }

// Cached decodes a value the caller read from a cache key itself, in a command of its own
// (L6 reads it with the key's buffered write in one MGET), and counts the hit. false, with
// nothing counted, when it does not decode: the caller's Lookup that follows counts the miss.
func (l *Leased[T]) Cached(data []byte) (v T, ok bool) {
	if json.Unmarshal(data, &v) != nil {
		var zero T
		return zero, false
	}
	l.hits.Add(1)
	return v, true
}

// encode is json.Marshal without HTML escaping, so that embedded json.RawMessage values
// come back from the cache byte for byte as they went in.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Invalidate deletes the cached copy of cacheKey and its lease. Call it after every commit
// that changes what cacheKey holds. If Redis cannot be reached the key is remembered, and
// no Lookup uses the cache until the delete has been delivered.
func (l *Leased[T]) Invalidate(ctx context.Context, cacheKey string) {
	if err := l.rdb.Del(ctx, cacheKey, LeaseKey(cacheKey)).Err(); err != nil {
		l.pending.add(cacheKey)
		l.logger.Warn("cache invalidation deferred", "cache_key", cacheKey, "error", err)
	}
}

// InvalidateMany is Invalidate for several cache keys at once, in one round trip (one DEL):
// for a replicated batch of writes, say.
func (l *Leased[T]) InvalidateMany(ctx context.Context, cacheKeys ...string) {
	if len(cacheKeys) == 0 {
		return
	}
	keys := make([]string, 0, 2*len(cacheKeys))
	for _, k := range cacheKeys {
		keys = append(keys, k, LeaseKey(k))
	}
	if err := l.rdb.Del(ctx, keys...).Err(); err != nil {
		for _, k := range cacheKeys {
			l.pending.add(k)
		}
		l.logger.Warn("cache invalidation deferred", "cache_keys", len(cacheKeys), "error", err)
	}
}

// Counts returns this process's hits and misses.
func (l *Leased[T]) Counts() (hits, misses int64) { return l.hits.Load(), l.misses.Load() }

// Pending is the number of cache keys whose invalidation is not delivered yet.
func (l *Leased[T]) Pending() int64 { return int64(l.pending.count.Load()) }

// pendingKeys are cache keys whose invalidation could not be delivered.
type pendingKeys struct {
	count atomic.Int32
	mu    sync.Mutex
	keys  map[string]struct{}
}

func (p *pendingKeys) add(cacheKey string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[cacheKey] = struct{}{}
	p.count.Store(int32(len(p.keys)))
}

// deliver sends the pending deletes, if any, and reports whether the cache may be used.
func (p *pendingKeys) deliver(ctx context.Context, rdb redis.UniversalClient) bool {
	if p.count.Load() == 0 {
		return true
	}
	// One delivery at a time, and nobody waits for it: while it is in flight the deletes
	// are not delivered yet, so the cache must not be used. (Waiting would queue every
	// lookup behind a DEL that, while Redis hangs, is its guard's probe: its full timeout.)
	if !p.mu.TryLock() {
		return false
	}
	defer p.mu.Unlock()
	if len(p.keys) == 0 {
		return true
	}
	keys := make([]string, 0, 2*len(p.keys))
	for k := range p.keys {
		keys = append(keys, k, LeaseKey(k))
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		return false
	}
	clear(p.keys)
	p.count.Store(0)
	return true
}
