package writequeue_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/internal/writequeue"
)

const stream = "write_queue"

// env is a queue on its own Redis database in front of its own PostgreSQL database.
type env struct {
	dbURL string
	rdb   *redisclient.Client
	pool  *pgstore.Pool
	queue *writequeue.Queue
	store *writequeue.Store
}

func newEnv(t testing.TB, maxBacklog int64) *env {
	t.Helper()
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t)
	rdb, err := redisclient.New(testenv.RedisURL(t))
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	pool, err := pgstore.NewPool(ctx, dbURL, pgstore.PoolConfig{
		Timeouts: pgstore.Timeouts{ConnectTimeout: 2 * time.Second, QueryTimeout: 10 * time.Second},
		MinConns: 1, MaxConns: 8,
	})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgstore.EnsureSchema(ctx, pool, pgstore.Schema, writequeue.Schema))
	q := writequeue.NewQueue(rdb, stream, maxBacklog)
	t.Cleanup(q.Close)
	require.NoError(t, writequeue.EnsureGroup(ctx, rdb, q.Names()))
	committed := cache.NewAside(rdb, pgstore.NewStore(pool), time.Minute, slog.New(slog.DiscardHandler))
	return &env{dbURL: dbURL, rdb: rdb, pool: pool, queue: q, store: writequeue.NewStore(q, committed)}
}

func testConfig() writequeue.WorkerConfig {
	return writequeue.WorkerConfig{BatchSize: 100, PollInterval: 50 * time.Millisecond, ClaimMinIdle: 200 * time.Millisecond, MaxAttempts: 3}
}

// startWorker runs a worker until the test ends (or the returned stop is called).
func (e *env) startWorker(t testing.TB, consumer string, cfg writequeue.WorkerConfig) (stop func()) {
	t.Helper()
	return e.startWorkerOn(t, e.pool, consumer, cfg)
}

