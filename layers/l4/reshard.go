package l4

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/shard"
)

// ReshardOptions tune Reshard.
type ReshardOptions struct {
	DryRun    bool // count what would move, change nothing
	BatchSize int  // rows per page; 0 = the Mover's default
	// StatementTimeout bounds each page's statements (a page may carry megabytes); it
	// replaces DB_QUERY_TIMEOUT, which is sized for single-record requests.
	StatementTimeout time.Duration
	// NoCache skips dropping cached copies of keys whose row on their new shard was merged.
	// Only for deployments where no service caches records (without Redis).
	NoCache  bool
	Progress func(shard.Report) // called after every page
}

// Reshard moves every row that is not on the shard owning it, under cfg's strategy over
// all of cfg's shards, to that shard, online (see shard.Mover and README.md). Run it with
// the service's environment, after every instance of the service runs with RESHARD_FROM
// set, and before they are restarted without it.
func Reshard(ctx context.Context, cfg Config, opts ReshardOptions) (shard.Report, error) {
	urls, err := cfg.ShardList()
	if err != nil {
		return shard.Report{}, err
	}
	if cfg.ReshardFrom <= 0 && !opts.DryRun {
		return shard.Report{}, errors.New("RESHARD_FROM is not set: set it, as for the service, to the number of shards " +
			"before this reshard, once every instance of the service runs with it (a dry run does not need it)")
	}
	placement, err := shard.NewPlacement(cfg.Strategy, len(urls))
	if err != nil {
		return shard.Report{}, err
	}
	pc := cfg.Pool
	pc.MinConns, pc.MaxConns = 0, 2
	if opts.StatementTimeout > 0 {
		pc.QueryTimeout = opts.StatementTimeout
	}
	pools, err := openShards(ctx, urls, pc)
	if err != nil {
		return shard.Report{}, err
	}
	defer func() {
		for _, p := range pools {
			p.Close()
		}
	}()
	m := &shard.Mover{Placement: placement, BatchSize: opts.BatchSize, DryRun: opts.DryRun, Progress: opts.Progress}
	for _, p := range pools {
		m.Shards = append(m.Shards, p)
	}
	if !opts.NoCache && !opts.DryRun {
		rdb, err := redisclient.New(cfg.RedisURL)
		if err != nil {
			return shard.Report{}, err
		}
		defer rdb.Close()
		if err := redisclient.Ping(ctx, rdb); err != nil {
			return shard.Report{}, fmt.Errorf("the cache (REDIS_URL) is unreachable, and the mover must drop the cached "+
				"copies of the keys it merges; start it, or pass -no-cache if no service caches records: %w", err)
		}
		m.Invalidate = func(ctx context.Context, keys []string) error {
			del := make([]string, 0, 2*len(keys))
			for _, k := range keys {
				del = append(del, cache.RecordKeys(k)...)
			}
			return rdb.Del(ctx, del...).Err()
		}
	}
	return m.Run(ctx)
}
