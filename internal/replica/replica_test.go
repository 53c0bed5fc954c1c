package replica_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/record/recordtest"
	"github.com/dblayers/dblayers/internal/replica"
	"github.com/dblayers/dblayers/internal/testenv"
)

// cluster is a primary with streaming replicas and one database, with the records table
// created on the primary and replayed by every replica.
type cluster struct {
	primary     *testenv.PGServer
	replicas    []*testenv.PGServer
	primaryURL  string
	replicaURLs []string
}

func startCluster(t *testing.T, replicas int) *cluster {
	t.Helper()
	c := &cluster{primary: testenv.StartPostgres(t, testenv.PGOptions{Settings: testenv.PrimarySettings()})}
	for i := range replicas {
		c.replicas = append(c.replicas, testenv.StartReplica(t, c.primary, fmt.Sprintf("replica_%d", i+1)))
	}
	c.primaryURL = c.primary.CreateDatabase(t)
	u, err := url.Parse(c.primaryURL)
	require.NoError(t, err)
	db := strings.TrimPrefix(u.Path, "/")
	pool := openPool(t, c.primaryURL)
	require.NoError(t, pgstore.EnsureSchema(context.Background(), pool, pgstore.Schema))
	for _, r := range c.replicas {
		c.replicaURLs = append(c.replicaURLs, r.URL(db))
		testenv.WaitFor(t, 15*time.Second, "the records table on the replica", func() bool {
			var n int
			return testenv.QueryRow(r.URL(db), "SELECT count(*) FROM records", nil, &n) == nil
		})
	}
	return c
}

