package breaker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/testenv"
)

// fakeStore answers with whatever its function fields say and counts the calls that reached it.
type fakeStore struct {
	get   func(ctx context.Context, key string) (record.Record, error)
	put   func(ctx context.Context, key, value string) error
	ping  func(ctx context.Context) error
	calls atomic.Int64
}

var _ record.Store = (*fakeStore)(nil)

func (f *fakeStore) Get(ctx context.Context, key string) (record.Record, error) {
	f.calls.Add(1)
	return f.get(ctx, key)
}

func (f *fakeStore) Put(ctx context.Context, key, value string) error {
	f.calls.Add(1)
	return f.put(ctx, key, value)
}

func (f *fakeStore) Ping(ctx context.Context) error {
	f.calls.Add(1)
	return f.ping(ctx)
}

var errDown = record.Unavailable("Database", errors.New("connection refused"))

// switchable is a fake store that is down while down is set.
func switchable(down *atomic.Bool) *fakeStore {
	fail := func() error {
		if down.Load() {
			return errDown
		}
		return nil
	}
	return &fakeStore{
		get: func(context.Context, string) (record.Record, error) {
			if err := fail(); err != nil {
				return record.Record{}, err
			}
			return record.Record{}, record.ErrNotFound
		},
		put:  func(context.Context, string, string) error { return fail() },
		ping: func(context.Context) error { return fail() },
	}
}

func newBreaker(t *testing.T, next record.Store, s breaker.Settings) *breaker.Store {
	t.Helper()
	b, err := breaker.New("shard1", next, s)
	require.NoError(t, err)
	return b
}

func TestOpensAfterThresholdConsecutiveFailures(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := switchable(&down)
	b := newBreaker(t, f, breaker.Settings{Threshold: 3, Timeout: time.Hour})
	ctx := context.Background()

	for i := range 3 {
		assert.Equal(t, breaker.Closed, b.State(), "before failure %d", i+1)
		err := b.Put(ctx, "k", "v")
		assert.ErrorIs(t, err, errDown)
		assert.NotErrorIs(t, err, breaker.ErrOpen)
	}
	assert.Equal(t, breaker.Open, b.State())

	before := f.calls.Load()
	_, err := b.Get(ctx, "k")
	assert.ErrorIs(t, err, breaker.ErrOpen)
	assert.True(t, record.IsUnavailable(err), "an open breaker is a 503")
	var u *record.UnavailableError
	require.ErrorAs(t, err, &u)
	assert.Equal(t, "shard1", u.Backend)
	assert.ErrorIs(t, b.Ping(ctx), breaker.ErrOpen)
	assert.Equal(t, before, f.calls.Load(), "an open breaker does not call the store")
}

func TestOnlyUnavailabilityCounts(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		trips bool
	}{
		{"not found is an answer", record.ErrNotFound, false},
		{"a constraint error is an answer", errors.New("value too long"), false},
		{"a cancelled caller is no verdict", context.Canceled, false},
		{"a cancelled caller wrapped as unavailable is no verdict", record.Unavailable("Database", context.Canceled), false},
		{"unavailable", errDown, true},
		{"a timeout", record.Unavailable("Database", context.DeadlineExceeded), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeStore{get: func(context.Context, string) (record.Record, error) { return record.Record{}, tc.err }}
			b := newBreaker(t, f, breaker.Settings{Threshold: 2, Timeout: time.Hour})
			for range 5 {
				_, err := b.Get(context.Background(), "k")
				if !tc.trips {
					assert.ErrorIs(t, err, tc.err)
				}
			}
			want := breaker.Closed
			if tc.trips {
				want = breaker.Open
			}
			assert.Equal(t, want, b.State())
		})
	}
}

func TestSuccessResetsTheCount(t *testing.T) {
	var down atomic.Bool
	b := newBreaker(t, switchable(&down), breaker.Settings{Threshold: 3, Timeout: time.Hour})
	ctx := context.Background()
	for range 10 { // two failures, one success, over and over: never three in a row
		down.Store(true)
		_ = b.Put(ctx, "k", "v")
		_ = b.Put(ctx, "k", "v")
		down.Store(false)
		require.NoError(t, b.Put(ctx, "k", "v"))
	}
	assert.Equal(t, breaker.Closed, b.State())
}

