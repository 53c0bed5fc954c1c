package service

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

func TestBufferedLogLinesArriveWholeAndInOrder(t *testing.T) {
	var out testenv.Buffer
	w := newBufferedWriter(&out)
	logger := newLogger(w, "info")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				logger.Info("request", "g", g, "i", i)
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Flush())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Len(t, lines, 800)
	for _, l := range lines {
		assert.True(t, strings.HasPrefix(l, "{") && strings.HasSuffix(l, "}"), "a whole JSON line: %q", l)
	}
}

func TestBufferedLogIsFlushedPeriodically(t *testing.T) {
	var out testenv.Buffer
	w := newBufferedWriter(&out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.flushEvery(ctx, 10*time.Millisecond)
	newLogger(w, "warn").Warn("hello")
	newLogger(w, "warn").Info("dropped below the level")
	testenv.WaitFor(t, 5*time.Second, "the line to be flushed", func() bool { return strings.Contains(out.String(), "hello") })
	assert.NotContains(t, out.String(), "dropped")
}
