// Package l4 is layer 4, sharding: the records are spread over N PostgreSQL databases by
// a shard router (internal/shard: the original's MD5 modulo N, a consistent-hash ring or
// jump consistent hash), with L2's Redis cache-aside in front. A shard that is down costs
// only the keys it owns; shards can be added while the service runs (Reshard). See
// README.md.
package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/shard"
)

// Layer is the health "layer" string.
const Layer = "4-db-sharding"

// Config is L4's environment. The shards are SHARD_URLS when it is set, else the
// original's SHARD_0_URL … SHARD_{NUM_SHARDS-1}_URL (three by default).
type Config struct {
	Server httpapi.ServerConfig
	// ShardURLs are the shards' databases, shard 0 first; any number ≥ 1.
	ShardURLs []string `env:"SHARD_URLS"`
	// NumShards is the number of SHARD_n_URL variables to read when SHARD_URLS is unset
	// (default 3; SHARD_3_URL on have no default). With SHARD_URLS, if set, it must match.
	NumShards int    `env:"NUM_SHARDS"`
	Shard0URL string `env:"SHARD_0_URL" default:"postgresql://dbuser:dbpassword@localhost:5440/appdb_shard_0"`
	Shard1URL string `env:"SHARD_1_URL" default:"postgresql://dbuser:dbpassword@localhost:5441/appdb_shard_1"`
	Shard2URL string `env:"SHARD_2_URL" default:"postgresql://dbuser:dbpassword@localhost:5442/appdb_shard_2"`
	// MoreShardURLs are SHARD_3_URL, SHARD_4_URL … up to the first unset one.
	MoreShardURLs []string `env:"SHARD_{n}_URL" from:"3"`
	// Strategy places keys on shards: modulo (the original's md5 mod N), ring or jump.
	// Changing it, like changing the number of shards, needs a reshard.
	Strategy string `env:"SHARD_STRATEGY" default:"modulo"`
	// ReshardFrom, while shards are being added, is how many shards there were before
	// (the first ReshardFrom of the list): the service then writes to keys' new owners and
	// reads new owner, then old. 0 (the default) when no reshard is in progress.
	ReshardFrom int           `env:"RESHARD_FROM"`
	RedisURL    string        `env:"REDIS_URL" default:"redis://localhost:6381"`
	CacheTTL    time.Duration `env:"CACHE_TTL" default:"300s"` // how long a cached record lives
	Pool        pgstore.PoolConfig
}

// ShardList resolves the shards' database URLs from the configuration.
func (c Config) ShardList() ([]string, error) {
	if len(c.ShardURLs) > 0 {
		if c.NumShards != 0 && c.NumShards != len(c.ShardURLs) {
			return nil, fmt.Errorf("NUM_SHARDS=%d but SHARD_URLS lists %d shards", c.NumShards, len(c.ShardURLs))
		}
		return c.ShardURLs, nil
	}
	n := c.NumShards
	if n == 0 {
		n = 3
	}
	if n < 1 {
		return nil, fmt.Errorf("NUM_SHARDS=%d: need at least 1", n)
	}
	urls := []string{c.Shard0URL, c.Shard1URL, c.Shard2URL}
	if n <= len(urls) {
		return urls[:n], nil
	}
	urls = append(urls, c.MoreShardURLs...)
	if n > len(urls) {
		return nil, fmt.Errorf("NUM_SHARDS=%d needs %s (or list every shard in SHARD_URLS)", n, fmt.Sprintf("SHARD_%d_URL", len(urls)))
	}
	return urls[:n], nil
}

// Service is a running L4.
type Service struct {
	strategy string
	from     int // ReshardFrom
	pools    []*pgstore.Pool
	shards   []*pgstore.Store
	router   *shard.Router
	rdb      *redisclient.Client
	cache    *cache.Aside
	handler  http.Handler
}