// startWorkerOn is startWorker applying writes through conns.
func (e *env) startWorkerOn(t testing.TB, conns pgstore.Conns, consumer string, cfg writequeue.WorkerConfig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := writequeue.NewWorker(e.rdb, stream, conns, cache.RecordKeys, cfg, consumer, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// drained waits until every entry is applied or dead-lettered, and trimmed away.
func (e *env) drained(t testing.TB, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, timeout, "the queue to drain", func() bool {
		st, err := e.queue.Stats(context.Background())
		n, err2 := e.rdb.XLen(context.Background(), stream).Result()
		return err == nil && err2 == nil && st.Length == 0 && n == 0
	})
}

// row is a stored record with its version.
type row struct {
	value string
	ver   writequeue.ID
}

func (e *env) rows(t testing.TB) map[string]row {
	t.Helper()
	out, err := e.readRows()
	require.NoError(t, err)
	return out
}

// readRows is rows for a goroutine other than the test's: it returns the error.
func (e *env) readRows() (map[string]row, error) {
	out := map[string]row{}
	var k string
	var r row
	err := testenv.ForEachRow(e.dbURL, "SELECT key, value, version_ms, version_seq FROM records", nil,
		[]any{&k, &r.value, &r.ver.Ms, &r.ver.Seq}, func() { out[k] = r })
	return out, err
}

func TestParseID(t *testing.T) {
	id, err := writequeue.ParseID("1700000000123-7")
	require.NoError(t, err)
	assert.Equal(t, writequeue.ID{Ms: 1700000000123, Seq: 7}, id)
	assert.Equal(t, "1700000000123-7", id.String())
	for _, bad := range []string{"", "12", "a-1", "1-b", "1-2-3"} {
		_, err := writequeue.ParseID(bad)
		assert.Error(t, err, bad)
	}
	assert.True(t, writequeue.ID{Ms: 1, Seq: 9}.Less(writequeue.ID{Ms: 2, Seq: 0}))
	assert.True(t, writequeue.ID{Ms: 2, Seq: 0}.Less(writequeue.ID{Ms: 2, Seq: 1}))
	assert.False(t, writequeue.ID{Ms: 2, Seq: 1}.Less(writequeue.ID{Ms: 2, Seq: 1}))
}

// The buffered store keeps the record.Store contract with workers flushing behind it …
func TestStoreContract(t *testing.T) {
	e := newEnv(t, 0)
	e.startWorker(t, "w", testConfig())
	recordtest.Run(t, e.store)
}

// … and with no worker at all: every read is answered from the buffer.
func TestStoreContractBufferOnly(t *testing.T) {
	e := newEnv(t, 0)
	recordtest.Run(t, e.store)
	n, err := e.rdb.XLen(context.Background(), stream).Result()
	require.NoError(t, err)
	assert.Positive(t, n, "nothing was flushed")
	assert.Empty(t, e.rows(t))
}

// A read sees the buffered write, then the committed one with the same timestamps; the
// cached copy of the old value is dropped by the flush, not left for its TTL.
func TestReadYourWritesAcrossTheFlush(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	stop := e.startWorker(t, "w", testConfig())
	require.NoError(t, e.store.Put(ctx, "k", "v1"))
	e.drained(t, 10*time.Second)
	first, err := e.store.Read(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, record.FromStore, first.Tier)
	old, err := e.store.Read(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, record.FromCache, old.Tier, "v1 is cached now")
	stop()

	entry, err := e.queue.Enqueue(ctx, "k", "v2")
	require.NoError(t, err)
	buffered, err := e.store.Read(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, record.FromBuffer, buffered.Tier)
	assert.Equal(t, "v2", buffered.Value)
	assert.Equal(t, old.CreatedAt, buffered.CreatedAt, "created_at is the committed row's")
	assert.Equal(t, entry.Time, buffered.UpdatedAt)
	assert.True(t, buffered.UpdatedAt.After(old.UpdatedAt))

	e.startWorker(t, "w2", testConfig())
	e.drained(t, 10*time.Second)
	exists, err := e.rdb.Exists(ctx, writequeue.BufferedKey("k"), cache.CacheKey("k")).Result()
	require.NoError(t, err)
	assert.Zero(t, exists, "the flush deleted the buffered pointer and the cached copy")
	committed, err := e.store.Read(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, record.FromStore, committed.Tier)
	assert.Equal(t, buffered.Record, committed.Record, "the flushed record is the one the buffered read showed")
}

// A read asks the buffer and the read cache in one Redis round trip, whether it is answered
// by the cached committed row or by a buffered write over it.
func TestReadIsOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	sent := testenv.CountRedis(e.rdb)
	stop := e.startWorker(t, "w", testConfig())
	require.NoError(t, e.store.Put(ctx, "k", "v1"))
	e.drained(t, 10*time.Second)
	stop() // its heartbeats and reads would be counted too
	// The first read fills the cache.
	_, err := e.store.Read(ctx, "k")
	require.NoError(t, err)

	read := func() (record.Read, int64) {
		t.Helper()
		before := sent.RoundTrips()
		r, err := e.store.Read(ctx, "k")
		require.NoError(t, err)
		return r, sent.RoundTrips() - before
	}
	r, trips := read()
	assert.Equal(t, record.FromCache, r.Tier)
	assert.Equal(t, "v1", r.Value)
	assert.Equal(t, int64(1), trips, "a cached row")

	_, err = e.queue.Enqueue(ctx, "k", "v2")
	require.NoError(t, err)
	r, trips = read()
	assert.Equal(t, record.FromBuffer, r.Tier)
	assert.Equal(t, "v2", r.Value)
	assert.Equal(t, int64(1), trips, "a buffered write over a cached row")
}

// The buffered pointer carries the value as written, spaces and line breaks included; a
// pointer that cannot be read fails the read (a 503) rather than hide the buffered write.
func TestBufferedPointer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	const value = " two  spaces\nand a line "
	entry, err := e.queue.Enqueue(ctx, "k", value)
	require.NoError(t, err)
	b, ok, err := e.queue.Buffered(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, value, b.Value)
	assert.Equal(t, entry.ID, b.ID)
	assert.Equal(t, entry.Time, b.Updated)
	assert.Equal(t, entry.Time, b.Created, "the key's first buffered write")

	require.NoError(t, e.rdb.Set(ctx, writequeue.BufferedKey("k"), "not a pointer", 0).Err())
	_, err = e.store.Read(ctx, "k")
	assert.True(t, record.IsUnavailable(err), "got %v", err)
}

// Several writes of one key in one batch collapse to the newest; created_at is the first
// write's time, updated_at the last's.
func TestBatchCollapsesWritesOfAKey(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	var first, last writequeue.Entry
	for i := range 5 {
		entry, err := e.queue.Enqueue(ctx, "k", fmt.Sprint("v", i))
		require.NoError(t, err)
		if i == 0 {
			first = entry
		}
		last = entry
	}
	_, err := e.queue.Enqueue(ctx, "other", "x")
	require.NoError(t, err)
	e.startWorker(t, "w", testConfig())
	e.drained(t, 10*time.Second)
	rec, err := pgstore.NewStore(e.pool).Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v4", rec.Value)
	assert.Equal(t, first.Time, rec.CreatedAt)
	assert.Equal(t, last.Time, rec.UpdatedAt)
	st, err := e.queue.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(6), st.Queued)
	assert.Equal(t, int64(6), st.Processed, "superseded writes count as processed")
}

