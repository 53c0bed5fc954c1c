// Package replica reads from PostgreSQL streaming replicas and writes to their primary:
//
//   - Balancer spreads reads round-robin over the replicas that qualify: reachable, in
//     recovery (a hot standby, not a promoted copy) and no further behind the primary than
//     a configured bound, in bytes and in seconds. A background loop checks every replica
//     and measures its replay lag; a replica that fails a read is left out at once, and
//     comes back when a check finds it well again.
//   - Store is the record.Store over a primary and a Balancer, with read-your-writes: it
//     remembers the WAL position of each write it acknowledged (Tracker) and answers a read
//     of that key from a replica only if the replica has replayed that far, checked in the
//     same round trip as the read; otherwise, and whenever no replica qualifies, from the
//     primary.
//
// Lag in bytes is the primary's flushed WAL position minus the replica's replay position.
// Lag in seconds is measured without trusting either server's clock or commit timestamps:
// each check samples the primary's flushed position, and a replica is as far behind as the
// oldest sample it has not replayed yet (zero once it has replayed the newest). The
// resolution is the check interval.
package replica

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/pgstore"
)

// Config bounds the replicas' lag and paces the health checks. The read-your-writes
// tracker's bounds live here too, because they must outlast the lag bound.
type Config struct {
	MaxLagBytes   int64         `env:"REPLICA_MAX_LAG_BYTES" default:"16777216"` // a replica further behind the primary's WAL than this many bytes (16 MiB) gets no reads
	MaxLag        time.Duration `env:"REPLICA_MAX_LAG" default:"5s"`             // ... or further behind than this
	CheckInterval time.Duration `env:"REPLICA_CHECK_INTERVAL" default:"500ms"`   // how often each replica's health and lag are measured
	TrackWrites   int           `env:"READ_YOUR_WRITES_MAX" default:"100000"`    // acknowledged writes remembered for read-your-writes
	TrackTTL      time.Duration `env:"READ_YOUR_WRITES_TTL" default:"60s"`       // ... each for at most this long (keep it above REPLICA_MAX_LAG)
}

// Why a replica gets no reads; fixed words, safe to show to clients.
const (
	ProblemUnchecked   = "not checked yet"
	ProblemUnreachable = "unreachable"
	ProblemNotStandby  = "not a standby"
	ProblemLagging     = "lagging"
)

// Status is what the last check found out about one replica.
type Status struct {
	Name         string    `json:"name"`
	Healthy      bool      `json:"healthy"` // answered the last check as a hot standby
	Serving      bool      `json:"serving"` // healthy and within the lag bound: gets reads
	Problem      string    `json:"problem,omitempty"`
	ReplayLSN    LSN       `json:"replay_lsn"`
	LagBytes     int64     `json:"lag_bytes"`
	LagSeconds   float64   `json:"lag_seconds"`
	ReplayPaused bool      `json:"replay_paused"`
	ReadsServed  int64     `json:"reads_served"`
	CheckedAt    time.Time `json:"checked_at"`
}

// PrimaryStatus is what the last check found out about the primary.
type PrimaryStatus struct {
	Healthy   bool      `json:"healthy"`
	FlushLSN  LSN       `json:"flush_lsn"` // WAL the primary has flushed, so replicas can have it
	CheckedAt time.Time `json:"checked_at"`
}

// Replica is one read replica.
type Replica struct {
	name   string
	conns  pgstore.Conns
	status atomic.Pointer[Status]
	reads  atomic.Int64
}

// NewReplica names a replica reached through conns (e.g. a *pgstore.Pool).
func NewReplica(name string, conns pgstore.Conns) *Replica {
	r := &Replica{name: name, conns: conns}
	r.status.Store(&Status{Name: name, Problem: ProblemUnchecked})
	return r
}

// Name is the replica's name.
func (r *Replica) Name() string { return r.name }

// Status is the replica's last known state.
func (r *Replica) Status() Status {
	st := *r.status.Load()
	st.ReadsServed = r.reads.Load()
	return st
}

// Balancer picks the replica for each read and keeps the replicas' states current.
type Balancer struct {
	primary   pgstore.Conns
	replicas  []*Replica
	cfg       Config
	logger    *slog.Logger
	next      atomic.Uint64
	primarySt atomic.Pointer[PrimaryStatus]

	mu      sync.Mutex // one check round at a time; guards history
	history []sample   // the primary's flushed position, first time seen, oldest first

	cancel context.CancelFunc
	done   chan struct{}
}

type sample struct {
	lsn LSN
	at  time.Time
}

// NewBalancer checks primary and replicas once, then keeps checking them every
// cfg.CheckInterval until Close.
func NewBalancer(ctx context.Context, primary pgstore.Conns, replicas []*Replica, cfg Config, logger *slog.Logger) *Balancer {
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 500 * time.Millisecond
	}
	b := &Balancer{primary: primary, replicas: replicas, cfg: cfg, logger: logger, done: make(chan struct{})}
	b.primarySt.Store(&PrimaryStatus{})
	b.Check(ctx)
	loopCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.loop(loopCtx)
	return b
}

// Close stops the background checks.
func (b *Balancer) Close() {
	b.cancel()
	<-b.done
}

func (b *Balancer) loop(ctx context.Context) {
	defer close(b.done)
	t := time.NewTicker(b.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.Check(ctx)
		}
	}
}

