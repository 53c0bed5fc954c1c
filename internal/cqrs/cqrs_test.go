package cqrs_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/cqrs"
	"github.com/dblayers/dblayers/internal/cqrs/cqrstest"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/testenv"
)

// side is one database of the pair with the pool the code under test uses.
type side struct {
	url  string
	pool *pgstore.Pool
}

// env is a write database with its outbox and a read database with its read model.
type env struct {
	write, read side
	outbox      *cqrs.Outbox
	model       *cqrs.ReadModel
}

func openSide(t testing.TB, url string, schema []string) side {
	t.Helper()
	var pc pgstore.PoolConfig
	require.NoError(t, config.LoadFrom(&pc, config.Defaults))
	pool, err := pgstore.NewPool(context.Background(), url, pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, pgstore.EnsureSchema(ctx, pool, schema...))
	return side{url: url, pool: pool}
}

func newEnv(t testing.TB, writeURL, readURL string) *env {
	t.Helper()
	e := &env{write: openSide(t, writeURL, cqrs.WriteSchema), read: openSide(t, readURL, cqrs.ReadSchema)}
	e.outbox, e.model = cqrs.NewOutbox(e.write.pool), cqrs.NewReadModel(e.read.pool)
	return e
}

func sharedEnv(t testing.TB) *env {
	return newEnv(t, testenv.PostgresURL(t), testenv.PostgresURL(t))
}

// fastConfig polls and retries quickly, so that tests take milliseconds.
func fastConfig() cqrs.Config {
	return cqrs.Config{BatchSize: 5, PollInterval: 5 * time.Millisecond, MaxAttempts: 3,
		RetryDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond}
}

// projector makes a projector with a pool of its own on the read database, as a separate
// process would have.
func (e *env) projector(t testing.TB, cfg cqrs.Config, logger *slog.Logger) *cqrs.Projector {
	t.Helper()
	read := openSide(t, e.read.url, cqrs.ReadSchema)
	write := openSide(t, e.write.url, cqrs.WriteSchema)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return cqrs.NewProjector(cqrs.NewOutbox(write.pool), read.pool, cfg, logger)
}

// run runs p until the test ends.
func run(t testing.TB, p *cqrs.Projector) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, p.Run(ctx))
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func (e *env) record(t testing.TB, typ, key, value string) int64 {
	t.Helper()
	id, err := e.outbox.Record(context.Background(), typ, key, value)
	require.NoError(t, err)
	return id
}

func (e *env) state(t testing.TB) cqrs.State {
	t.Helper()
	s, err := e.model.State(context.Background())
	require.NoError(t, err)
	return s
}

// waitProjected waits until applied plus parked events reach n.
func (e *env) waitProjected(t testing.TB, n int64) cqrs.State {
	t.Helper()
	var s cqrs.State
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%d events projected or parked", n), func() bool {
		var err error
		s, err = e.model.State(context.Background()) // may fail for a moment after an outage
		return err == nil && s.EventsProjected+s.EventsParked >= n
	})
	return s
}

// drain runs Step until it has applied n events in all, within a deadline.
func drain(t testing.TB, p *cqrs.Projector, n int) {
	t.Helper()
	got := 0
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%d events applied", n), func() bool {
		k, err := p.Step(context.Background())
		require.NoError(t, err)
		got += k
		return got >= n
	})
	require.Equal(t, n, got)
}

// commandsPerKey counts the write side's commands of each key.
func commandsPerKey(t testing.TB, url string) map[string]int {
	t.Helper()
	out := map[string]int{}
	var (
		k string
		n int
	)
	require.NoError(t, testenv.ForEachRow(url, `SELECT key, count(*) FROM commands GROUP BY key`, nil, []any{&k, &n}, func() { out[k] = n }))
	return out
}

func writeCounts(rows []cqrstest.Row) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		out[r.Key] = r.WriteCount
	}
	return out
}

func TestRecordWritesCommandAndEventTogether(t *testing.T) {
	e := sharedEnv(t)
	id := e.record(t, cqrs.RecordCreated, "k", "v")
	assert.Positive(t, id)

	ctx := context.Background()
	var (
		typ, key, value string
		cmdKey, cmdVal  string
	)
	require.NoError(t, testenv.QueryRow(e.write.url, `SELECT o.type, o.key, o.value, c.key, c.value
FROM outbox o JOIN commands c ON c.id = o.command_id WHERE o.id = $1`, []any{id}, &typ, &key, &value, &cmdKey, &cmdVal))
	assert.Equal(t, []string{cqrs.RecordCreated, "k", "v", "k", "v"}, []string{typ, key, value, cmdKey, cmdVal})

	_, err := e.outbox.Record(ctx, "RecordDeleted", "k", "v")
	require.ErrorIs(t, err, cqrs.ErrUnknownType)
	totals, err := e.outbox.Totals(ctx)
	require.NoError(t, err)
	assert.Equal(t, cqrs.Totals{Events: 1, Commands: 1}, totals, "a refused command writes nothing")
}