// New connects to every shard (all are required at start-up, to create the records
// table) and to Redis (optional: without it reads go to the shards), and returns the
// service.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	urls, err := cfg.ShardList()
	if err != nil {
		return nil, err
	}
	if cfg.ReshardFrom < 0 || (cfg.ReshardFrom > 0 && cfg.ReshardFrom >= len(urls)) {
		return nil, fmt.Errorf("RESHARD_FROM=%d: need 1 ≤ RESHARD_FROM < %d shards", cfg.ReshardFrom, len(urls))
	}
	rdb, err := redisclient.New(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	pools, err := openShards(ctx, urls, cfg.Pool)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	s := &Service{strategy: cfg.Strategy, from: cfg.ReshardFrom, pools: pools, rdb: rdb}
	stores := make([]record.Store, len(pools))
	for i, p := range pools {
		s.shards = append(s.shards, pgstore.NewStore(p))
		stores[i] = s.shards[i]
	}
	s.router, err = shard.NewRouter(cfg.Strategy, stores)
	if err == nil && cfg.ReshardFrom > 0 {
		s.router, err = s.router.Resharding(cfg.ReshardFrom)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.cache = cache.NewAside(rdb, s.router, cfg.CacheTTL, logger)

	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(s.write), opWrite)
	r.Get("/read/{key}", httpapi.Handle(s.read), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	s.handler = r
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close closes Redis, then the shards' pools.
func (s *Service) Close() {
	s.rdb.Close()
	for _, p := range s.pools {
		p.Close()
	}
}

// Owner is the shard that owns key.
func (s *Service) Owner(key string) int { return s.router.Owner(key) }

// WriteResponse is the original's write answer, with the shard that stored the record.
type WriteResponse struct {
	Success bool   `json:"success"`
	Key     string `json:"key"`
	ShardID int    `json:"shard_id"`
	Message string `json:"message"`
}

// ReadResponse adds where the record came from and the shard that owns it.
type ReadResponse struct {
	httpapi.ReadFields
	FromCache bool `json:"from_cache"`
	ShardID   int  `json:"shard_id"`
}

func (s *Service) write(r *http.Request) (any, error) {
	req, _, err := httpapi.DecodeWrite(r)
	if err != nil {
		return nil, err
	}
	if err := s.cache.Put(r.Context(), req.Key, req.Value); err != nil {
		return nil, err
	}
	id := s.router.Owner(req.Key)
	return WriteResponse{Success: true, Key: req.Key, ShardID: id, Message: fmt.Sprintf("Data written successfully to shard %d", id)}, nil
}

func (s *Service) read(r *http.Request) (any, error) {
	key, err := httpapi.PathKey(r)
	if err != nil {
		return nil, err
	}
	id := s.router.Owner(key)
	read, err := s.cache.Read(r.Context(), key)
	if errors.Is(err, record.ErrNotFound) {
		return ReadResponse{ReadFields: httpapi.NotFound(key, httpapi.MsgKeyNotFound), ShardID: id}, nil
	}
	if err != nil {
		return nil, err
	}
	return ReadResponse{ReadFields: httpapi.Found(read.Record), FromCache: read.Tier == record.FromCache, ShardID: id}, nil
}

// shardName is the original's name of shard i in health and stats documents.
func shardName(i int) string { return "shard_" + strconv.Itoa(i) }

// eachShard runs fn for every shard at once and waits, so that one slow shard costs a
// health or stats request one timeout, not one per shard.
func (s *Service) eachShard(fn func(i int)) {
	var wg sync.WaitGroup
	for i := range s.shards {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}

// health is 200 "healthy" when every shard answers, 200 "degraded" when some do (the
// keys of the others fail with 503), and 503 when none does. Redis is reported, but a
// missing cache only slows reads down.
func (s *Service) health(r *http.Request) (any, error) {
	errs := make([]error, len(s.shards))
	s.eachShard(func(i int) { errs[i] = s.shards[i].Ping(r.Context()) })
	shards, down := map[string]string{}, 0
	for i, err := range errs {
		shards[shardName(i)] = "healthy"
		if err != nil {
			shards[shardName(i)] = "unhealthy"
			down++
		}
	}
	if down == len(s.shards) {
		return nil, httpapi.Unhealthy("Service unhealthy: no shard available", errors.Join(errs...))
	}
	status := "healthy"
	if down > 0 {
		status = "degraded"
	}
	return HealthResponse{Status: status, Layer: Layer, Shards: shards, Cache: s.rdb.Health(r.Context())}, nil
}

// HealthResponse is the /health document.
type HealthResponse struct {
	Status string            `json:"status"` // healthy, or degraded while some shards are down
	Layer  string            `json:"layer"`
	Shards map[string]string `json:"shards"` // shard_N → healthy | unhealthy
	Cache  string            `json:"cache"`  // healthy | skipped (its breaker is open) | unavailable
}

// Stats is the /stats (and /cache-stats) document: the original's fields, then the
// placement and a detailed entry per shard.
type Stats struct {
	CacheAvailable    bool             `json:"cache_available"`
	CacheHits         *int64           `json:"cache_hits"`
	CacheMisses       *int64           `json:"cache_misses"`
	CacheKeys         *int64           `json:"cache_keys"`
	CacheHitRate      *float64         `json:"cache_hit_rate"` // percent
	NumShards         int              `json:"num_shards"`
	ShardPoolSizes    map[string]int32 `json:"shard_pool_sizes"`   // configured minimum, as the original
	ShardDistribution map[string]int64 `json:"shard_distribution"` // records per shard; 0 for a shard that is down, as the original

	CacheInvalidationsPending int64                 `json:"cache_invalidations_pending"`
	CacheSkipped              bool                  `json:"cache_skipped"` // Redis failed and is skipped until a probe finds it back
	Strategy                  string                `json:"strategy"`
	ReshardingFrom            *int                  `json:"resharding_from"` // shards before the reshard in progress, or null
	Shards                    map[string]ShardStats `json:"shards"`
}

// ShardStats describes one shard.
type ShardStats struct {
	Healthy bool   `json:"healthy"`
	Records *int64 `json:"records"` // null while the shard is down (or its count timed out)
	// SharePercent is the shard's part of all records counted, in percent.
	SharePercent *float64          `json:"share_percent"`
	Pool         pgstore.PoolStats `json:"pool"`
}

func (s *Service) stats(r *http.Request) (any, error) {
	healthy, counts := make([]bool, len(s.shards)), make([]*int64, len(s.shards))
	s.eachShard(func(i int) {
		healthy[i] = s.shards[i].Ping(r.Context()) == nil
		if !healthy[i] {
			return
		}
		// A full count: exact, and as slow as the table is large (bounded by DB_QUERY_TIMEOUT).
		var n int64
		if err := s.pools[i].WithConn(r.Context(), func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, "SELECT count(*) FROM records").Scan(&n)
		}); err == nil {
			counts[i] = &n
		}
	})
	cs := s.cache.Stats(r.Context())
	st := Stats{
		CacheAvailable: cs.Available, CacheHits: cs.Hits, CacheMisses: cs.Misses, CacheKeys: cs.Keys, CacheHitRate: cs.HitRate,
		CacheInvalidationsPending: cs.Pending, CacheSkipped: cs.Skipped,
		NumShards: len(s.shards), Strategy: s.strategy,
		ShardPoolSizes: map[string]int32{}, ShardDistribution: map[string]int64{}, Shards: map[string]ShardStats{},
	}
	if s.from > 0 {
		st.ReshardingFrom = &s.from
	}
	var total int64
	for _, n := range counts {
		if n != nil {
			total += *n
		}
	}
	for i, p := range s.pools {
		name := shardName(i)
		ps := p.Stats()
		st.ShardPoolSizes[name] = ps.MinSize
		sh := ShardStats{Healthy: healthy[i], Records: counts[i], Pool: ps}
		if n := counts[i]; n != nil {
			st.ShardDistribution[name] = *n
			share := 0.0
			if total > 0 {
				share = float64(int64(float64(*n)/float64(total)*10000+0.5)) / 100
			}
			sh.SharePercent = &share
		} else {
			st.ShardDistribution[name] = 0
		}
		st.Shards[name] = sh
	}
	return st, nil
}

// openShards opens a pool per shard and creates the records table on each, all shards at
// once, within cfg.StartupTimeout.
func openShards(ctx context.Context, urls []string, cfg pgstore.PoolConfig) ([]*pgstore.Pool, error) {
	names := make([]string, len(urls))
	for i := range urls {
		names[i] = fmt.Sprintf("shard %d", i)
	}
	return pgstore.OpenPools(ctx, urls, names, cfg, pgstore.Schema)
}
