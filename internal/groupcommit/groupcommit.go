// Package groupcommit gathers concurrent calls into batches, as a database's group commit
// does: a call waits for a free flusher; the flusher takes it and every call already
// waiting (up to a bound) and applies them together in one round trip. A lone call waits
// for nobody, and under load the calls that arrive while a batch is in flight go together
// in the next one.
//
// L6's write queue (one enqueue script per batch) and L8's document writes (one insertMany
// per batch) use it.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is Do's answer once the batcher is closed.
var ErrClosed = errors.New("closed")

// Result is the outcome of one call of a batch.
type Result[Out any] struct {
	Out Out
	Err error
}

// Batcher applies calls In → Out in batches.
type Batcher[In, Out any] struct {
	apply    func(ctx context.Context, batch []In) []Result[Out]
	maxBatch int

	calls     chan *call[In, Out] // unbuffered: a send succeeds only when a flusher takes it
	closed    chan struct{}
	closeOnce sync.Once
	flushers  sync.WaitGroup
}

type call[In, Out any] struct {
	ctx  context.Context
	in   In
	done chan Result[Out] // buffered: a flusher never waits for the caller
}

// New starts flushers goroutines, each gathering up to maxBatch waiting calls and passing
// their inputs to apply, which must return one result per input, in order. A batch holds
// several callers' calls, so apply's context carries none of their cancellations, but it
// ends at the earliest of their deadlines: a caller with a deadline never waits past it.
// Close the batcher to stop its flushers.
func New[In, Out any](flushers, maxBatch int, apply func(ctx context.Context, batch []In) []Result[Out]) *Batcher[In, Out] {
	b := &Batcher[In, Out]{
		apply: apply, maxBatch: max(maxBatch, 1),
		calls: make(chan *call[In, Out]), closed: make(chan struct{}),
	}
	for range max(flushers, 1) {
		b.flushers.Go(b.flush)
	}
	return b
}

// Do has in applied in a batch and returns its result. It fails with ctx's error if ctx
// ends before a flusher took the call (or took it after ctx ended: such a call is not
// applied), and with ErrClosed once the batcher is closed. Once a flusher has begun
// applying the call, Do waits for its result even if ctx ends, so that its answer is
// exact.
func (b *Batcher[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	c := &call[In, Out]{ctx: ctx, in: in, done: make(chan Result[Out], 1)}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		var zero Out
		return zero, ctx.Err()
	case <-b.closed:
		var zero Out
		return zero, ErrClosed
	}
	r := <-c.done
	return r.Out, r.Err
}

// Close stops accepting calls; calls already taken get their result first.
func (b *Batcher[In, Out]) Close() {
	b.closeOnce.Do(func() { close(b.closed) })
	b.flushers.Wait()
}

// flush takes waiting calls, as many as are there (up to maxBatch), and applies them
// together, until the batcher is closed.
func (b *Batcher[In, Out]) flush() {
	batch := make([]*call[In, Out], 0, b.maxBatch)
	for {
		select {
		case c := <-b.calls:
			batch = append(batch[:0], c)
		case <-b.closed:
			return
		}
	gather:
		for len(batch) < b.maxBatch {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		b.run(batch)
	}
}

// run applies the calls of batch whose callers still wait, until the earliest of their
// deadlines, and answers every call.
func (b *Batcher[In, Out]) run(batch []*call[In, Out]) {
	live := batch[:0:0]
	ins := make([]In, 0, len(batch))
	var deadline time.Time
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil { // its caller gave up before the batch began
			c.done <- Result[Out]{Err: err}
			continue
		}
		live = append(live, c)
		ins = append(ins, c.in)
		if d, ok := c.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	results := b.apply(ctx, ins)
	for i, c := range live {
		if i < len(results) {
			c.done <- results[i]
		} else {
			c.done <- Result[Out]{Err: errors.New("groupcommit: apply returned too few results")}
		}
	}
}