// Past MaxBacklog unapplied entries, Enqueue refuses; once workers catch up it accepts again.
func TestBackpressure(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3)
	for i := range 3 {
		_, err := e.queue.Enqueue(ctx, fmt.Sprint("k", i), "v")
		require.NoError(t, err)
	}
	_, err := e.queue.Enqueue(ctx, "k3", "v")
	require.ErrorIs(t, err, writequeue.ErrBacklogFull)
	_, ok, err := e.queue.Buffered(ctx, "k3")
	require.NoError(t, err)
	assert.False(t, ok, "a refused write leaves no trace")
	e.startWorker(t, "w", testConfig())
	e.drained(t, 10*time.Second)
	_, err = e.queue.Enqueue(ctx, "k3", "v")
	assert.NoError(t, err)
}

// Stats count across processes and show what is waiting and for how long.
func TestStats(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	st, err := e.queue.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, writequeue.Stats{}, st)

	for i := range 4 {
		_, err := e.queue.Enqueue(ctx, fmt.Sprint("k", i), "v")
		require.NoError(t, err)
	}
	// A consumer takes two entries and never acknowledges them.
	_, err = e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: writequeue.Group, Consumer: "ghost",
		Streams: []string{stream, ">"}, Count: 2, Block: -1}).Result()
	require.NoError(t, err)
	st, err = e.queue.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(4), st.Length)
	assert.Equal(t, int64(4), st.Queued)
	assert.Equal(t, int64(0), st.Processed)
	assert.Equal(t, int64(2), st.Pending)
	assert.Equal(t, int64(0), st.Workers, "no worker runs")
	assert.GreaterOrEqual(t, st.OldestAge, 0.0)

	e.startWorker(t, "w", testConfig())
	e.drained(t, 10*time.Second)
	st, err = e.queue.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Workers)
	assert.Equal(t, int64(0), st.Length)
	assert.Equal(t, int64(4), st.Processed)
	assert.Equal(t, int64(0), st.Pending, "the ghost's entries were claimed and applied")
	assert.Equal(t, 0.0, st.OldestAge)
}

// A write PostgreSQL rejects is retried MaxAttempts times, then dead-lettered; the rest of
// its batch is applied at once, and the key's buffered pointer is dropped with it.
func TestPoisonEntryIsIsolatedAndDeadLettered(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	for i := range 50 {
		_, err := e.queue.Enqueue(ctx, fmt.Sprint("good", i), "v")
		require.NoError(t, err)
		if i == 20 {
			_, err := e.queue.Enqueue(ctx, "poison", "nul \x00 byte") // PostgreSQL text cannot hold NUL
			require.NoError(t, err)
		}
	}
	cfg := testConfig()
	e.startWorker(t, "w", cfg)
	testenv.WaitFor(t, 10*time.Second, "the good writes", func() bool { return len(e.rows(t)) == 50 })
	e.drained(t, 10*time.Second)

	st, err := e.queue.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.DeadLettered)
	assert.Equal(t, int64(50), st.Processed)
	dead, err := e.rdb.XRange(ctx, stream+":dead", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "poison", dead[0].Values["key"])
	assert.Equal(t, "nul \x00 byte", dead[0].Values["value"])
	assert.Equal(t, fmt.Sprint(cfg.MaxAttempts), dead[0].Values["attempts"])
	assert.Contains(t, dead[0].Values["reason"], "0x00")
	_, ok, err := e.queue.Buffered(ctx, "poison")
	require.NoError(t, err)
	assert.False(t, ok)
	_, err = e.store.Get(ctx, "poison")
	assert.ErrorIs(t, err, record.ErrNotFound)
}

// flakyConns fails its failAt-th call as if the connection had dropped.
type flakyConns struct {
	pgstore.Conns
	failAt int64
	calls  atomic.Int64
}

func (f *flakyConns) WithConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	if f.calls.Add(1) == f.failAt {
		return errors.New("connection reset by peer")
	}
	return f.Conns.WithConn(ctx, fn)
}