func TestProjectorAppliesEachEventOnce(t *testing.T) {
	e := sharedEnv(t)
	p := e.projector(t, fastConfig(), nil)
	for i := range 12 {
		typ := cqrs.RecordCreated
		if i >= 3 {
			typ = cqrs.RecordUpdated
		}
		e.record(t, typ, fmt.Sprint("k", i%3), fmt.Sprint("v", i))
	}
	drain(t, p, 12)
	n, err := p.Step(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left to apply")

	rows := cqrstest.ReadModel(t, e.read.url)
	require.Len(t, rows, 3)
	for i, r := range rows {
		assert.Equal(t, fmt.Sprint("k", i), r.Key)
		assert.Equal(t, fmt.Sprint("v", 9+i), r.Value, "the last event of the key wins")
		assert.Equal(t, 4, r.WriteCount)
		assert.True(t, r.UpdatedAt.After(r.CreatedAt), "created_at is the first command's time, updated_at the last's")
	}
	s := e.state(t)
	assert.Equal(t, int64(12), s.EventsProjected)
	assert.Zero(t, s.EventsParked)
	assert.Equal(t, int64(3), s.Records)
	require.NotNil(t, s.SinceProjected)

	b, err := e.outbox.Backlog(context.Background(), s.Position)
	require.NoError(t, err)
	assert.Equal(t, cqrs.Backlog{}, b)
	b, err = e.outbox.Backlog(context.Background(), cqrs.Position{})
	require.NoError(t, err)
	assert.Equal(t, int64(12), b.Events)
	assert.Positive(t, b.OldestAge)
}

// A transaction that took a smaller event id can commit after one that took a larger id.
// A projector that had moved past the larger id by id alone would skip the smaller one.
func TestEventsCommittedOutOfIDOrderAreNotSkipped(t *testing.T) {
	e := sharedEnv(t)
	p := e.projector(t, fastConfig(), nil)
	ctx := context.Background()
	slow, err := pgx.Connect(ctx, e.write.url)
	require.NoError(t, err)
	defer slow.Close(ctx)
	recordIn := func(tx pgx.Tx, key string) int64 {
		var id int64
		require.NoError(t, tx.QueryRow(ctx, `WITH c AS (INSERT INTO commands (key, value) VALUES ($1, 'slow') RETURNING id, created_at)
INSERT INTO outbox (type, key, value, command_id, created_at) SELECT 'RecordCreated', $1, 'slow', c.id, c.created_at FROM c RETURNING id`, key).Scan(&id))
		return id
	}

	t.Run("smaller id, still running", func(t *testing.T) {
		tx, err := slow.Begin(ctx)
		require.NoError(t, err)
		slowID := recordIn(tx, "a-slow")
		fastID := e.record(t, cqrs.RecordCreated, "a-fast", "fast")
		require.Less(t, slowID, fastID)

		n, err := p.Step(ctx)
		require.NoError(t, err)
		assert.Zero(t, n, "the committed event waits for the older transaction")
		require.NoError(t, tx.Commit(ctx))
		drain(t, p, 2)
	})
	t.Run("older transaction, larger id", func(t *testing.T) {
		tx, err := slow.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `SELECT pg_current_xact_id()`) // the slow transaction gets its id first
		require.NoError(t, err)
		fastID := e.record(t, cqrs.RecordCreated, "b-fast", "fast")
		slowID := recordIn(tx, "b-slow")
		require.Less(t, fastID, slowID)

		n, err := p.Step(ctx)
		require.NoError(t, err)
		assert.Zero(t, n)
		require.NoError(t, tx.Commit(ctx))
		drain(t, p, 2)
	})
	t.Run("rolled back", func(t *testing.T) {
		tx, err := slow.Begin(ctx)
		require.NoError(t, err)
		recordIn(tx, "c-rolled-back")
		e.record(t, cqrs.RecordCreated, "c-fast", "fast")
		require.NoError(t, tx.Rollback(ctx))
		drain(t, p, 1)
	})

	keys := map[string]int{}
	for _, r := range cqrstest.ReadModel(t, e.read.url) {
		keys[r.Key] = r.WriteCount
	}
	assert.Equal(t, map[string]int{"a-slow": 1, "a-fast": 1, "b-slow": 1, "b-fast": 1, "c-fast": 1}, keys)
	assert.Equal(t, int64(5), e.state(t).EventsProjected)
}

