package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Latencies are recorded in a log-linear histogram of nanoseconds (the HDR histogram
// layout with 8 significant bits): values below 256 ns are exact; above, each power of two
// is split into 128 equal buckets, so a bucket is at most 1/128 of its lower bound wide and
// its midpoint, which percentiles report, is within 0.4% of every value in it. Memory is
// fixed (histBuckets counters) whatever the number of requests. Count, sum, min and max are
// kept exactly.
const (
	histExact   = 256 // values below are their own bucket
	histSub     = 128 // buckets per power of two above histExact
	histBuckets = histExact + (64-8)*histSub
)

func bucketOf(v uint64) int {
	if v < histExact {
		return int(v)
	}
	shift := bits.Len64(v) - 8 // 1 … 56
	return histExact + (shift-1)*histSub + int(v>>shift) - histSub
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < histExact {
		return uint64(i), uint64(i)
	}
	shift := (i-histExact)/histSub + 1
	mant := uint64((i-histExact)%histSub + histSub)
	lo = mant << shift
	return lo, lo + (1 << shift) - 1
}

// Histogram is a latency distribution; the zero value is empty. It is not safe for
// concurrent use: workers record into a Recorder.
type Histogram struct {
	counts   [histBuckets]uint64
	count    uint64
	sum      float64 // ns; float so that sums of long runs cannot overflow
	min, max uint64  // ns
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	h.add(1, float64(v), v, v)
}

func (h *Histogram) add(count uint64, sum float64, lo, hi uint64) {
	if count == 0 {
		return
	}
	if h.count == 0 || lo < h.min {
		h.min = lo
	}
	if hi > h.max {
		h.max = hi
	}
	h.count += count
	h.sum += sum
}

// Merge adds o's latencies to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.add(o.count, o.sum, o.min, o.max)
}

// Count is the number of latencies recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Min, Max and Mean are exact.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.count)))
}

// Quantile returns the latency at quantile q (0 < q ≤ 1): the value of rank ⌈q·count⌉ in
// the sorted latencies, to within 0.4% (exact below 256 ns, and exact for q = 1).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = min(max(rank, 1), h.count)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			mid := lo + (hi-lo)/2
			return time.Duration(min(max(mid, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// A Recorder is a Histogram many goroutines record into at once, without locks: latencies
// go to one of a few shards (by worker number) with atomic adds, so memory stays fixed
// whatever the concurrency.
type Recorder struct {
	shards [recorderShards]atomicHistogram
}

const recorderShards = 8

type atomicHistogram struct {
	counts [histBuckets]atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Uint64 // ns; 2^64 ns is 584 years of summed latency
	minInv atomic.Uint64 // ^min, so that the zero value means "none yet"
	max    atomic.Uint64
}

// Record adds one latency measured by worker number worker.
func (r *Recorder) Record(worker int, d time.Duration) {
	s := &r.shards[worker%recorderShards]
	v := uint64(max(d, 0))
	s.counts[bucketOf(v)].Add(1)
	s.count.Add(1)
	s.sum.Add(v)
	for m := s.minInv.Load(); ^v > m; m = s.minInv.Load() {
		if s.minInv.CompareAndSwap(m, ^v) {
			break
		}
	}
	for m := s.max.Load(); v > m; m = s.max.Load() {
		if s.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Snapshot returns the latencies recorded so far. Call it once the recording goroutines
// are done for exact totals.
func (r *Recorder) Snapshot() *Histogram {
	h := new(Histogram)
	for i := range r.shards {
		s := &r.shards[i]
		var count uint64
		for j := range s.counts {
			c := s.counts[j].Load()
			h.counts[j] += c
			count += c
		}
		if count > 0 {
			h.add(count, float64(s.sum.Load()), ^s.minInv.Load(), s.max.Load())
		}
	}
	return h
}