// A transient failure after a rejection retries only what is not settled yet: the
// rejection is counted once for its delivery, not again with every retry of the batch.
func TestRetryAfterTransientFailureCountsARejectionOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	poison, err := e.queue.Enqueue(ctx, "a", "nul \x00 byte")
	require.NoError(t, err)
	_, err = e.queue.Enqueue(ctx, "b", "v")
	require.NoError(t, err)
	// One batch, keys in order: [a b] is refused for a's data, [a] alone is rejected
	// (attempt 1), then [b] fails on the connection.
	cfg := testConfig()
	cfg.ClaimMinIdle = time.Minute // a is not redelivered during the test
	e.startWorkerOn(t, &flakyConns{Conns: e.pool, failAt: 3}, "w", cfg)
	testenv.WaitFor(t, 10*time.Second, "b to be applied", func() bool { return e.rows(t)["b"].value == "v" })
	n, err := e.rdb.HGet(ctx, stream+":attempts", poison.ID).Int()
	require.NoError(t, err)
	assert.Equal(t, 1, n, "one delivery, one rejection")
}

// Two workers apply the same keys while entries are redelivered to them. First, entries
// a dead consumer held are claimed after newer writes of the same keys were applied: they
// must change nothing. Then both workers write the same keys while one keeps claiming the
// other's batches in flight, so the same entries are applied twice, concurrently. No key
// ever moves back to an older version, and every key ends with its last write.
func TestTwoWorkersWithRedeliveriesNeverRegress(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	const keys, rounds = 20, 30
	key := func(i int) string { return fmt.Sprint("k", i) }
	enqueueRound := func(r int) {
		for i := range keys {
			_, err := e.queue.Enqueue(ctx, key(i), fmt.Sprint("v", r))
			require.NoError(t, err)
		}
	}
	backlog := func() int64 {
		st, err := e.queue.Stats(ctx)
		require.NoError(t, err)
		return st.Length
	}

	// Round 0 is taken by a consumer that dies with it.
	enqueueRound(0)
	ghost, err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: writequeue.Group, Consumer: "ghost",
		Streams: []string{stream, ">"}, Count: keys, Block: -1}).Result()
	require.NoError(t, err)
	require.Len(t, ghost[0].Messages, keys)

	// Worker a never claims (its claim time is long); it applies round 1.
	slow, fast := testConfig(), testConfig()
	slow.ClaimMinIdle = time.Minute
	fast.BatchSize, fast.ClaimMinIdle = 7, 5*time.Millisecond
	e.startWorker(t, "a", slow)
	enqueueRound(1)
	testenv.WaitFor(t, 10*time.Second, "round 1 to be applied", func() bool { return backlog() == keys })
	n, err := e.rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(2*keys), n, "round 1 is acknowledged but stays in the stream behind the dead consumer's round 0")
	// Worker b claims the dead consumer's round 0, now older than what is stored.
	e.startWorker(t, "b", fast)
	e.drained(t, 10*time.Second)
	for k, r := range e.rows(t) {
		assert.Equal(t, "v1", r.value, "the redelivered older write %s changed nothing", k)
	}

	// Now both write the same keys, b claiming a's batches while a applies them.
	var (
		watch   sync.WaitGroup
		done    = make(chan struct{})
		regress []string
		readErr error
	)
	watch.Go(func() {
		seen := map[string]row{}
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
			rows, err := e.readRows()
			if err != nil {
				readErr = err
				return
			}
			for k, r := range rows {
				if old, ok := seen[k]; ok && r.ver.Less(old.ver) {
					regress = append(regress, fmt.Sprintf("%s went from %s (%s) back to %s (%s)", k, old.ver, old.value, r.ver, r.value))
				}
				seen[k] = r
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	})
	var writers sync.WaitGroup
	for i := range keys {
		writers.Go(func() {
			for r := 2; r <= rounds; r++ {
				_, err := e.queue.Enqueue(ctx, key(i), fmt.Sprint("v", r))
				assert.NoError(t, err)
				if rand.IntN(4) == 0 {
					time.Sleep(time.Millisecond) // spread the writes over many batches
				}
			}
		})
	}
	writers.Wait()
	e.drained(t, 30*time.Second)
	close(done)
	watch.Wait()

	require.NoError(t, readErr, "the watcher's reads")
	assert.Empty(t, regress)
	rows := e.rows(t)
	for i := range keys {
		assert.Equal(t, fmt.Sprint("v", rounds), rows[key(i)].value, key(i))
	}
	st, err := e.queue.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(keys*(rounds+1)), st.Processed, "every entry counted once, however often it was applied")
	assert.Zero(t, st.Pending)
	assert.Zero(t, st.DeadLettered)
}

