package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/testenv"
)

var timeouts = pgstore.Timeouts{ConnectTimeout: 2 * time.Second, QueryTimeout: 2 * time.Second, StartupTimeout: 10 * time.Second}

var directConfig = pgstore.DirectConfig{Timeouts: timeouts, MaxOpen: 10}

func newPool(t testing.TB, url string) *pgstore.Pool {
	t.Helper()
	pool, err := pgstore.NewPool(context.Background(), url, pgstore.PoolConfig{Timeouts: timeouts, MinConns: 2, MaxConns: 10})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgstore.EnsureSchema(context.Background(), pool, pgstore.Schema))
	return pool
}

func TestPoolStoreContract(t *testing.T) {
	recordtest.Run(t, pgstore.NewStore(newPool(t, testenv.PostgresURL(t))))
}

func TestDirectStoreContract(t *testing.T) {
	direct, err := pgstore.NewDirect(testenv.PostgresURL(t), directConfig)
	require.NoError(t, err)
	require.NoError(t, pgstore.EnsureSchema(context.Background(), direct, pgstore.Schema))
	recordtest.Run(t, pgstore.NewStore(direct))
	assert.Greater(t, direct.Opened(), int64(10), "a connection per call")
}

// The original's test_database.py, corrected: key is the primary key, with no second index.
func TestSchema(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testenv.PostgresURL(t))
	require.NoError(t, pgstore.EnsureSchema(ctx, pool, pgstore.Schema), "creating the schema twice is harmless")

	var one int
	require.NoError(t, pool.QueryRow(ctx, "SELECT 1").Scan(&one))
	assert.Equal(t, 1, one)

	rows, err := pool.Query(ctx, `SELECT column_name, data_type, is_nullable FROM information_schema.columns
		WHERE table_name = 'records' ORDER BY ordinal_position`)
	require.NoError(t, err)
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name, typ, null string
		err := r.Scan(&name, &typ, &null)
		return name + " " + typ + " " + null, err
	})
	require.NoError(t, err)
	assert.Equal(t, []string{
		"key character varying NO", "value text NO",
		"created_at timestamp without time zone NO", "updated_at timestamp without time zone NO",
	}, cols)

	var indexes []string
	rows, err = pool.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE tablename = 'records'`)
	require.NoError(t, err)
	indexes, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"CREATE UNIQUE INDEX records_pkey ON public.records USING btree (key)"}, indexes)

	_, err = pool.Exec(ctx, `INSERT INTO records (key, value) VALUES ('dup', 'a')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO records (key, value) VALUES ('dup', 'b')`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "23505", pgErr.Code, "unique violation")
}

func TestSchemaCreatedConcurrently(t *testing.T) {
	url := testenv.PostgresURL(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			d, err := pgstore.NewDirect(url, directConfig)
			if err == nil {
				err = pgstore.EnsureSchema(context.Background(), d, pgstore.Schema)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

func TestPoolStatsAreLive(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testenv.PostgresURL(t))
	store := pgstore.NewStore(pool)
	for i := range 5 {
		require.NoError(t, store.Put(ctx, fmt.Sprint("k", i), "v"))
	}
	st := pool.Stats()
	assert.GreaterOrEqual(t, st.AcquireCount, int64(5))
	assert.LessOrEqual(t, st.PoolSize, int32(10), "the pool never exceeds max size")
	assert.Equal(t, int32(2), st.MinSize)
	assert.Equal(t, int32(10), st.MaxSize)
	assert.Equal(t, int32(0), st.InUse)
	assert.Positive(t, st.UsageMs+int64(st.AcquireCount), "usage is counted")

	// Hold every connection; the next acquire must wait, and shows up as waiting.
	conns := make(chan struct{})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			_ = pool.WithConn(ctx, func(context.Context, *pgx.Conn) error { <-conns; return nil })
		})
	}
	testenv.WaitFor(t, 5*time.Second, "10 connections in use", func() bool { return pool.Stats().InUse == 10 })
	waiter := make(chan error)
	go func() { waiter <- store.Put(ctx, "waiting", "v") }()
	testenv.WaitFor(t, 5*time.Second, "a waiting request", func() bool { return pool.Stats().RequestsWaiting == 1 })
	close(conns)
	require.NoError(t, <-waiter)
	wg.Wait()
	st = pool.Stats()
	assert.Equal(t, int64(0), st.RequestsWaiting)
	assert.GreaterOrEqual(t, st.WaitCount, int64(1))
	assert.Positive(t, st.WaitTimeMs)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"unique violation is not an outage", &pgconn.PgError{Code: "23505"}, false},
		{"syntax error is not an outage", &pgconn.PgError{Code: "42601"}, false},
		{"network error", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"timeout", context.DeadlineExceeded, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pgstore.Classify(fmt.Errorf("wrapped: %w", tc.err))
			assert.Equal(t, tc.unavailable, record.IsUnavailable(err))
			assert.ErrorIs(t, err, tc.err)
		})
	}
	assert.NoError(t, pgstore.Classify(nil))
}

// With the database stopped, calls fail fast as Unavailable; when it is back, the same
// pool serves again.
func TestPoolSurvivesRestart(t *testing.T) {
	srv := testenv.StartPostgres(t, testenv.PGOptions{})
	ctx := context.Background()
	store := pgstore.NewStore(newPool(t, srv.CreateDatabase(t)))
	require.NoError(t, store.Put(ctx, "k", "v1"))

	srv.Stop(t)
	start := time.Now()
	_, err := store.Get(ctx, "k")
	assert.True(t, record.IsUnavailable(err), "got %v", err)
	assert.Less(t, time.Since(start), 3*time.Second)

	srv.Start(t)
	testenv.WaitFor(t, 10*time.Second, "the pool to reconnect", func() bool { return store.Ping(ctx) == nil })
	require.NoError(t, store.Put(ctx, "k", "v2"))
	rec, err := store.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v2", rec.Value)
}
