package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/testenv"
)

// openRouter opens three regions on the shared test servers, with the given clock skews.
func openRouter(t *testing.T, skew map[string]time.Duration) *Router {
	t.Helper()
	var specs []RegionSpec
	for _, key := range []string{USEast, EUWest, AsiaPac} {
		d := skew[key]
		specs = append(specs, RegionSpec{Key: key, DatabaseURL: testenv.PostgresURL(t), CacheURL: testenv.RedisURL(t),
			Now: func() time.Time { return time.Now().Add(d) }})
	}
	cfg := Config{ReplicationEnabled: true, BatchSize: 50, BatchBytes: 1 << 20, PollInterval: 50 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond, HealthInterval: 100 * time.Millisecond}
	r, err := Open(context.Background(), specs, testOptions(t), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r
}

func waitReplicated(t *testing.T, r *Router) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, "every outbox to be empty", func() bool {
		n, ok := r.Backlog(context.Background())
		return ok && n == 0
	})
}

// Clocks 5 s fast (eu-west) and 3 s slow (asia-pac): concurrent writes of a few keys from
// every region still end with one value per key, the same in every region: the greatest
// version among the acknowledged writes.
func TestConvergenceWithSkewedClocks(t *testing.T) {
	ctx := context.Background()
	r := openRouter(t, map[string]time.Duration{EUWest: 5 * time.Second, AsiaPac: -3 * time.Second})
	const keys, writers, perWriter = 4, 3, 15
	winners := map[string]Entry{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, home := range r.Regions() {
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					key := fmt.Sprint("k", (w+i)%keys)
					res, err := r.Write(ctx, home, key, fmt.Sprintf("%s-%d-%d", home.Key(), w, i))
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					if cur, ok := winners[key]; !ok || res.Entry.Newer(cur.Version) {
						winners[key] = res.Entry
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	waitReplicated(t, r)
	require.Len(t, winners, keys)
	for key, want := range winners {
		for _, reg := range r.Regions() {
			got, err := reg.get(ctx, key)
			require.NoError(t, err)
			assert.Equal(t, want.Value, got.Value, "%s in %s", key, reg.Key())
			assert.Equal(t, want.Version, got.Version, "%s in %s", key, reg.Key())
		}
	}
}

// A write made after another was seen wins, even from a region whose clock is behind: the
// HLC carries causality across regions where wall clocks cannot.
func TestCausallyLaterWriteWinsDespiteSlowClock(t *testing.T) {
	ctx := context.Background()
	r := openRouter(t, map[string]time.Duration{EUWest: 10 * time.Second, AsiaPac: -10 * time.Second})
	eu, _ := r.Region(EUWest)
	asia, _ := r.Region(AsiaPac)

	first, err := r.Write(ctx, eu, "k", "from the fast clock")
	require.NoError(t, err)
	waitReplicated(t, r)
	second, err := r.Write(ctx, asia, "k", "seen it, then wrote") // asia-pac's wall clock is 20 s behind eu-west's
	require.NoError(t, err)
	assert.Greater(t, second.Entry.HLC, first.Entry.HLC)
	waitReplicated(t, r)
	for _, reg := range r.Regions() {
		got, err := reg.get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "seen it, then wrote", got.Value, reg.Key())
	}
}

// A region that is not reachable at start-up is waited for briefly, then joined when it
// comes up: its schema is created and it catches up.
func TestRegionDownAtStartIsJoinedLater(t *testing.T) {
	ctx := context.Background()
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	dbURL := pg.CreateDatabase(t)
	pg.Stop(t)
	specs := []RegionSpec{
		{Key: USEast, DatabaseURL: testenv.PostgresURL(t), CacheURL: testenv.RedisURL(t)},
		{Key: EUWest, DatabaseURL: dbURL, CacheURL: testenv.RedisURL(t)},
	}
	opts := testOptions(t)
	// The wait for the region that is down; it also bounds the schema creation of the one
	// that is up, which took over 1 s during a full run of the suite.
	opts.Pool.StartupTimeout = 10 * time.Second
	r, err := Open(ctx, specs, opts, Config{ReplicationEnabled: true, RetryMin: 10 * time.Millisecond,
		RetryMax: 100 * time.Millisecond, HealthInterval: 100 * time.Millisecond}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(r.Close)
	us, _ := r.Region(USEast)
	eu, _ := r.Region(EUWest)
	assert.False(t, eu.Healthy())

	_, err = r.Write(ctx, us, "k", "v")
	require.NoError(t, err)
	res, err := r.Read(ctx, eu, "k")
	require.NoError(t, err)
	assert.Equal(t, FallbackUnavailable, res.Fallback)
	assert.Equal(t, us, res.Region)

	pg.Start(t)
	waitReplicated(t, r)
	res, err = r.Read(ctx, eu, "k")
	require.NoError(t, err)
	assert.Equal(t, eu, res.Region)
	assert.Equal(t, "v", res.Entry.Value)

	// Down again: a write homed there is that region's own 503, and marks it down at once.
	pg.Stop(t)
	_, err = r.Write(ctx, eu, "k", "v2")
	var ue *record.UnavailableError
	require.True(t, errors.As(err, &ue), "error %v", err)
	assert.Equal(t, "EU-WEST database", ue.Backend)
	assert.False(t, eu.Healthy())
}

func TestBackoffDoublesWithinBounds(t *testing.T) {
	s := &shipper{cfg: Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second}}
	for n, want := range map[int64]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 20 {
			d := s.backoff(n)
			assert.GreaterOrEqual(t, d, want*8/10, "failure %d", n)
			assert.LessOrEqual(t, d, want*12/10, "failure %d", n)
		}
	}
}
