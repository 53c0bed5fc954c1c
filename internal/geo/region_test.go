package geo

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/testenv"
)

func testOptions(t testing.TB) RegionOptions {
	t.Helper()
	var pool pgstore.PoolConfig
	require.NoError(t, config.LoadFrom(&pool, config.Defaults))
	return RegionOptions{Pool: pool, CacheTTL: time.Minute}
}

// openRegion opens a region on a fresh database and Redis DB of the shared test servers.
func openRegion(t testing.TB, key string) (*Region, string) {
	t.Helper()
	dbURL := testenv.PostgresURL(t)
	reg, err := OpenRegion(context.Background(), RegionSpec{Key: key, DatabaseURL: dbURL, CacheURL: testenv.RedisURL(t)},
		testOptions(t), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(reg.Close)
	require.NoError(t, reg.EnsureSchema(context.Background()))
	return reg, dbURL
}

// regionStore is a Region seen as a record.Store (local writes, no replication), so that
// the contract every store keeps is checked on it too.
type regionStore struct{ *Region }

func (s regionStore) Get(ctx context.Context, key string) (record.Record, error) {
	e, _, err := s.Lookup(ctx, key)
	return record.Record{Key: key, Value: e.Value, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}, err
}

func (s regionStore) Put(ctx context.Context, key, value string) error {
	_, err := s.Write(ctx, key, value, nil)
	return err
}

func TestRegionIsARecordStore(t *testing.T) {
	reg, _ := openRegion(t, USEast)
	recordtest.Run(t, regionStore{reg})
}

func outboxRows(t testing.TB, dbURL string) []string {
	t.Helper()
	out := []string{}
	var row string
	require.NoError(t, testenv.ForEachRow(dbURL, `SELECT destination || ':' || key || '=' || value FROM replication_outbox ORDER BY id`, nil,
		[]any{&row}, func() { out = append(out, row) }))
	return out
}

func TestWriteQueuesOneEntryPerDestinationWithTheRow(t *testing.T) {
	ctx := context.Background()
	reg, dbURL := openRegion(t, USEast)

	e, err := reg.Write(ctx, "k", "v1", []string{EUWest, AsiaPac})
	require.NoError(t, err)
	assert.Equal(t, USEast, e.Origin)
	assert.Equal(t, []string{"eu-west:k=v1", "asia-pac:k=v1"}, outboxRows(t, dbURL))

	got, fromCache, err := reg.Lookup(ctx, "k")
	require.NoError(t, err)
	assert.False(t, fromCache)
	assert.Equal(t, e.Version, got.Version, "the stored version is the one the write answered")
	got, fromCache, err = reg.Lookup(ctx, "k")
	require.NoError(t, err)
	assert.True(t, fromCache)
	assert.Equal(t, "v1", got.Value)

	e2, err := reg.Write(ctx, "k", "v2", nil)
	require.NoError(t, err)
	assert.Greater(t, e2.HLC, e.HLC)
	got, _, err = reg.Lookup(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v2", got.Value, "the write invalidated the cached copy")
	assert.Len(t, outboxRows(t, dbURL), 2, "no destinations: nothing queued")
}

func TestWriteThatFailsQueuesNothing(t *testing.T) {
	reg, dbURL := openRegion(t, USEast)
	_, err := reg.Write(context.Background(), strings.Repeat("k", 300), "v", []string{EUWest}) // longer than the column
	require.Error(t, err)
	assert.Empty(t, outboxRows(t, dbURL))
}

func TestApplyKeepsTheNewestVersion(t *testing.T) {
	ctx := context.Background()
	reg, _ := openRegion(t, EUWest)
	at := func(ms int64, origin, value string) Entry {
		return Entry{Key: "k", Value: value, Version: Version{NewHLC(ms, 0), origin}, CreatedAt: time.UnixMilli(ms).UTC(), UpdatedAt: time.UnixMilli(ms).UTC()}
	}
	value := func() string {
		e, _, err := reg.Lookup(ctx, "k")
		require.NoError(t, err)
		return e.Value
	}

	n, err := reg.Apply(ctx, []Entry{at(2_000, USEast, "b")})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, "b", value())

	n, err = reg.Apply(ctx, []Entry{at(1_000, AsiaPac, "a")})
	require.NoError(t, err)
	assert.Equal(t, 0, n, "an older version arriving late is ignored")
	assert.Equal(t, "b", value(), "and the cached copy was not touched either")

	n, err = reg.Apply(ctx, []Entry{at(2_000, USEast, "b")})
	require.NoError(t, err)
	assert.Equal(t, 0, n, "applying the same entry twice changes nothing")

	n, err = reg.Apply(ctx, []Entry{at(2_000, AsiaPac, "tie-loses")})
	require.NoError(t, err)
	assert.Equal(t, 0, n, "same HLC: the greater region key (us-east) keeps it")

	n, err = reg.Apply(ctx, []Entry{at(3_000, AsiaPac, "c"), at(5_000, USEast, "e"), at(4_000, EUWest, "d")})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "several versions of one key in a batch: the newest is applied")
	assert.Equal(t, "e", value())
	e, _, err := reg.Lookup(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, Version{NewHLC(5_000, 0), USEast}, e.Version)
	assert.Equal(t, time.UnixMilli(5_000).UTC(), e.UpdatedAt.UTC(), "updated_at is the origin's write time")
	assert.Equal(t, time.UnixMilli(2_000).UTC(), e.CreatedAt.UTC(), "created_at is the earliest known")
}

