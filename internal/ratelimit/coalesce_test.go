package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

// gate is a fake check that records each call's n and blocks it until released.
type gate struct {
	mu      sync.Mutex
	calls   []int
	release chan struct{}
	err     error
}

func (g *gate) check(_ string, n int) ([]Decision, error) {
	g.mu.Lock()
	g.calls = append(g.calls, n)
	g.mu.Unlock()
	<-g.release
	if g.err != nil {
		return nil, g.err
	}
	out := make([]Decision, n)
	for i := range out {
		out[i] = Decision{Allowed: i%2 == 0, Remaining: i}
	}
	return out, nil
}

func (g *gate) n() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.calls...)
}

func (c *coalescer) waiting(identity string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if q := c.queues[identity]; q != nil {
		return len(q.waiting)
	}
	return 0
}

// Two checks of an identity run at once; the requests arriving meanwhile go together in
// one check; other identities are not held up; nothing is left behind.
func TestCoalescing(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	c := &coalescer{check: g.check, queues: map[string]*queue{}}
	results := make(chan Decision, 20)
	call := func(id string) {
		d, err := c.allow(context.Background(), id)
		assert.NoError(t, err)
		results <- d
	}
	go call("a")
	go call("a")
	testenv.WaitFor(t, 5*time.Second, "two checks in flight", func() bool { return len(g.n()) == 2 })
	for range 10 {
		go call("a")
	}
	testenv.WaitFor(t, 5*time.Second, "ten requests queued", func() bool { return c.waiting("a") == 10 })
	go call("b")
	testenv.WaitFor(t, 5*time.Second, "b checked at once", func() bool { return len(g.n()) == 3 })
	assert.Equal(t, []int{1, 1, 1}, g.n())

	close(g.release)
	allowed := 0
	for range 13 {
		if (<-results).Allowed {
			allowed++
		}
	}
	assert.Equal(t, []int{1, 1, 1, 10}, g.n(), "the ten queued requests were one check")
	assert.Equal(t, 3+5, allowed, "each request got its own decision from its batch")
	c.mu.Lock()
	assert.Empty(t, c.queues, "no identity left behind")
	c.mu.Unlock()
}

func TestCoalescingErrorsReachEveryWaiter(t *testing.T) {
	g := &gate{release: make(chan struct{}), err: errors.New("down")}
	c := &coalescer{check: g.check, queues: map[string]*queue{}}
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := c.allow(context.Background(), "a")
			errs <- err
		}()
	}
	testenv.WaitFor(t, 5*time.Second, "three queued", func() bool { return c.waiting("a") == 3 })
	close(g.release)
	for range 5 {
		assert.EqualError(t, <-errs, "down")
	}
}

// A queued caller whose context ends leaves at once; the batch it was in is still sent
// and answered (into a buffer nobody reads), and the queue is cleaned up. (A caller whose
// own check is in flight waits for it: that is bounded by Config.Timeout.)
func TestCoalescingCallerMayLeave(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	c := &coalescer{check: g.check, queues: map[string]*queue{}}
	for range 2 {
		go func() { _, _ = c.allow(context.Background(), "a") }()
	}
	testenv.WaitFor(t, 5*time.Second, "two checks in flight", func() bool { return len(g.n()) == 2 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.allow(ctx, "a")
		done <- err
	}()
	testenv.WaitFor(t, 5*time.Second, "the third queued", func() bool { return c.waiting("a") == 1 })
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	close(g.release)
	testenv.WaitFor(t, 5*time.Second, "the queue to be gone", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.queues) == 0
	})
	assert.Equal(t, []int{1, 1, 1}, g.n())
}
