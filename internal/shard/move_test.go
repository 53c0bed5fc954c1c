package shard_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/shard"
	"github.com/dblayers/dblayers/internal/testenv"
)

// cluster is four shard databases: three in use and one being added.
type cluster struct {
	pools  []*pgstore.Pool
	stores []record.Store
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{}
	for range 4 {
		p := pgPool(t, testenv.PostgresURL(t))
		c.pools = append(c.pools, p)
		c.stores = append(c.stores, pgstore.NewStore(p))
	}
	return c
}

// reset empties every shard, so that subtests can share the databases.
func (c *cluster) reset(t *testing.T) {
	t.Helper()
	for _, p := range c.pools {
		_, err := p.Exec(context.Background(), "TRUNCATE records")
		require.NoError(t, err)
	}
}

func (c *cluster) conns() []pgstore.Conns {
	cs := make([]pgstore.Conns, len(c.pools))
	for i, p := range c.pools {
		cs[i] = p
	}
	return cs
}

// where lists the shards holding key.
func (c *cluster) where(t *testing.T, key string) []int {
	t.Helper()
	var on []int
	for i, s := range c.stores {
		if _, err := s.Get(context.Background(), key); err == nil {
			on = append(on, i)
		} else {
			require.ErrorIs(t, err, record.ErrNotFound)
		}
	}
	return on
}

func (c *cluster) count(t *testing.T) int {
	t.Helper()
	n := 0
	for _, p := range c.pools {
		var k int
		require.NoError(t, p.QueryRow(context.Background(), "SELECT count(*) FROM records").Scan(&k))
		n += k
	}
	return n
}

func mover(t *testing.T, c *cluster, strategy string) *shard.Mover {
	return &shard.Mover{Placement: placement(t, strategy, 4), Shards: c.conns(), BatchSize: 32}
}

// The Mover moves exactly the keys whose owner changes, keeps their values and timestamps,
// reports what it moved, and a second run finds nothing to do.
func TestMoverMovesExactlyTheKeysWhoseOwnerChanges(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	for _, strategy := range shard.Strategies() {
		t.Run(strategy, func(t *testing.T) {
			c.reset(t)
			old := router(t, strategy, c.stores[:3])
			const keys = 300
			want := map[string]int64{}
			before := map[string]record.Record{}
			var wg sync.WaitGroup
			for w := range 10 {
				wg.Go(func() {
					for i := w; i < keys; i += 10 {
						k := fmt.Sprint("key-", i)
						assert.NoError(t, old.Put(ctx, k, "v"+k))
					}
				})
			}
			wg.Wait()
			for i := range keys {
				k := fmt.Sprint("key-", i)
				rec, err := old.Get(ctx, k)
				require.NoError(t, err)
				before[k] = rec
				if from, to := old.Owner(k), placement(t, strategy, 4).Owner(k); from != to {
					want[fmt.Sprintf("%d->%d", from, to)]++
				}
			}
			var moving int64
			for _, n := range want {
				moving += n
			}

			dry := mover(t, c, strategy)
			dry.DryRun = true
			rep, err := dry.Run(ctx)
			require.NoError(t, err)
			assert.Equal(t, moving, rep.Moved, "a dry run counts what would move")
			assert.Equal(t, want, rep.Routes)
			for k := range before {
				require.Equal(t, []int{old.Owner(k)}, c.where(t, k), "a dry run moves nothing")
			}

			var pages int
			m := mover(t, c, strategy)
			m.Progress = func(shard.Report) { pages++ }
			rep, err = m.Run(ctx)
			require.NoError(t, err)
			t.Logf("%s 3→4: %+v", strategy, rep)
			var movedAhead int64 // rows moved to a shard read later are read there again
			for route, n := range want {
				var from, to int
				fmt.Sscanf(route, "%d->%d", &from, &to)
				if to > from {
					movedAhead += n
				}
			}
			assert.Equal(t, keys+movedAhead, rep.Scanned)
			assert.Equal(t, moving, rep.Moved)
			assert.Equal(t, want, rep.Routes)
			assert.Zero(t, rep.KeptOnTarget)
			assert.Zero(t, rep.Recopied)
			assert.Greater(t, pages, 3, "several pages")
			if strategy != shard.Modulo {
				assert.InDelta(t, keys/4, moving, keys/10, "about a quarter of the keys move")
			}

			after := placement(t, strategy, 4)
			for k, rec := range before {
				require.Equal(t, []int{after.Owner(k)}, c.where(t, k), "%q on its new owner only", k)
				got, err := c.stores[after.Owner(k)].Get(ctx, k)
				require.NoError(t, err)
				assert.Equal(t, rec, got, "%q moved as it was", k)
			}
			assert.Equal(t, keys, c.count(t), "nothing lost or duplicated")

			rep, err = mover(t, c, strategy).Run(ctx)
			require.NoError(t, err)
			assert.Zero(t, rep.Moved, "a second run has nothing to move")
			assert.Equal(t, int64(keys), rep.Scanned)
		})
	}
}

