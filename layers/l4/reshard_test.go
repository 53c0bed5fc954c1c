package l4_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/shard"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l4"
)

// TestReshardOnline adds a fourth shard to three while clients keep writing and reading
// through the service: the original's md5 mod N placement, under which three keys in
// four change owner. Every request must succeed, every read must return the value its
// client last wrote, and afterwards every key must be on its new owner only, with its
// latest value; the mover must report exactly the keys whose owner changed.
func TestReshardOnline(t *testing.T) {
	ctx := context.Background()
	urls := shardURLs(t, 4)
	redisURL := testenv.RedisURL(t)
	const seeded, writers = 400, 4

	// Before: three shards.
	before, _ := start(t, urls[:3], redisURL)
	latest := make(map[string]string, seeded) // key → last acknowledged value
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range 10 {
		wg.Go(func() {
			c := layertest.NewClient(t, before)
			for i := w; i < seeded; i += 10 {
				k, v := fmt.Sprint("key-", i), fmt.Sprint("seed-", i)
				c.MustWrite(k, v)
				if i%3 == 0 {
					c.Read(k) // some keys are cached when the move starts
				}
				mu.Lock()
				latest[k] = v
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	old, err := shard.NewPlacement(shard.Modulo, 3)
	require.NoError(t, err)
	now, err := shard.NewPlacement(shard.Modulo, 4)
	require.NoError(t, err)
	var changing int64
	for k := range latest {
		if old.Owner(k) != now.Owner(k) {
			changing++
		}
	}

	// During: the service runs with four shards and RESHARD_FROM=3, and the mover runs.
	resharding := func(c *l4.Config) { c.ReshardFrom = 3 }
	during, _ := start(t, urls, redisURL, resharding)
	var cfg l4.Config
	require.NoError(t, config.LoadFrom(&cfg, config.Defaults))
	cfg.ShardURLs, cfg.NumShards, cfg.RedisURL, cfg.Strategy, cfg.ReshardFrom = urls, 0, redisURL, shard.Modulo, 0

	_, err = l4.Reshard(ctx, cfg, l4.ReshardOptions{})
	require.ErrorContains(t, err, "RESHARD_FROM is not set", "the mover refuses to run unless told the service is resharding")
	cfg.ReshardFrom = 3
	dry, err := l4.Reshard(ctx, cfg, l4.ReshardOptions{DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, changing, dry.Moved, "the dry run counts the keys whose owner changes")

	var (
		stop     atomic.Bool
		ops      atomic.Int64 // acknowledged writes
		failures []string
		fmu      sync.Mutex
	)
	fail := func(format string, args ...any) {
		fmu.Lock()
		defer fmu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for w := range writers {
		wg.Go(func() {
			c := layertest.NewClient(t, during)
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			mine := []string{}
			for i := w; i < seeded; i += writers {
				mine = append(mine, fmt.Sprint("key-", i))
			}
			for n := 0; !stop.Load() && n < 20_000 && time.Now().Before(deadline); n++ {
				k := mine[rng.IntN(len(mine))]
				if n%5 == 4 { // and some keys that did not exist before the move
					k = fmt.Sprintf("new-%d-%d", w, n)
					mine = append(mine, k)
				}
				v := fmt.Sprintf("w%d-%d", w, n)
				if r := c.Write(k, v); r.Status != http.StatusOK {
					fail("write %s: %d %s", k, r.Status, r.Raw)
					continue
				}
				ops.Add(1)
				mu.Lock()
				latest[k] = v
				mu.Unlock()
				// Read back a key of ours: it must hold exactly what we last wrote to it.
				k = mine[rng.IntN(len(mine))]
				mu.Lock()
				want := latest[k]
				mu.Unlock()
				if r := c.Read(k); r.Status != http.StatusOK || r.Body["value"] != want {
					fail("read %s: %d %s, want %q", k, r.Status, r.Raw, want)
				}
			}
		})
	}
	// The mover waits for some writes after each page, so that the move and the writes
	// interleave whatever the machine's speed.
	var pages int
	rep, err := l4.Reshard(ctx, cfg, l4.ReshardOptions{BatchSize: 25, Progress: func(shard.Report) {
		pages++
		target := ops.Load() + 10
		testenv.WaitFor(t, 30*time.Second, "writes during the move", func() bool { return ops.Load() >= target || stop.Load() })
	}})
	stop.Store(true)
	wg.Wait()
	require.NoError(t, err)
	t.Logf("mover: %+v; %d pages, %d writes during the move", rep, pages, ops.Load())
	assert.Empty(t, failures, "every request during the move succeeded and read what its client last wrote")
	assert.Equal(t, changing, rep.Moved, "exactly the keys whose owner changed were moved")
	var routed int64
	for _, n := range rep.Routes {
		routed += n
	}
	assert.Equal(t, rep.Moved, routed)
	assert.Greater(t, ops.Load(), int64(10*pages/2), "writes interleaved with the move")

	// After: every key is on its new owner only, with its latest value, through a service
	// that no longer knows the old placement (and through the shards themselves).
	after, _ := start(t, urls, redisURL)
	c := layertest.NewClient(t, after)
	onShard := make([]map[string]string, len(urls))
	for s, u := range urls {
		onShard[s] = layertest.StoredValues(t, u)
	}
	for k, v := range latest {
		assert.Equal(t, v, c.Read(k).Body["value"], k)
		for s := range urls {
			got, ok := onShard[s][k]
			assert.Equal(t, s == now.Owner(k), ok, "%q on shard %d", k, s)
			if ok {
				assert.Equal(t, v, got, k)
			}
		}
	}
	assert.Equal(t, len(latest), totalRows(t, urls), "nothing lost, nothing duplicated")

	again, err := l4.Reshard(ctx, cfg, l4.ReshardOptions{})
	require.NoError(t, err)
	assert.Zero(t, again.Moved, "a second run has nothing to move")
}
