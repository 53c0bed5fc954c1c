package shard_test

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/shard"
)

func placement(t testing.TB, strategy string, n int) shard.Placement {
	t.Helper()
	p, err := shard.NewPlacement(strategy, n)
	require.NoError(t, err)
	return p
}

// The original's key → shard values (reference §L4 "Sharding"): md5 mod 3 must match them
// exactly, so that data written by the original is found where it is.
func TestModuloMatchesTheOriginal(t *testing.T) {
	p := placement(t, shard.Modulo, 3)
	for key, want := range map[string]int{
		"": 0, "a": 1, "test_key": 2, "update_test": 0, "user:123": 2, "product:456": 0,
		"order:789": 1, "session:abc": 2, "cart:def": 2, "key1": 0, "key2": 0, "key3": 2,
		"long_test": 1, "special_test": 2, "123456789": 0,
	} {
		assert.Equal(t, want, p.Owner(key), "%q", key)
	}
	// test_shard_id_distribution and test_hash_based_distribution_balance, exact counts.
	assert.Equal(t, []int{49, 29, 22}, counts(p, "dist_key_%d", 100))
	assert.Equal(t, []int{92, 107, 101}, counts(p, "balance_key_%d", 300))
}

// L5 and L10 of the original use md5 mod 2 (the low bit of the digest).
func TestModuloTwoShards(t *testing.T) {
	p := placement(t, shard.Modulo, 2)
	for key, want := range map[string]int{"": 0, "a": 1, "test1": 0, "auth_test": 0, "cache_test": 0, "flow_test": 1,
		"test_key": 1, "user:123": 1, "key2": 0, "key1": 1} {
		assert.Equal(t, want, p.Owner(key), "%q", key)
	}
}

func counts(p shard.Placement, format string, n int) []int {
	c := make([]int, p.Shards())
	for i := range n {
		c[p.Owner(fmt.Sprintf(format, i))]++
	}
	return c
}

// test_shard_range and test_shard_id_deterministic, for every strategy and several sizes.
func TestOwnerInRangeAndDeterministic(t *testing.T) {
	keys := []string{"", "a", strings.Repeat("x", 1400), "!@#$%^&*()", "ключ-测试-🔑", "1234567890", "user:123"}
	for _, strategy := range shard.Strategies() {
		for _, n := range []int{1, 2, 3, 7, 64} {
			p, q := placement(t, strategy, n), placement(t, strategy, n)
			assert.Equal(t, strategy, p.Strategy())
			assert.Equal(t, n, p.Shards())
			for _, k := range keys {
				o := p.Owner(k)
				assert.True(t, o >= 0 && o < n, "%s/%d: %q → %d", strategy, n, k, o)
				assert.Equal(t, o, q.Owner(k), "%s/%d: %q differs between two placements", strategy, n, k)
				if n == 1 {
					assert.Zero(t, o)
				}
			}
		}
	}
}

func TestNewPlacementRejects(t *testing.T) {
	_, err := shard.NewPlacement("md5", 3)
	assert.ErrorContains(t, err, "unknown strategy")
	_, err = shard.NewPlacement(shard.Jump, 0)
	assert.ErrorContains(t, err, "at least 1")
}

// TestBalanceAndMovement measures, for 100,000 keys, how evenly each strategy spreads keys
// over N shards and what share of them changes owner when an (N+1)th shard is added, and
// prints the table that docs/l4-resharding.md shows (go test -run TestBalanceAndMovement -v).
func TestBalanceAndMovement(t *testing.T) {
	const keys = 100_000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprint("key-", i)
	}
	t.Logf("| strategy | N → N+1 | shares at N (%%) | largest deviation from N's fair share | keys that move | expected |")
	t.Logf("|---|---|---|---|---|---|")
	for _, n := range []int{3, 10} {
		for _, strategy := range shard.Strategies() {
			before, after := placement(t, strategy, n), placement(t, strategy, n+1)
			perShard := make([]int, n)
			moved, movedElsewhere := 0, 0
			for _, k := range names {
				o, o2 := before.Owner(k), after.Owner(k)
				perShard[o]++
				if o != o2 {
					moved++
					if o2 != n {
						movedElsewhere++
					}
				}
			}
			fair := float64(keys) / float64(n)
			maxDev, shares := 0.0, make([]string, n)
			for i, c := range perShard {
				maxDev = math.Max(maxDev, math.Abs(float64(c)/fair-1))
				shares[i] = fmt.Sprintf("%.1f", 100*float64(c)/keys)
			}
			movedShare := float64(moved) / keys
			want := 1 / float64(n+1)
			if strategy == shard.Modulo {
				want = float64(n) / float64(n+1)
			}
			shareText := strings.Join(shares, " / ")
			if n > 3 {
				shareText = fmt.Sprintf("%s … %s (min … max)", minOf(shares), maxOf(shares))
			}
			t.Logf("| %s | %d → %d | %s | %.1f%% | %.1f%% | %.1f%% |", strategy, n, n+1, shareText, 100*maxDev, 100*movedShare, 100*want)

			assert.InDelta(t, want, movedShare, 0.02, "%s %d→%d: share of keys that move", strategy, n, n+1)
			switch strategy {
			case shard.Modulo, shard.Jump:
				assert.Less(t, maxDev, 0.04, "%s over %d shards: largest deviation from a fair share", strategy, n)
			case shard.Ring:
				// 256 points per shard: each shard's arc varies by a few percent.
				assert.Less(t, maxDev, 0.20, "%s over %d shards: largest deviation from a fair share", strategy, n)
			}
			if strategy != shard.Modulo {
				assert.Zero(t, movedElsewhere, "%s: keys move only to the new shard", strategy)
			}
		}
	}
}

func minOf(s []string) string { return slices.MinFunc(s, byNumber) }
func maxOf(s []string) string { return slices.MaxFunc(s, byNumber) }

func byNumber(a, b string) int {
	x, _ := strconv.ParseFloat(a, 64)
	y, _ := strconv.ParseFloat(b, 64)
	return cmp.Compare(x, y)
}

func BenchmarkOwner(b *testing.B) {
	for _, strategy := range shard.Strategies() {
		p := placement(b, strategy, 10)
		b.Run(strategy, func(b *testing.B) {
			for i := range b.N {
				p.Owner(fmt.Sprint("key-", i))
			}
		})
	}
}