func TestHalfOpenProbe(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var (
		mu          sync.Mutex
		transitions []string
	)
	f := switchable(&down)
	b := newBreaker(t, f, breaker.Settings{Threshold: 1, Timeout: 100 * time.Millisecond,
		OnStateChange: func(name string, from, to breaker.State) {
			mu.Lock()
			defer mu.Unlock()
			transitions = append(transitions, name+":"+string(from)+"→"+string(to))
		}})
	ctx := context.Background()
	// The last transition, not State(): State() itself moves an open breaker whose 100 ms
	// are up to half-open, which a loaded machine may reach before the check.
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return transitions[len(transitions)-1]
	}

	require.ErrorIs(t, b.Put(ctx, "k", "v"), errDown)
	require.Equal(t, "shard1:closed→open", last())

	// A failed probe opens it again.
	testenv.WaitFor(t, 5*time.Second, "half-open", func() bool { return b.State() == breaker.HalfOpen })
	assert.ErrorIs(t, b.Put(ctx, "k", "v"), errDown)
	assert.Equal(t, "shard1:half_open→open", last())

	// A successful probe closes it.
	down.Store(false)
	testenv.WaitFor(t, 5*time.Second, "half-open again", func() bool { return b.State() == breaker.HalfOpen })
	require.NoError(t, b.Ping(ctx))
	assert.Equal(t, breaker.Closed, b.State())
	_, err := b.Get(ctx, "k")
	assert.ErrorIs(t, err, record.ErrNotFound)

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{
		"shard1:closed→open", "shard1:open→half_open", "shard1:half_open→open",
		"shard1:open→half_open", "shard1:half_open→closed",
	}, transitions)
}

// While the probe is in flight, every other call is refused at once.
func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	release, entered := make(chan struct{}), make(chan struct{})
	f := switchable(&down)
	f.get = func(context.Context, string) (record.Record, error) {
		if down.Load() {
			return record.Record{}, errDown
		}
		close(entered)
		<-release
		return record.Record{}, record.ErrNotFound
	}
	// Open for 1 s: long enough to see it open right after it trips, on a loaded machine.
	b := newBreaker(t, f, breaker.Settings{Threshold: 1, Timeout: time.Second})
	ctx := context.Background()
	_, _ = b.Get(ctx, "k")
	require.Equal(t, breaker.Open, b.State())
	down.Store(false)
	testenv.WaitFor(t, 5*time.Second, "half-open", func() bool { return b.State() == breaker.HalfOpen })

	probe := make(chan error, 1)
	go func() {
		_, err := b.Get(ctx, "probe")
		probe <- err
	}()
	<-entered
	_, err := b.Get(ctx, "other")
	assert.ErrorIs(t, err, breaker.ErrOpen, "a second call during the probe is refused")
	close(release)
	assert.ErrorIs(t, <-probe, record.ErrNotFound)
	assert.Equal(t, breaker.Closed, b.State())
}

func TestStoreWithoutPing(t *testing.T) {
	next := struct{ record.Store }{&fakeStore{}} // hides Ping
	b := newBreaker(t, next, breaker.Settings{Threshold: 1, Timeout: time.Hour})
	assert.NoError(t, b.Ping(context.Background()))
}

func TestNewRejectsBadSettings(t *testing.T) {
	_, err := breaker.New("x", &fakeStore{}, breaker.Settings{Threshold: 0, Timeout: time.Second})
	assert.Error(t, err)
	_, err = breaker.New("x", &fakeStore{}, breaker.Settings{Threshold: 1})
	assert.Error(t, err)
}

func TestStateValues(t *testing.T) {
	assert.Equal(t, 0.0, breaker.Closed.Value())
	assert.Equal(t, 1.0, breaker.HalfOpen.Value())
	assert.Equal(t, 2.0, breaker.Open.Value())
}
