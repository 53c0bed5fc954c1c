package ratelimit

import (
	"context"
	"sync"
)

// maxInFlight is how many checks of one identity may be in flight at once; requests of
// that identity arriving while they are wait and go together in the next one.
const maxInFlight = 2

// coalescer turns concurrent checks of one identity into few round trips to Redis, like a
// database's group commit: a check starts at once while fewer than maxInFlight of its
// identity are in flight; otherwise it joins the identity's queue, and the check that
// finishes next sends the whole queue as one (one AllowAtMost for n requests). A lone
// request therefore costs exactly one round trip, and a hot identity under heavy
// concurrency costs one round trip per batch instead of one per request, with the count
// still exact and atomic in Redis.
type coalescer struct {
	check func(identity string, n int) ([]Decision, error)

	mu     sync.Mutex
	queues map[string]*queue // identities with a check in flight
}

type queue struct {
	inFlight int
	waiting  []chan outcome
}

type outcome struct {
	d   Decision
	err error
}

func (c *coalescer) allow(ctx context.Context, identity string) (Decision, error) {
	ch := make(chan outcome, 1) // buffered: the sender never blocks on a caller that left
	c.mu.Lock()
	q := c.queues[identity]
	if q == nil {
		q = &queue{}
		c.queues[identity] = q
	}
	if q.inFlight < maxInFlight {
		q.inFlight++
		c.mu.Unlock()
		c.send(identity, []chan outcome{ch})
	} else {
		q.waiting = append(q.waiting, ch)
		c.mu.Unlock()
	}
	select {
	case o := <-ch:
		return o.d, o.err
	case <-ctx.Done():
		return Decision{}, ctx.Err()
	}
}

// send checks batch, answers it, and hands what queued meanwhile to a new goroutine (so
// that the caller that sent this batch can go on with its request).
func (c *coalescer) send(identity string, batch []chan outcome) {
	ds, err := c.check(identity, len(batch))
	for i, ch := range batch {
		if err != nil {
			ch <- outcome{err: err}
		} else {
			ch <- outcome{d: ds[i]}
		}
	}
	c.mu.Lock()
	q := c.queues[identity]
	next := q.waiting
	q.waiting = nil
	if len(next) == 0 {
		q.inFlight--
		if q.inFlight == 0 {
			delete(c.queues, identity)
		}
	}
	c.mu.Unlock()
	if len(next) > 0 {
		go c.send(identity, next)
	}
}