// A stopped worker deletes its consumer and its heartbeat; a dead one's consumer is
// removed by the others once its entries were claimed and it stayed silent a while.
func TestConsumersOfStoppedWorkersAreRemoved(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	consumers := func() []string {
		cs, err := e.rdb.XInfoConsumers(ctx, stream, writequeue.Group).Result()
		require.NoError(t, err)
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		return names
	}
	workers := func() int64 {
		st, err := e.queue.Stats(ctx)
		require.NoError(t, err)
		return st.Workers
	}
	cfg := testConfig()
	stop := e.startWorker(t, "clean", cfg)
	_, err := e.queue.Enqueue(ctx, "k", "v") // a consumer exists once it has read something
	require.NoError(t, err)
	e.drained(t, 5*time.Second)
	testenv.WaitFor(t, 5*time.Second, "the heartbeat", func() bool { return workers() == 1 })
	assert.Equal(t, []string{"clean"}, consumers())
	stop()
	assert.Empty(t, consumers())
	assert.Zero(t, workers())

	// "dead" took an entry and vanished.
	_, err = e.queue.Enqueue(ctx, "k", "v2")
	require.NoError(t, err)
	_, err = e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: writequeue.Group, Consumer: "dead",
		Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
	require.NoError(t, err)
	cfg.ClaimMinIdle, cfg.PollInterval = 20*time.Millisecond, 20*time.Millisecond
	e.startWorker(t, "live", cfg)
	e.drained(t, 5*time.Second)
	testenv.WaitFor(t, 5*time.Second, "the dead consumer to be removed", func() bool {
		names := consumers()
		return len(names) == 1 && names[0] == "live"
	})
	assert.Equal(t, "v2", e.rows(t)["k"].value)
}

// Large values are split over several statements instead of one huge one.
func TestLargeValuesSpanSeveralStatements(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 0)
	big := strings.Repeat("x", 1<<20)
	for i := range 12 {
		_, err := e.queue.Enqueue(ctx, fmt.Sprint("big", i), big)
		require.NoError(t, err)
	}
	e.startWorker(t, "w", testConfig())
	e.drained(t, 30*time.Second)
	rows := e.rows(t)
	require.Len(t, rows, 12)
	for k, r := range rows {
		assert.Len(t, r.value, 1<<20, k)
	}
}

// Concurrent writes are gathered into shared script runs; each caller still gets its own
// answer: its own id, or ErrBacklogFull for exactly the writes past the bound.
func TestConcurrentEnqueuesShareRoundTrips(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 40)
	const callers = 100
	var wg sync.WaitGroup
	ids := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			entry, err := e.queue.Enqueue(ctx, fmt.Sprint("k", i%10), fmt.Sprint("v", i))
			ids[i], errs[i] = entry.ID, err
		})
	}
	wg.Wait()
	accepted := map[string]bool{}
	full := 0
	for i, err := range errs {
		if errors.Is(err, writequeue.ErrBacklogFull) {
			full++
			continue
		}
		require.NoError(t, err)
		assert.False(t, accepted[ids[i]], "ids are distinct")
		accepted[ids[i]] = true
	}
	assert.Len(t, accepted, 40)
	assert.Equal(t, callers-40, full)
	st, err := e.queue.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(40), st.Length)
	assert.Equal(t, int64(40), st.Queued)
	// Each key reads as its newest accepted write.
	newest := map[string]int{} // key → caller whose accepted write has the highest id
	for i := range callers {
		if !accepted[ids[i]] {
			continue
		}
		k := fmt.Sprint("k", i%10)
		if j, ok := newest[k]; !ok || mustParseID(t, ids[j]).Less(mustParseID(t, ids[i])) {
			newest[k] = i
		}
	}
	for k := range 10 {
		key := fmt.Sprint("k", k)
		b, ok, err := e.queue.Buffered(ctx, key)
		require.NoError(t, err)
		i, want := newest[key]
		require.Equal(t, want, ok, key)
		if want {
			assert.Equal(t, fmt.Sprint("v", i), b.Value, key)
		}
	}
}

func mustParseID(t testing.TB, s string) writequeue.ID {
	t.Helper()
	id, err := writequeue.ParseID(s)
	require.NoError(t, err)
	return id
}

// A closed queue refuses writes; a cancelled caller's write is not stored.
func TestEnqueueAfterCloseAndCancel(t *testing.T) {
	e := newEnv(t, 0)
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.queue.Enqueue(cctx, "k", "v")
	require.ErrorIs(t, err, context.Canceled)
	e.queue.Close()
	_, err = e.queue.Enqueue(context.Background(), "k", "v")
	require.ErrorIs(t, err, writequeue.ErrClosed)
	n, err := e.rdb.XLen(context.Background(), stream).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}
