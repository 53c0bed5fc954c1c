package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	values := []uint64{0, 1, 255, 256, 257, 511, 512, 1 << 20, 1<<20 + 12345, math.MaxUint64 >> 1, math.MaxUint64}
	for range 10000 {
		values = append(values, r.Uint64()>>r.IntN(64))
	}
	for _, v := range values {
		i := bucketOf(v)
		require.True(t, i >= 0 && i < histBuckets, "bucket %d of %d", i, v)
		lo, hi := bucketRange(i)
		require.True(t, lo <= v && v <= hi, "%d not in bucket %d [%d, %d]", v, i, lo, hi)
		if v >= histExact {
			assert.LessOrEqual(t, float64(hi-lo+1)/float64(lo), 1.0/128, "bucket width of %d", v)
		} else {
			assert.Equal(t, lo, hi, "values below %d are exact", histExact)
		}
	}
	// Buckets are contiguous and ordered.
	for i := 1; i < histBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		require.Equal(t, prevHi+1, lo, "bucket %d", i)
	}
}

// exactQuantile is the value of rank ⌈q·n⌉ in sorted.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestQuantilesAgainstSortedValues(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, n := range []int{1, 2, 10, 999, 100000} {
		var h Histogram
		values := make([]time.Duration, n)
		var total float64
		for i := range values {
			// Log-normal around 1 ms, like real latencies, with some exact small values.
			v := time.Duration(math.Exp(r.NormFloat64()*1.5) * 1e6)
			if i%50 == 0 {
				v = time.Duration(r.IntN(256))
			}
			values[i] = v
			total += float64(v)
			h.Record(v)
		}
		slices.Sort(values)
		require.Equal(t, uint64(n), h.Count())
		assert.Equal(t, values[0], h.Min())
		assert.Equal(t, values[n-1], h.Max())
		assert.Equal(t, time.Duration(math.Round(total/float64(n))), h.Mean())
		for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
			want, got := exactQuantile(values, q), h.Quantile(q)
			assert.InDelta(t, float64(want), float64(got), float64(want)*0.004+0.5,
				"n=%d q=%v: want %v got %v", n, q, want, got)
		}
	}
}

func TestQuantileExactCases(t *testing.T) {
	var h Histogram
	assert.Equal(t, time.Duration(0), h.Quantile(0.5), "empty")
	for v := 1; v <= 100; v++ {
		h.Record(time.Duration(v)) // all below 256 ns: exact
	}
	assert.Equal(t, time.Duration(50), h.Quantile(0.5))
	assert.Equal(t, time.Duration(90), h.Quantile(0.9))
	assert.Equal(t, time.Duration(99), h.Quantile(0.99))
	assert.Equal(t, time.Duration(100), h.Quantile(0.999))
	assert.Equal(t, time.Duration(100), h.Quantile(1))
	assert.Equal(t, time.Duration(1), h.Quantile(0.0001))
}

func TestRecorderMatchesHistogram(t *testing.T) {
	var rec Recorder
	var want Histogram
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for range 1000 {
				d := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
				rec.Record(w, d)
				mu.Lock()
				want.Record(d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got := rec.Snapshot()
	assert.Equal(t, want.counts, got.counts)
	assert.Equal(t, want.Count(), got.Count())
	assert.Equal(t, want.Min(), got.Min())
	assert.Equal(t, want.Max(), got.Max())
	assert.Equal(t, want.Mean(), got.Mean())

	var merged Histogram
	merged.Merge(got)
	merged.Merge(new(Histogram))
	assert.Equal(t, got.Quantile(0.99), merged.Quantile(0.99))
	assert.Equal(t, got.Min(), merged.Min())
}