func TestTwoProjectorsNeverApplyAnEventTwice(t *testing.T) {
	e := sharedEnv(t)
	cfg := fastConfig()
	run(t, e.projector(t, cfg, nil))
	run(t, e.projector(t, cfg, nil))

	const writers, perWriter, keys = 8, 40, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				_, err := e.outbox.Record(context.Background(), cqrs.RecordUpdated, fmt.Sprint("k", (w+i)%keys), fmt.Sprint(w, "-", i))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	s := e.waitProjected(t, writers*perWriter)
	assert.Equal(t, int64(writers*perWriter), s.EventsProjected)
	assert.Zero(t, s.EventsParked)
	assert.Equal(t, commandsPerKey(t, e.write.url), writeCounts(cqrstest.ReadModel(t, e.read.url)), "write_count equals the commands of each key")
}

func TestRefusedEventIsRetriedThenParked(t *testing.T) {
	e := sharedEnv(t)
	// The read model refuses the value "poison": a stand-in for any event it cannot apply.
	testenv.Exec(t, e.read.url, `ALTER TABLE records ADD CONSTRAINT no_poison CHECK (value <> 'poison')`)
	var logs testenv.Buffer
	cfg := fastConfig()
	cfg.BatchSize = 10
	run(t, e.projector(t, cfg, slog.New(slog.NewJSONHandler(&logs, nil))))

	e.record(t, cqrs.RecordCreated, "ok1", "v")
	poison := e.record(t, cqrs.RecordCreated, "bad", "poison")
	// An event type this projector does not know (written by a newer writer, say).
	testenv.Exec(t, e.write.url, `WITH c AS (INSERT INTO commands (key, value) VALUES ('odd', 'v') RETURNING id, created_at)
INSERT INTO outbox (type, key, value, command_id, created_at) SELECT 'RecordDeleted', 'odd', 'v', c.id, c.created_at FROM c`)
	e.record(t, cqrs.RecordUpdated, "ok2", "v")

	s := e.waitProjected(t, 4)
	assert.Equal(t, int64(2), s.EventsProjected)
	assert.Equal(t, int64(2), s.EventsParked)
	require.Len(t, s.ParkedIDs, 2)
	assert.Equal(t, poison, s.ParkedIDs[0])

	keys := map[string]int{}
	for _, r := range cqrstest.ReadModel(t, e.read.url) {
		keys[r.Key] = r.WriteCount
	}
	assert.Equal(t, map[string]int{"ok1": 1, "ok2": 1}, keys, "the events after the parked ones are applied")

	type parked struct {
		Key      string
		Attempts int
		Error    string
	}
	var got []parked
	var p parked
	require.NoError(t, testenv.ForEachRow(e.read.url, `SELECT key, attempts, error FROM parked_events ORDER BY event_id`, nil,
		[]any{&p.Key, &p.Attempts, &p.Error}, func() { got = append(got, p) }))
	require.Len(t, got, 2)
	assert.Equal(t, "bad", got[0].Key)
	assert.Equal(t, cfg.MaxAttempts, got[0].Attempts, "retried before it was parked")
	assert.Contains(t, got[0].Error, "no_poison")
	assert.Equal(t, "odd", got[1].Key)
	assert.Contains(t, got[1].Error, "unknown event type")
	assert.Equal(t, 2*(cfg.MaxAttempts-1), strings.Count(logs.String(), "event failed, will retry"))
	assert.Equal(t, 2, strings.Count(logs.String(), "event parked"))
}

