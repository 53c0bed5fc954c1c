package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dblayers/dblayers/internal/record"
)

// shipper delivers one source region's outbox entries for one destination: read a batch
// (local to the source), apply it at the destination (one call across regions), delete it
// from the outbox. It runs until its context ends.
//
// Delivery is at least once — a crash between apply and delete ships the batch again —
// and that is harmless, because applying is conditional on the version and so idempotent.
// Nothing is lost: an entry leaves the outbox only after its destination committed it.
// Entries may be applied out of order (a retry after a partial failure, another process's
// shipper on the same pair); the version order makes that harmless too.
type shipper struct {
	from, to *Region
	cfg      Config
	hop      func(ctx context.Context, from, to *Region) error
	logger   *slog.Logger

	wake  chan struct{} // new entries were written: ship now if idle
	retry chan struct{} // a region came back: retry now even if backing off

	delivered atomic.Int64 // entries applied (and acknowledged) by this process
	failures  atomic.Int64 // consecutive failed attempts

	mu        sync.Mutex
	lastErr   string    // client-safe description of the last failure; "" after a success
	lastShip  time.Time // last successful delivery
	batchSize int       // halved after each failure (a batch too big to apply in time), restored on success
}

func newShipper(from, to *Region, cfg Config, hop func(context.Context, *Region, *Region) error, logger *slog.Logger) *shipper {
	return &shipper{
		from: from, to: to, cfg: cfg, hop: hop,
		logger: logger.With("from", from.key, "to", to.key),
		wake:   make(chan struct{}, 1), retry: make(chan struct{}, 1),
		batchSize: cfg.BatchSize,
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (s *shipper) run(ctx context.Context) {
	for {
		n, err := s.step(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !s.wait(ctx, s.backoff(s.fail(err)), false) {
				return
			}
			continue
		}
		s.succeeded(n)
		if n > 0 {
			continue // there may be more
		}
		if !s.wait(ctx, s.cfg.PollInterval, true) {
			return
		}
	}
}

// wait sleeps for d, or until a retry signal (or, when idle, a wake signal) comes; false
// when ctx ended.
func (s *shipper) wait(ctx context.Context, d time.Duration, idle bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	wake := s.wake
	if !idle {
		wake = nil // writes do not cut a backoff short: a region that is down is not hammered
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	case <-s.retry:
	}
	return true
}

// step ships one batch and returns its size. A region being skipped is not called: the
// entries wait in the outbox until the health check finds it back and cuts the backoff
// short.
func (s *shipper) step(ctx context.Context) (int, error) {
	for _, reg := range []*Region{s.from, s.to} {
		if err := reg.serving(); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	limit := s.batchSize
	s.mu.Unlock()
	batch, err := s.from.Pending(ctx, s.to.key, limit, s.cfg.BatchBytes)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	entries := make([]Entry, len(batch))
	ids := make([]int64, len(batch))
	for i, p := range batch {
		entries[i], ids[i] = p.Entry, p.ID
	}
	if err := s.hop(ctx, s.from, s.to); err != nil {
		return 0, err
	}
	if _, err := s.to.Apply(ctx, entries); err != nil {
		return 0, err
	}
	if err := s.from.Ack(ctx, ids); err != nil {
		return 0, err // applied but still queued: shipped again later, which changes nothing
	}
	return len(batch), nil
}

// succeeded records a step that failed nowhere: n entries delivered (0: nothing was due).
func (s *shipper) succeeded(n int) {
	s.delivered.Add(int64(n))
	s.failures.Store(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = ""
	if n > 0 {
		s.lastShip = time.Now()
		s.batchSize = min(s.cfg.BatchSize, 2*s.batchSize)
	}
}

// fail records a failed attempt and returns how many in a row there have been.
func (s *shipper) fail(err error) int64 {
	n := s.failures.Add(1)
	detail := "replication failed"
	var ue *record.UnavailableError
	if errors.As(err, &ue) {
		detail = ue.Backend + " unavailable"
	}
	s.mu.Lock()
	s.lastErr = detail
	s.batchSize = max(1, s.batchSize/2)
	s.mu.Unlock()
	level := slog.LevelWarn
	if ue == nil {
		level = slog.LevelError
	}
	if n == 1 || n%20 == 0 {
		s.logger.Log(context.Background(), level, "replication attempt failed", "attempt", n, "error", err)
	}
	return n
}

// backoff is the wait after the n-th failure in a row: RetryMin doubled per failure, at
// most RetryMax, with ±20% jitter so that shippers do not retry in lockstep.
func (s *shipper) backoff(n int64) time.Duration {
	d := s.cfg.RetryMin
	for i := int64(1); i < n && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// ShipperStats describe one pair's shipper in this process.
type ShipperStats struct {
	Delivered   int64   `json:"delivered"`            // entries delivered by this process since start
	Failures    int64   `json:"consecutive_failures"` // failed attempts since the last success
	LastError   *string `json:"last_error"`           // e.g. "EU-WEST database unavailable"; null after a success
	LastShipped *string `json:"last_delivery_at"`     // RFC 3339; null if none yet
}

func (s *shipper) stats() ShipperStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ShipperStats{Delivered: s.delivered.Load(), Failures: s.failures.Load()}
	if s.lastErr != "" {
		e := s.lastErr
		st.LastError = &e
	}
	if !s.lastShip.IsZero() {
		t := s.lastShip.UTC().Format(time.RFC3339Nano)
		st.LastShipped = &t
	}
	return st
}

func (s *shipper) String() string { return fmt.Sprintf("%s→%s", s.from.key, s.to.key) }
