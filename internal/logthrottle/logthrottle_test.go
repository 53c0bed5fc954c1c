package logthrottle

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestEveryLetsOneLineThroughPerInterval(t *testing.T) {
	e := Every{Interval: time.Hour}
	ok, held := e.Allow()
	assert.True(t, ok, "the first line")
	assert.Zero(t, held)
	for range 2 {
		ok, _ := e.Allow()
		assert.False(t, ok, "within the interval")
	}

	e.last.Store(time.Now().Add(-time.Hour).UnixNano()) // as if the interval had passed
	ok, held = e.Allow()
	assert.True(t, ok, "after the interval")
	assert.Equal(t, int64(2), held, "the lines held back since the last one")
	ok, _ = e.Allow()
	assert.False(t, ok)
}

// Concurrent callers: exactly one line gets through per interval.
func TestEveryIsAtomic(t *testing.T) {
	e := Every{Interval: time.Hour}
	var through atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if ok, _ := e.Allow(); ok {
				through.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1), through.Load())
	e.last.Store(time.Now().Add(-time.Hour).UnixNano())
	_, held := e.Allow()
	assert.Equal(t, int64(49), held)
}