func TestLocalWriteBeatsAVersionFromAClockAhead(t *testing.T) {
	ctx := context.Background()
	reg, _ := openRegion(t, AsiaPac)
	future := NewHLC(time.Now().Add(time.Hour).UnixMilli(), 3) // a region whose clock is an hour fast
	_, err := reg.Apply(ctx, []Entry{{Key: "k", Value: "from the future", Version: Version{future, USEast}, CreatedAt: time.Now(), UpdatedAt: time.Now()}})
	require.NoError(t, err)

	e, err := reg.Write(ctx, "k", "local", nil)
	require.NoError(t, err)
	assert.Greater(t, e.HLC, future, "a local write is stamped after every version the region has seen")
	got, _, err := reg.Lookup(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "local", got.Value)
}

func TestLocalWriteBeatsANewerStoredVersion(t *testing.T) {
	ctx := context.Background()
	reg, dbURL := openRegion(t, AsiaPac)
	// A newer version lands behind the clock's back (another process's apply): the clock
	// has not observed it, so the write's stamp is older, and the write must take the stored
	// HLC + 1 instead — in the same statement, queued with that HLC.
	future := NewHLC(time.Now().Add(time.Hour).UnixMilli(), 0)
	testenv.Exec(t, dbURL, `INSERT INTO records (key, value, region, hlc, origin) VALUES ('k', 'other', 'asia-pac', $1, 'us-east')`, int64(future))

	e, err := reg.Write(ctx, "k", "mine", []string{USEast})
	require.NoError(t, err)
	assert.Equal(t, future+1, e.HLC)
	assert.Greater(t, reg.Clock().Now(), e.HLC, "the clock follows")
	assert.Equal(t, []string{"us-east:k=mine"}, outboxRows(t, dbURL))
	var queued int64
	require.NoError(t, testenv.QueryRow(dbURL, `SELECT hlc FROM replication_outbox`, nil, &queued))
	assert.Equal(t, int64(e.HLC), queued, "the entry carries the HLC that was stored")
}

func TestPendingAckAndBacklog(t *testing.T) {
	ctx := context.Background()
	reg, _ := openRegion(t, USEast)
	for i := range 5 {
		_, err := reg.Write(ctx, fmt.Sprint("k", i), strings.Repeat("x", 100), []string{EUWest, AsiaPac})
		require.NoError(t, err)
	}
	backlogs, err := reg.Backlogs(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(5), backlogs[EUWest].Entries)
	assert.Equal(t, int64(5), backlogs[AsiaPac].Entries)
	assert.Greater(t, backlogs[EUWest].LagSeconds, 0.0)

	batch, err := reg.Pending(ctx, EUWest, 3, 1<<20)
	require.NoError(t, err)
	require.Len(t, batch, 3, "at most limit entries")
	assert.Equal(t, []string{"k0", "k1", "k2"}, keysOf(batch), "oldest first")

	batch, err = reg.Pending(ctx, EUWest, 10, 250)
	require.NoError(t, err)
	assert.Len(t, batch, 3, "no more than 250 bytes of values past the first entry: 100+100+100 started below it")
	batch, err = reg.Pending(ctx, EUWest, 10, 1)
	require.NoError(t, err)
	assert.Len(t, batch, 1, "the first entry always goes, however big")

	require.NoError(t, reg.Ack(ctx, []int64{batch[0].ID}))
	backlogs, err = reg.Backlogs(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(4), backlogs[EUWest].Entries)
	assert.Equal(t, int64(5), backlogs[AsiaPac].Entries, "each destination has its own entries")
}

func keysOf(ps []Pending) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}

// A read whose caller went away fails with the caller's error, not as the region's 503,
// and leaves the region in service: one abandoned request used to mark it down until the
// next health check, sending every other request of the region elsewhere.
func TestAbandonedCallLeavesTheRegionServing(t *testing.T) {
	reg, _ := openRegion(t, USEast)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := reg.Lookup(ctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, record.IsUnavailable(err), "not the region's 503: %v", err)
	assert.True(t, reg.Healthy())
	_, err = reg.Write(ctx, "k", "v", nil)
	require.ErrorIs(t, err, context.Canceled)
	assert.True(t, reg.Healthy())
}
