package replica

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTracker(t *testing.T) {
	t.Run("a key never written needs nothing", func(t *testing.T) {
		assert.Equal(t, LSN(0), NewTracker(10, time.Minute).Need("k"))
	})
	t.Run("a key needs its highest acknowledged position", func(t *testing.T) {
		tr := NewTracker(10, time.Minute)
		tr.Wrote("k", 100)
		tr.Wrote("k", 90) // acknowledged later, committed earlier: 100 still stands
		tr.Wrote("other", 500)
		assert.Equal(t, LSN(100), tr.Need("k"))
		assert.Equal(t, LSN(500), tr.Need("other"))
		assert.Equal(t, LSN(0), tr.Need("unwritten"))
	})
	t.Run("forgetting by count raises the floor for every key", func(t *testing.T) {
		tr := NewTracker(3, time.Minute)
		for i := 1; i <= 5; i++ {
			tr.Wrote(fmt.Sprint("k", i), LSN(i*10))
		}
		assert.Equal(t, TrackerStats{Keys: 3, Floor: 20}, tr.Stats())
		assert.Equal(t, LSN(20), tr.Need("k1"), "a forgotten key needs the floor")
		assert.Equal(t, LSN(20), tr.Need("unwritten"))
		assert.Equal(t, LSN(50), tr.Need("k5"))
	})
	t.Run("a rewritten key is not forgotten with its older write", func(t *testing.T) {
		tr := NewTracker(2, time.Minute)
		tr.Wrote("k", 10)
		tr.Wrote("k", 30)
		tr.Wrote("x", 40) // forgets the write at 10, not k
		assert.Equal(t, LSN(30), tr.Need("k"))
		assert.Equal(t, LSN(10), tr.Stats().Floor)
	})
	t.Run("forgetting by age", func(t *testing.T) {
		now := time.Unix(1000, 0)
		tr := NewTracker(100, time.Minute)
		tr.now = func() time.Time { return now }
		tr.Wrote("old", 10)
		now = now.Add(2 * time.Minute)
		tr.Wrote("new", 20)
		assert.Equal(t, TrackerStats{Keys: 1, Floor: 10}, tr.Stats())
		assert.Equal(t, LSN(10), tr.Need("old"))
		assert.Equal(t, LSN(20), tr.Need("new"))
	})
	t.Run("memory stays bounded under many writes", func(t *testing.T) {
		tr := NewTracker(100, time.Minute)
		for i := range 20_000 {
			tr.Wrote(fmt.Sprint("k", i%1000), LSN(i+1))
		}
		assert.Equal(t, 100, tr.Stats().Keys)
		assert.LessOrEqual(t, len(tr.queue), 2200, "the queue is compacted")
		assert.Equal(t, LSN(20_000-100), tr.Stats().Floor)
	})
}

func TestLag(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := &Balancer{history: []sample{{100, t0}, {200, t0.Add(time.Second)}, {300, t0.Add(2 * time.Second)}}}
	now := t0.Add(3 * time.Second)
	for _, tc := range []struct {
		name     string
		replayed LSN
		bytes    int64
		seconds  float64
	}{
		{"caught up", 300, 0, 0},
		{"ahead of the last sample", 350, 0, 0},
		{"missing the newest sample only", 250, 50, 1},
		{"exactly at a middle sample", 200, 100, 1},
		{"missing the two newest", 150, 150, 2},
		{"behind every sample", 50, 250, 3},
	} {
		bytes, seconds := b.lag(tc.replayed, now)
		assert.Equal(t, tc.bytes, bytes, tc.name)
		assert.InDelta(t, tc.seconds, seconds, 1e-9, tc.name)
	}
	assert.Equal(t, int64(0), func() int64 { b, _ := (&Balancer{}).lag(5, now); return b }(), "no samples yet: no measured lag")
}
