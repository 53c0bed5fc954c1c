package writequeue_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/internal/writequeue"
)

// BenchmarkDrain measures how fast workers empty a backlog: b.N writes of distinct keys
// are queued with no worker running, then the workers start and the clock runs until the
// stream is empty. rows/s is the flush rate (docs/l6-write-cost.md):
//
//	go test -run '^$' -bench Drain -benchtime 200000x ./internal/writequeue/
func BenchmarkDrain(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			ctx := context.Background()
			e := newEnv(b, 0)
			var wg sync.WaitGroup
			const producers = 32
			for p := range producers {
				wg.Go(func() {
					for i := p; i < b.N; i += producers {
						_, err := e.queue.Enqueue(ctx, fmt.Sprint("key-", i), "a value of some thirty bytes..")
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			cfg := writequeue.WorkerConfig{BatchSize: 500, PollInterval: 100 * time.Millisecond, ClaimMinIdle: time.Minute, MaxAttempts: 3}

			b.ResetTimer()
			start := time.Now()
			for i := range workers {
				w := writequeue.NewWorker(e.rdb, stream, e.pool, cache.RecordKeys, cfg, fmt.Sprint("bench-", i), slog.New(slog.DiscardHandler))
				wctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { w.Run(wctx); close(done) }()
				b.Cleanup(func() { cancel(); <-done })
			}
			testenv.WaitFor(b, time.Minute, "the workers to drain the stream", func() bool {
				st, err := e.queue.Stats(ctx)
				require.NoError(b, err)
				return st.Length == 0
			})
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
		})
	}
}
