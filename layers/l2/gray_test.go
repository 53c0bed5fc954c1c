package l2_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l2"
)

// A Redis that hangs with its connections open, crawls, resets them or cuts an answer
// short: the cache is optional, so every request still succeeds, within the timeouts plus
// a margin. A hanging Redis costs a few timeouts, then the cache is skipped and reads go to
// PostgreSQL until a probe finds Redis back; nothing acknowledged is lost and no stale
// value is read afterwards (the drill's read-back).
func TestGrayCache(t *testing.T) {
	const queryTimeout = time.Second
	layertest.EachGrayFault(t, testenv.RedisURL, queryTimeout+layertest.Margin, func(t *testing.T, fault, url string, g layertest.Gray) {
		srv := layertest.Serve(t, l2.New, func(c *l2.Config) {
			c.DatabaseURL, c.RedisURL, c.Pool.QueryTimeout = testenv.PostgresURL(t), url, queryTimeout
		})
		res := layertest.Drill(t, layertest.Target{URL: srv.URL, Layer: l2.Layer}, g)
		during := res.Phase(drill.PhaseFault)
		assert.Zero(t, during.Failed, "without its cache the layer still serves every request")
		if fault == "hang" {
			layertest.AssertSkipped(t, res, drill.PhaseFault, redisclient.ReadTimeout)
		}
	})
}

// While Redis hangs, /health says the cache is skipped and /cache-stats that it is, at
// once; once the hang ends, a probe brings the cache back.
func TestHangingCacheIsReported(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	proxy := testenv.Proxy(t, testenv.HostPort(t, redisURL))
	srv := layertest.Serve(t, l2.New, func(c *l2.Config) {
		c.DatabaseURL, c.RedisURL = testenv.PostgresURL(t), proxy.URL(redisURL)
	})
	c := layertest.NewClient(t, layertest.Target{URL: srv.URL, Layer: l2.Layer})
	c.MustWrite("k", "v")
	proxy.Hang(t)
	testenv.WaitFor(t, 10*time.Second, "the cache to be skipped", func() bool {
		return c.Read("k").Body["value"] == "v" && c.Get("/health").Body["cache"] == "skipped"
	})
	assert.Equal(t, true, c.Get("/cache-stats").Body["skipped"])
	proxy.Heal(t)
	testenv.WaitFor(t, 10*time.Second, "the cache to be back", func() bool {
		return c.Get("/health").Body["cache"] == "healthy"
	})
	c.Read("k")
	assert.Equal(t, true, c.Read("k").Body["from_cache"], "reads use the cache again")
	assert.Equal(t, false, c.Get("/cache-stats").Body["skipped"])
}
