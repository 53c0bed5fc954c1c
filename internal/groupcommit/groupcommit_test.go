package groupcommit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"

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
		b := groupcommit.New(1, 8, func(in []int) []groupcommit.Result[string] {
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
	b := groupcommit.New(2, 4, func(in []int) []groupcommit.Result[int] {
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
	b := groupcommit.New(1, 4, func(in []int) []groupcommit.Result[int] { return nil })
	defer b.Close()
	_, err := b.Do(context.Background(), 1)
	require.Error(t, err)
}
