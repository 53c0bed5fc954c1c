package groupcommit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/groupcommit"
)

// Calls that arrive while a batch is being applied go together in the next batch, each
// gets its own result, and a caller that gave up while waiting is not applied.
func TestCallsWaitingForABatchGoTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		var batches [][]int
		b := groupcommit.New(1, 8, func(_ context.Context, in []int) []groupcommit.Result[string] {
			mu.Lock()
			batches = append(batches, append([]int(nil), in...))
			first := len(batches) == 1
			mu.Unlock()
			if first {
				<-release
			}
			out := make([]groupcommit.Result[string], len(in))
			for i, v := range in {
				out[i].Out = fmt.Sprint("r", v)
			}
			return out
		})
		defer b.Close()

		results := make([]string, 12)
		errs := make([]error, 12)
		var wg sync.WaitGroup
		do := func(ctx context.Context, i int) {
			wg.Go(func() { results[i], errs[i] = b.Do(ctx, i) })
		}
		do(context.Background(), 0)
		synctest.Wait() // call 0 is being applied, alone
		gaveUp, cancel := context.WithCancel(context.Background())
		do(gaveUp, 11)
		for i := 1; i <= 10; i++ {
			do(context.Background(), i)
		}
		synctest.Wait() // the others wait for the flusher
		cancel()
		synctest.Wait()
		close(release)
		wg.Wait()

		require.ErrorIs(t, errs[11], context.Canceled)
		for i := 0; i <= 10; i++ {
			require.NoError(t, errs[i])
			assert.Equal(t, fmt.Sprint("r", i), results[i])
		}
		require.Len(t, batches, 3, "%v", batches)
		assert.Equal(t, []int{0}, batches[0])
		assert.Len(t, batches[1], 8, "a batch holds at most maxBatch calls")
		assert.Len(t, batches[2], 2)
		for _, batch := range batches {
			assert.NotContains(t, batch, 11, "the call whose caller gave up")
		}
	})
}

func TestDoAfterClose(t *testing.T) {
	b := groupcommit.New(2, 4, func(_ context.Context, in []int) []groupcommit.Result[int] {
		return make([]groupcommit.Result[int], len(in))
	})
	_, err := b.Do(context.Background(), 1)
	require.NoError(t, err)
	b.Close()
	_, err = b.Do(context.Background(), 2)
	require.ErrorIs(t, err, groupcommit.ErrClosed)
}

// An apply that returns fewer results than inputs fails the calls left without one.
func TestTooFewResults(t *testing.T) {
	b := groupcommit.New(1, 4, func(_ context.Context, in []int) []groupcommit.Result[int] { return nil })
	defer b.Close()
	_, err := b.Do(context.Background(), 1)
	require.Error(t, err)
}

// apply's context ends at the earliest deadline of the batch's callers, so that a batch
// never keeps a caller past its own deadline; a batch of callers without one has none.
func TestBatchEndsAtTheEarliestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		deadlines := make(chan time.Time, 2)
		b := groupcommit.New(1, 8, func(ctx context.Context, in []int) []groupcommit.Result[int] {
			d, _ := ctx.Deadline()
			deadlines <- d
			if in[0] == 0 {
				<-release // holds the flusher while the next batch gathers
			}
			return make([]groupcommit.Result[int], len(in))
		})
		defer b.Close()

		var wg sync.WaitGroup
		wg.Go(func() { _, _ = b.Do(context.Background(), 0) })
		synctest.Wait()
		assert.True(t, (<-deadlines).IsZero(), "no caller has a deadline")

		start := time.Now()
		for i, d := range []time.Duration{3 * time.Second, time.Second, 2 * time.Second} {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			wg.Go(func() { _, _ = b.Do(ctx, i+1) })
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		assert.Equal(t, start.Add(time.Second), <-deadlines)
	})
}