// movingKey returns a key whose owner changes from 3 to 4 shards under strategy.
func movingKey(t *testing.T, strategy, prefix string) (key string, from, to int) {
	before, after := placement(t, strategy, 3), placement(t, strategy, 4)
	for i := 0; ; i++ {
		k := fmt.Sprint(prefix, i)
		if before.Owner(k) != after.Owner(k) {
			return k, before.Owner(k), after.Owner(k)
		}
	}
}

// A key the service wrote to its new owner during the move keeps that value; the copy
// from the old shard only contributes the record's original created_at.
func TestMoverKeepsANewerRowOnTheNewOwner(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	k, from, to := movingKey(t, shard.Ring, "newer-")
	require.NoError(t, c.stores[from].Put(ctx, k, "old"))
	orig, err := c.stores[from].Get(ctx, k)
	require.NoError(t, err)

	r, err := router(t, shard.Ring, c.stores).Resharding(3)
	require.NoError(t, err)
	require.NoError(t, r.Put(ctx, k, "new")) // the service writes during the move
	written, err := c.stores[to].Get(ctx, k)
	require.NoError(t, err)
	require.True(t, written.CreatedAt.After(orig.CreatedAt))

	var invalidated []string
	m := mover(t, c, shard.Ring)
	m.Invalidate = func(_ context.Context, keys []string) error {
		invalidated = append(invalidated, keys...)
		return nil
	}
	rep, err := m.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), rep.Moved)
	assert.Equal(t, int64(1), rep.KeptOnTarget)
	assert.Equal(t, []string{k}, invalidated, "created_at changed on the new owner: caches must drop it")

	assert.Equal(t, []int{to}, c.where(t, k))
	got, err := c.stores[to].Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "new", got.Value)
	assert.Equal(t, written.UpdatedAt, got.UpdatedAt)
	assert.Equal(t, orig.CreatedAt, got.CreatedAt, "the record keeps the time of its first write")
}

// A write that reaches the old row between the copy and the delete (a writer still placing
// keys the old way) is not lost: the row is not deleted, and is copied again.
func TestMoverCopiesAgainARowWrittenDuringItsMove(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	k, from, to := movingKey(t, shard.Jump, "straggler-")
	require.NoError(t, c.stores[from].Put(ctx, k, "v1"))

	var once sync.Once
	var invalidated []string
	m := mover(t, c, shard.Jump)
	m.Invalidate = func(_ context.Context, keys []string) error {
		invalidated = append(invalidated, keys...)
		return nil
	}
	shard.SetBeforeDelete(m, func() {
		once.Do(func() { require.NoError(t, c.stores[from].Put(ctx, k, "v2")) })
	})
	rep, err := m.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), rep.Moved)
	assert.Equal(t, int64(1), rep.Recopied)
	assert.Equal(t, []string{k}, invalidated, "the copy on the new owner was replaced")

	assert.Equal(t, []int{to}, c.where(t, k))
	got, err := c.stores[to].Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "v2", got.Value, "the later write won")
}

// A row that changes on every attempt makes the Mover give up with an error, not spin.
func TestMoverGivesUpOnARowThatKeepsChanging(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	k, from, _ := movingKey(t, shard.Jump, "busy-")
	require.NoError(t, c.stores[from].Put(ctx, k, "v"))
	m := mover(t, c, shard.Jump)
	n := 0
	shard.SetBeforeDelete(m, func() {
		n++
		require.NoError(t, c.stores[from].Put(ctx, k, fmt.Sprint("v", n)))
	})
	_, err := m.Run(ctx)
	assert.ErrorContains(t, err, "kept changing")
	on := c.where(t, k)
	sort.Ints(on)
	assert.Contains(t, on, from, "the row was never deleted from its old shard while it kept changing")
}