// Pick returns the next serving replica in round-robin order, or nil when none serves.
func (b *Balancer) Pick() *Replica {
	n := uint64(len(b.replicas))
	start := b.next.Add(1)
	for i := range n {
		r := b.replicas[(start+i)%n]
		if r.status.Load().Serving {
			return r
		}
	}
	return nil
}

// Replicas lists the replicas, in configuration order.
func (b *Balancer) Replicas() []*Replica { return b.replicas }

// Primary is the primary's last known state.
func (b *Balancer) Primary() PrimaryStatus { return *b.primarySt.Load() }

// Config is the configuration the balancer runs with.
func (b *Balancer) Config() Config { return b.cfg }

// MarkDown takes r out of rotation until a check finds it well: a read on it failed as if
// it were unreachable, and the next read should not pay for that again.
func (b *Balancer) MarkDown(r *Replica) {
	st := *r.status.Load()
	if !st.Healthy && st.Problem == ProblemUnreachable {
		return
	}
	st.Healthy, st.Serving, st.Problem = false, false, ProblemUnreachable
	r.status.Store(&st)
	b.logger.Warn("replica left out of rotation", "replica", r.name, "reason", "read failed")
}

const (
	primaryCheckSQL = `SELECT pg_current_wal_flush_lsn()::text`
	replicaCheckSQL = `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
	CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END`
)

// Check measures the primary's WAL position and every replica's state and lag, now.
func (b *Balancer) Check(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	flushed, err := queryLSN(ctx, b.primary, primaryCheckSQL)
	prev := b.primarySt.Load()
	if err != nil {
		if prev.Healthy || prev.CheckedAt.IsZero() {
			b.logger.Warn("primary check failed", "error", err)
		}
		b.primarySt.Store(&PrimaryStatus{FlushLSN: prev.FlushLSN, CheckedAt: now})
	} else {
		b.record(flushed, now)
		b.primarySt.Store(&PrimaryStatus{Healthy: true, FlushLSN: flushed, CheckedAt: now})
	}
	var wg sync.WaitGroup
	for _, r := range b.replicas {
		wg.Go(func() { b.checkReplica(ctx, r) })
	}
	wg.Wait()
}

// record adds the primary's flushed position to the history if it moved, and forgets
// samples older than the history needs: lag in seconds is only ever compared with MaxLag,
// so it need not be measured far beyond it.
func (b *Balancer) record(flushed LSN, now time.Time) {
	if n := len(b.history); n > 0 && flushed < b.history[n-1].lsn {
		b.history = b.history[:0] // a different primary (restored, failed over): start again
	}
	if n := len(b.history); n == 0 || flushed > b.history[n-1].lsn {
		b.history = append(b.history, sample{flushed, now})
	}
	horizon := 2*b.cfg.MaxLag + 10*b.cfg.CheckInterval
	drop := 0
	for drop < len(b.history)-1 && (now.Sub(b.history[drop].at) > horizon || len(b.history)-drop > 4096) {
		drop++
	}
	b.history = append(b.history[:0], b.history[drop:]...)
}

// lag is how far a replica that replayed up to replayed is behind the sampled primary.
func (b *Balancer) lag(replayed LSN, now time.Time) (bytes int64, seconds float64) {
	h := b.history
	if len(h) == 0 || replayed >= h[len(h)-1].lsn {
		return 0, 0
	}
	oldest := sort.Search(len(h), func(i int) bool { return h[i].lsn > replayed })
	return int64(h[len(h)-1].lsn - replayed), now.Sub(h[oldest].at).Seconds()
}

func (b *Balancer) checkReplica(ctx context.Context, r *Replica) {
	var (
		inRecovery, paused bool
		replay             *string
	)
	err := r.conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, replicaCheckSQL).Scan(&inRecovery, &replay, &paused)
	})
	now := time.Now()
	st := Status{Name: r.name, CheckedAt: now}
	switch {
	case err != nil:
		st.Problem = ProblemUnreachable
	case !inRecovery || replay == nil:
		st.Problem = ProblemNotStandby
	default:
		lsn, perr := ParseLSN(*replay)
		if perr != nil {
			err, st.Problem = perr, ProblemNotStandby
			break
		}
		st.Healthy, st.ReplayLSN, st.ReplayPaused = true, lsn, paused
		st.LagBytes, st.LagSeconds = b.lag(lsn, now)
		if st.LagBytes > b.cfg.MaxLagBytes || st.LagSeconds > b.cfg.MaxLag.Seconds() {
			st.Problem = ProblemLagging
		} else {
			st.Serving = true
		}
	}
	prev := r.status.Swap(&st)
	if prev.Serving != st.Serving || prev.Problem != st.Problem {
		b.logger.Info("replica state changed", "replica", r.name, "serving", st.Serving, "problem", st.Problem,
			"lag_bytes", st.LagBytes, "lag_seconds", st.LagSeconds, "error", err)
	}
}

func queryLSN(ctx context.Context, conns pgstore.Conns, sql string) (LSN, error) {
	var text *string
	err := conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error { return c.QueryRow(ctx, sql).Scan(&text) })
	if err != nil {
		return 0, err
	}
	if text == nil {
		return 0, fmt.Errorf("%s: null position", sql)
	}
	return ParseLSN(*text)
}