// A database outage is not an event's fault: the projector waits it out and parks nothing.
func TestReadDatabaseOutageParksNothing(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	e := newEnv(t, testenv.PostgresURL(t), pg.CreateDatabase(t))
	var logs testenv.Buffer
	cfg := fastConfig()
	run(t, e.projector(t, cfg, slog.New(slog.NewJSONHandler(&logs, nil))))
	e.record(t, cqrs.RecordCreated, "before", "v")
	e.waitProjected(t, 1)

	pg.Stop(t)
	for i := range 10 {
		e.record(t, cqrs.RecordUpdated, fmt.Sprint("during", i%2), "v")
	}
	testenv.WaitFor(t, 10*time.Second, "the projector to meet the outage", func() bool {
		return strings.Contains(logs.String(), "projection failed, will retry")
	})
	pg.Start(t)

	s := e.waitProjected(t, 11)
	assert.Equal(t, int64(11), s.EventsProjected)
	assert.Zero(t, s.EventsParked)
	assert.Equal(t, map[string]int{"before": 1, "during0": 5, "during1": 5}, writeCounts(cqrstest.ReadModel(t, e.read.url)))
	assert.Contains(t, logs.String(), "projection resumed")
}

func TestRebuildEqualsLive(t *testing.T) {
	e := sharedEnv(t)
	testenv.Exec(t, e.read.url, `ALTER TABLE records ADD CONSTRAINT no_poison CHECK (value <> 'poison')`)
	cfg := fastConfig()
	live := e.projector(t, cfg, nil)
	run(t, live)
	for i := range 60 {
		e.record(t, cqrs.RecordUpdated, fmt.Sprint("k", i%7), fmt.Sprint("v", i))
		if i == 30 {
			e.record(t, cqrs.RecordUpdated, "k1", "poison")
		}
	}
	before := e.waitProjected(t, 61)
	for range 3 {
		_, err := e.model.Read(context.Background(), "k3")
		require.NoError(t, err)
	}
	want := cqrstest.ReadModel(t, e.read.url)
	require.Len(t, want, 7)
	require.Equal(t, int64(1), before.EventsParked)
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)

	t.Run("in place, nothing to change", func(t *testing.T) {
		res, err := cqrs.Rebuild(ctx, e.outbox, e.read.pool, 7, time.Minute, logger)
		require.NoError(t, err)
		assert.Equal(t, cqrs.RebuildResult{Events: 60, Parked: 1, Position: before.Position}, res)
		assert.Equal(t, want, cqrstest.ReadModel(t, e.read.url))
		after := e.state(t)
		assert.Equal(t, before.Position, after.Position)
		assert.Equal(t, before.EventsProjected, after.EventsProjected)
		assert.Equal(t, before.ParkedIDs, after.ParkedIDs)
	})
	t.Run("repairs a damaged read model", func(t *testing.T) {
		testenv.Exec(t, e.read.url, `UPDATE records SET value = 'wrong', write_count = 99 WHERE key = 'k0'`)
		testenv.Exec(t, e.read.url, `DELETE FROM records WHERE key = 'k5'`)
		testenv.Exec(t, e.read.url, `INSERT INTO records (key, value, created_at, updated_at) VALUES ('stray', 'x', now(), now())`)
		res, err := cqrs.Rebuild(ctx, e.outbox, e.read.pool, 100, time.Minute, logger)
		require.NoError(t, err)
		assert.Equal(t, int64(2), res.Changed)
		assert.Equal(t, int64(1), res.Removed)
		got := cqrstest.ReadModel(t, e.read.url)
		require.Len(t, got, len(want))
		for i := range want {
			if want[i].Key == "k5" {
				want[i].ReadCount = 0 // a deleted row's reads are gone with it
			}
		}
		assert.Equal(t, want, got)
	})
	t.Run("from scratch into an empty read database", func(t *testing.T) {
		fresh := openSide(t, testenv.PostgresURL(t), cqrs.ReadSchema)
		testenv.Exec(t, fresh.url, `ALTER TABLE records ADD CONSTRAINT no_poison CHECK (value <> 'poison')`)
		res, err := cqrs.Rebuild(ctx, e.outbox, fresh.pool, 1000, time.Minute, logger)
		require.NoError(t, err)
		assert.Equal(t, int64(7), res.Changed)
		got := cqrstest.ReadModel(t, fresh.url)
		for i := range want {
			want[i].ReadCount = 0 // reads are query-side state, not events
		}
		assert.Equal(t, want, got)
	})
	t.Run("the live projector carries on after a rebuild", func(t *testing.T) {
		e.record(t, cqrs.RecordUpdated, "k2", "after")
		s := e.waitProjected(t, 62)
		assert.Equal(t, int64(61), s.EventsProjected)
		assert.Equal(t, commandsPerKey(t, e.write.url)["k2"], writeCounts(cqrstest.ReadModel(t, e.read.url))["k2"])
	})
}
