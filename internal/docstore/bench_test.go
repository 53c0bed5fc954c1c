package docstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dblayers/dblayers/internal/testenv"
)

// BenchmarkPut measures Store.Put from 50 concurrent writers: b.N writes of new keys
// (batched inserts), then b.N overwrites of the same keys (upserts), in a database of its
// own that it drops afterwards. docs/s is the rate; the other metrics say how the writes
// were done. For the L8 README's figures, against the local stack's FerretDB
// (`scripts/stack.sh up 8`), without the race detector:
//
//	DBLAYERS_TEST_MONGO_URL=mongodb://127.0.0.1:27017/ \
//	  go test -run '^$' -bench Put -benchtime 10000x ./internal/docstore/
func BenchmarkPut(b *testing.B) {
	url, db := testenv.MongoURL(b)
	s := open(b, url, db)
	data := mustParse(b, `{"name":"a document","n":1,"tags":["x","y"]}`)
	const writers = 50
	write := func(b *testing.B) {
		ctx := context.Background()
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for range writers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
					if err := s.Put(ctx, fmt.Sprint("bench-", i), data); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "docs/s")
	}
	b.Run("new", func(b *testing.B) {
		before := s.WriteCounts()
		write(b)
		after := s.WriteCounts()
		b.ReportMetric(float64(after.Inserted-before.Inserted)/float64(max(after.InsertBatches-before.InsertBatches, 1)), "docs/batch")
	})
	b.Run("existing", func(b *testing.B) {
		before := s.WriteCounts()
		write(b)
		after := s.WriteCounts()
		b.ReportMetric(float64(after.Upserted-before.Upserted)/float64(b.N), "upserted/op")
	})
}