func openPool(t *testing.T, url string) *pgstore.Pool {
	t.Helper()
	var pc pgstore.PoolConfig
	require.NoError(t, config.LoadFrom(&pc, config.Defaults))
	pool, err := pgstore.NewPool(context.Background(), url, pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// stack is a Store with its Balancer over a cluster.
type stack struct {
	store    *replica.Store
	balancer *replica.Balancer
	replicas []*replica.Replica
}

func newStack(t *testing.T, c *cluster, cfg replica.Config, replicaURLs ...string) *stack {
	t.Helper()
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 100 * time.Millisecond
	}
	if cfg.TrackWrites == 0 {
		cfg.TrackWrites, cfg.TrackTTL = 1000, time.Minute
	}
	if replicaURLs == nil {
		replicaURLs = c.replicaURLs
	}
	logger := slog.New(slog.DiscardHandler)
	primary := openPool(t, c.primaryURL)
	var rs []*replica.Replica
	for i, u := range replicaURLs {
		rs = append(rs, replica.NewReplica(fmt.Sprint("replica-", i+1), openPool(t, u)))
	}
	b := replica.NewBalancer(context.Background(), primary, rs, cfg, logger)
	t.Cleanup(b.Close)
	return &stack{
		store:    replica.NewStore(primary, b, replica.NewTracker(cfg.TrackWrites, cfg.TrackTTL), logger),
		balancer: b,
		replicas: rs,
	}
}

var lenient = replica.Config{MaxLagBytes: 1 << 40, MaxLag: time.Hour}

// waitReplayed waits until every replica has replayed all the primary has written, and
// the balancer has seen it.
func (s *stack) waitReplayed(t *testing.T, c *cluster) {
	t.Helper()
	testenv.WaitReplayed(t, c.primaryURL, c.replicaURLs...)
	testenv.WaitFor(t, 10*time.Second, "the balancer to see the replicas serve", func() bool {
		s.balancer.Check(context.Background())
		for _, r := range s.replicas {
			if !r.Status().Serving {
				return false
			}
		}
		return true
	})
}

func (s *stack) read(t *testing.T, key string) (string, record.Read) {
	t.Helper()
	r, err := s.store.Read(context.Background(), key)
	require.NoError(t, err)
	return r.Value, r
}

func TestReplicatedStore(t *testing.T) {
	c := startCluster(t, 2)
	ctx := context.Background()

	t.Run("record.Store contract", func(t *testing.T) {
		recordtest.Run(t, newStack(t, c, replica.Config{MaxLagBytes: 16 << 20, MaxLag: 5 * time.Second}).store)
	})

	t.Run("reads go round-robin over the replicas", func(t *testing.T) {
		s := newStack(t, c, lenient)
		require.NoError(t, s.store.Put(ctx, "rr", "v"))
		s.waitReplayed(t, c)
		for range 20 {
			v, src := s.read(t, "rr")
			assert.Equal(t, "v", v)
			assert.NotEmpty(t, src.Replica)
		}
		st := s.store.Stats()
		assert.Equal(t, int64(10), st.Replicas[0].ReadsServed)
		assert.Equal(t, int64(10), st.Replicas[1].ReadsServed)
		assert.Equal(t, int64(0), st.Primary.ReadsServed)
	})

	t.Run("a read never returns less than an acknowledged write", func(t *testing.T) {
		s := newStack(t, c, lenient)
		require.NoError(t, s.store.Put(ctx, "ryw", "v1"))
		require.NoError(t, s.store.Put(ctx, "untouched", "u"))
		s.waitReplayed(t, c)
		for _, r := range c.replicas {
			r.PauseReplay(t)
		}
		defer func() {
			for _, r := range c.replicas {
				r.ResumeReplay(t)
			}
		}()

		require.NoError(t, s.store.Put(ctx, "ryw", "v2"))
		v, src := s.read(t, "ryw")
		assert.Equal(t, "v2", v, "the paused replicas still hold v1")
		assert.Empty(t, src.Replica, "only the primary has v2")
		assert.Equal(t, int64(1), s.store.Stats().Primary.ReadsNotReplayed)
		var direct string
		require.NoError(t, testenv.QueryRow(c.replicaURLs[0], "SELECT value FROM records WHERE key = 'ryw'", nil, &direct))
		assert.Equal(t, "v1", direct, "the replica really is behind")

		v, src = s.read(t, "untouched")
		assert.Equal(t, "u", v)
		assert.NotEmpty(t, src.Replica, "keys the replicas are current for still read from them")

		for _, r := range c.replicas {
			r.ResumeReplay(t)
		}
		testenv.WaitFor(t, 10*time.Second, "a replica to serve v2", func() bool {
			v, src := s.read(t, "ryw")
			require.Equal(t, "v2", v)
			return src.Replica != ""
		})
	})

	t.Run("a replica past the lag bound leaves the rotation and comes back", func(t *testing.T) {
		s := newStack(t, c, replica.Config{MaxLagBytes: 1 << 40, MaxLag: time.Second})
		require.NoError(t, s.store.Put(ctx, "steady", "v"))
		s.waitReplayed(t, c)
		c.replicas[0].PauseReplay(t)
		defer c.replicas[0].ResumeReplay(t)
		i := 0
		testenv.WaitFor(t, 15*time.Second, "replica-1 to be left out as lagging", func() bool {
			i++
			require.NoError(t, s.store.Put(ctx, "churn", fmt.Sprint(i)))
			st := s.replicas[0].Status()
			return !st.Serving && st.Problem == replica.ProblemLagging
		})
		st := s.replicas[0].Status()
		assert.True(t, st.Healthy)
		assert.True(t, st.ReplayPaused)
		assert.Greater(t, st.LagBytes, int64(0))
		assert.Greater(t, st.LagSeconds, 1.0)

		before := s.replicas[0].Status().ReadsServed
		for range 10 {
			v, src := s.read(t, "steady")
			assert.Equal(t, "v", v)
			assert.Equal(t, "replica-2", src.Replica)
		}
		assert.Equal(t, before, s.replicas[0].Status().ReadsServed, "the lagging replica served nothing")

		c.replicas[0].ResumeReplay(t)
		testenv.WaitFor(t, 10*time.Second, "replica-1 to serve again", func() bool { return s.replicas[0].Status().Serving })
	})

	t.Run("the bound in bytes", func(t *testing.T) {
		s := newStack(t, c, replica.Config{MaxLagBytes: 1, MaxLag: time.Hour, CheckInterval: time.Hour})
		s.waitReplayed(t, c)
		c.replicas[1].PauseReplay(t)
		defer c.replicas[1].ResumeReplay(t)
		require.NoError(t, s.store.Put(ctx, "bytes", "v"))
		testenv.WaitFor(t, 5*time.Second, "the primary to flush the write", func() bool {
			s.balancer.Check(ctx)
			return s.replicas[1].Status().Problem == replica.ProblemLagging
		})
		assert.Greater(t, s.replicas[1].Status().LagBytes, int64(1))
	})

	t.Run("a server that is not a standby gets no reads", func(t *testing.T) {
		s := newStack(t, c, lenient, c.primaryURL)
		require.NoError(t, s.store.Put(ctx, "k", "v"))
		st := s.replicas[0].Status()
		assert.False(t, st.Serving)
		assert.Equal(t, replica.ProblemNotStandby, st.Problem)
		v, src := s.read(t, "k")
		assert.Equal(t, "v", v)
		assert.Empty(t, src.Replica)
	})

	t.Run("no replica serving: reads from the primary", func(t *testing.T) {
		s := newStack(t, c, lenient, []string{}...)
		require.NoError(t, s.store.Put(ctx, "k", "v"))
		v, src := s.read(t, "k")
		assert.Equal(t, "v", v)
		assert.Empty(t, src.Replica)
		_, err := s.store.Read(ctx, "missing")
		assert.ErrorIs(t, err, record.ErrNotFound)
	})

	// A replica restart resumes streaming from its slot: nothing is cloned again, and what
	// the primary wrote meanwhile arrives.
	t.Run("a restarted replica resumes streaming from its slot", func(t *testing.T) {
		r := c.replicas[0]
		testenv.Exec(t, c.primaryURL, "INSERT INTO records (key, value) VALUES ('before', 'v')")
		r.Stop(t)
		testenv.Exec(t, c.primaryURL, "INSERT INTO records (key, value) VALUES ('while-down', 'v')")
		var active bool
		testenv.WaitFor(t, 10*time.Second, "the slot to wait for the stopped replica", func() bool {
			return testenv.QueryRow(c.primary.URL("postgres"), "SELECT active FROM pg_replication_slots WHERE slot_name = 'replica_1'", nil, &active) == nil && !active
		})
		r.Start(t)
		testenv.WaitFor(t, 10*time.Second, "the write made while the replica was down", func() bool {
			var n int
			return testenv.QueryRow(c.replicaURLs[0], "SELECT count(*) FROM records WHERE key IN ('before', 'while-down')", nil, &n) == nil && n == 2
		})
		testenv.WaitFor(t, 10*time.Second, "the replica to stream from its slot again", func() bool {
			return testenv.QueryRow(c.primary.URL("postgres"), "SELECT active FROM pg_replication_slots WHERE slot_name = 'replica_1'", nil, &active) == nil && active
		})
		var users string
		require.NoError(t, testenv.QueryRow(c.primary.URL("postgres"), "SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_replication", nil, &users))
		assert.Equal(t, testenv.ReplicationRole, users, "replicas stream as the replication role, not a superuser")
	})
}
