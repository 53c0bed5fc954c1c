// Package breaker is the one circuit breaker (sony/gobreaker) of every layer: a Guard around
// any dependency (a store's queries themselves, not only the pool checkout; every Redis
// command; a region), so that a dependency that fails or hangs is cut off after a few
// consecutive failures and its callers get an immediate error instead of one timeout each.
// Store puts a Guard around a record.Store.
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

// Guard is one breaker around one dependency, whatever the calls are: a store's queries
// (Store), every command of a Redis client (redisclient), a region's database. It is how
// a layer stops waiting on a dependency that hangs: after Threshold consecutive failures
// it refuses calls at once, and where the layer can do without the dependency (a cache, a
// replica, a remote region) it skips it; where it cannot, the refusal is a fast 503.
type Guard struct {
	name      string
	isFailure func(error) bool
	cb        *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// NewGuard returns a closed Guard called name. isFailure says which errors count against
// the dependency (nil: record.IsUnavailable); a cancelled context never counts.
func NewGuard(name string, s Settings, isFailure func(error) bool) (*Guard, error) {
	if s.Threshold < 1 {
		return nil, fmt.Errorf("circuit breaker %s: threshold must be at least 1 (got %d)", name, s.Threshold)
	}
	if s.Timeout <= 0 {
		return nil, fmt.Errorf("circuit breaker %s: timeout must be positive (got %s)", name, s.Timeout)
	}
	if isFailure == nil {
		isFailure = record.IsUnavailable
	}
	threshold := s.Threshold
	st := gobreaker.Settings{
		Name:         name,
		MaxRequests:  1, // one probe in half-open
		Timeout:      s.Timeout,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsSuccessful: func(err error) bool { return err == nil || !isFailure(err) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
	}
	if s.OnStateChange != nil {
		st.OnStateChange = func(name string, from, to gobreaker.State) {
			s.OnStateChange(name, stateOf(from), stateOf(to))
		}
	}
	return &Guard{name: name, isFailure: isFailure, cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](st)}, nil
}

// Name is the guard's name.
func (g *Guard) Name() string { return g.name }

// State is the guard's state now (an open guard whose timeout has passed reports
// half-open).
func (g *Guard) State() State { return stateOf(g.cb.State()) }

// Allow asks to make one call. If the guard refuses, err is a record.UnavailableError of
// this guard wrapping ErrOpen; otherwise the caller makes the call and passes its error to
// done, exactly once.
func (g *Guard) Allow() (done func(err error), err error) {
	done, err = g.cb.Allow()
	if err != nil {
		return nil, g.refused(err)
	}
	return done, nil
}

// Do runs fn through the guard.
func (g *Guard) Do(fn func() error) error {
	done, err := g.Allow()
	if err != nil {
		return err
	}
	err = fn()
	done(err)
	return err
}

// refused turns gobreaker's refusals into ErrOpen, as an Unavailable error of this
// dependency; other errors pass unchanged.
func (g *Guard) refused(err error) error {
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return record.Unavailable(g.name, fmt.Errorf("%w (%s)", ErrOpen, err))
	}
	return err
}

// Pinger is a store that can be health-checked (pgstore.Store is one).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Store is a record.Store (and Pinger) whose calls go through a Guard.
type Store struct {
	next  record.Store
	guard *Guard
}

var _ record.Store = (*Store)(nil)

// New returns next behind a breaker called name (e.g. "shard1"; it names the backend in
// errors, logs and metrics).
func New(name string, next record.Store, s Settings) (*Store, error) {
	g, err := NewGuard(name, s, nil)
	if err != nil {
		return nil, err
	}
	return &Store{next: next, guard: g}, nil
}

// Name is the breaker's name.
func (s *Store) Name() string { return s.guard.Name() }

// State is the breaker's state now (an open breaker whose timeout has passed reports
// half-open).
func (s *Store) State() State { return s.guard.State() }

// Get reads through the breaker.
func (s *Store) Get(ctx context.Context, key string) (rec record.Record, err error) {
	err = s.guard.Do(func() error {
		rec, err = s.next.Get(ctx, key)
		return err
	})
	return rec, err
}

// Put writes through the breaker.
func (s *Store) Put(ctx context.Context, key, value string) error {
	return s.guard.Do(func() error { return s.next.Put(ctx, key, value) })
}

// Ping health-checks the backend through the breaker, so that an open breaker answers at
// once and, once its timeout has passed, a health check can be the probe that closes it.
// A store that cannot be pinged is healthy unless the breaker is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.guard.Do(func() error {
		if p, ok := s.next.(Pinger); ok {
			return p.Ping(ctx)
		}
		return nil
	})
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
