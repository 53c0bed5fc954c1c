// Package breaker puts a circuit breaker (sony/gobreaker) around a record.Store: around the
// queries themselves, not only the pool checkout, so that a backend that fails or hangs is
// cut off after a few consecutive failures and its callers get an immediate error instead
// of one timeout each.
//
// Only "the backend cannot serve" counts as a failure (record.IsUnavailable: refused
// connections, timeouts, shutdown); a missing key, bad input or a constraint error means
// the backend answered, and counts as a success. A caller that went away (context
// cancelled) counts as neither.
//
// States: closed (calls pass; Threshold consecutive failures open it) → open (calls fail
// at once with ErrOpen for Timeout) → half-open (one probe call passes; its success closes
// the breaker, its failure opens it for another Timeout; other calls meanwhile fail at once).
package breaker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/dblayers/dblayers/internal/record"
)

// ErrOpen is the error of a call the breaker refused because it is open (or half-open
// with its probe already in flight). It is wrapped in a record.UnavailableError naming the
// breaker, so it maps to HTTP 503.
var ErrOpen = errors.New("circuit breaker open")

// State is a breaker's state as reported in /health, /stats and metrics.
type State string

// The states, named as in the original's health document.
const (
	Closed   State = "closed"
	Open     State = "open"
	HalfOpen State = "half_open"
)

// Value is the state as a number, for the circuit_breaker_state gauge: 0 closed,
// 1 half-open, 2 open.
func (s State) Value() float64 {
	switch s {
	case HalfOpen:
		return 1
	case Open:
		return 2
	}
	return 0
}

// Settings configure a breaker.
type Settings struct {
	// Threshold is how many consecutive failures open the breaker
	// (CIRCUIT_BREAKER_THRESHOLD, 5). At least 1.
	Threshold uint32
	// Timeout is how long the breaker stays open before it lets one probe through
	// (CIRCUIT_BREAKER_TIMEOUT, 30 s).
	Timeout time.Duration
	// OnStateChange, if set, is told of every transition. It runs under the breaker's
	// lock: it must not call the breaker.
	OnStateChange func(name string, from, to State)
}

// Pinger is a store that can be health-checked (pgstore.Store is one).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Store is a record.Store (and Pinger) whose calls go through a circuit breaker.
type Store struct {
	name string
	next record.Store
	cb   *gobreaker.CircuitBreaker[record.Record]
}

var _ record.Store = (*Store)(nil)

// New returns next behind a breaker called name (e.g. "shard1"; it names the backend in
// errors, logs and metrics).
func New(name string, next record.Store, s Settings) (*Store, error) {
	if s.Threshold < 1 {
		return nil, fmt.Errorf("circuit breaker %s: threshold must be at least 1 (got %d)", name, s.Threshold)
	}
	if s.Timeout <= 0 {
		return nil, fmt.Errorf("circuit breaker %s: timeout must be positive (got %s)", name, s.Timeout)
	}
	threshold := s.Threshold
	st := gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // one probe in half-open
		Timeout:     s.Timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsSuccessful: func(err error) bool {
			return err == nil || !record.IsUnavailable(err)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	}
	if s.OnStateChange != nil {
		st.OnStateChange = func(name string, from, to gobreaker.State) {
			s.OnStateChange(name, stateOf(from), stateOf(to))
		}
	}
	return &Store{name: name, next: next, cb: gobreaker.NewCircuitBreaker[record.Record](st)}, nil
}

// Name is the breaker's name.
func (s *Store) Name() string { return s.name }

// State is the breaker's state now (an open breaker whose timeout has passed reports
// half-open).
func (s *Store) State() State { return stateOf(s.cb.State()) }

// Get reads through the breaker.
func (s *Store) Get(ctx context.Context, key string) (record.Record, error) {
	rec, err := s.cb.Execute(func() (record.Record, error) { return s.next.Get(ctx, key) })
	return rec, s.refused(err)
}

// Put writes through the breaker.
func (s *Store) Put(ctx context.Context, key, value string) error {
	_, err := s.cb.Execute(func() (record.Record, error) { return record.Record{}, s.next.Put(ctx, key, value) })
	return s.refused(err)
}

// Ping health-checks the backend through the breaker, so that an open breaker answers at
// once and, once its timeout has passed, a health check can be the probe that closes it.
// A store that cannot be pinged is healthy unless the breaker is open.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.cb.Execute(func() (record.Record, error) {
		if p, ok := s.next.(Pinger); ok {
			return record.Record{}, p.Ping(ctx)
		}
		return record.Record{}, nil
	})
	return s.refused(err)
}

// refused turns gobreaker's refusals into ErrOpen, as an Unavailable error of this
// backend; other errors pass unchanged.
func (s *Store) refused(err error) error {
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return record.Unavailable(s.name, fmt.Errorf("%w (%s)", ErrOpen, err))
	}
	return err
}

func stateOf(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}
