package l10_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l10"
)

// A shard that hangs with its connections open: its keys' requests fail with 503s within
// the query timeout plus a margin until its breaker opens, and at once after that; the
// other shard's keys go on being served; a probe closes the breaker once the hang ends.
// And a shared cache tier (Redis) that hangs is skipped: every request still succeeds.
func TestGray(t *testing.T) {
	const queryTimeout = time.Second
	for _, backend := range []string{"shard", "cache"} {
		t.Run(backend, func(t *testing.T) {
			f := &fixture{
				shardURLs: []string{testenv.PostgresURL(t), testenv.PostgresURL(t)},
				l2URL:     testenv.RedisURL(t), limiterURL: testenv.RedisURL(t),
			}
			var proxy *testenv.FaultProxy
			if backend == "shard" {
				proxy = testenv.Proxy(t, testenv.HostPort(t, f.shardURLs[1]))
				f.shardURLs = slices.Clone(f.shardURLs)
				f.shardURLs[1] = proxy.URL(f.shardURLs[1])
			} else {
				proxy = testenv.Proxy(t, testenv.HostPort(t, f.l2URL))
				f.l2URL = proxy.URL(f.l2URL)
			}
			f = f.another(t, func(c *l10.Config) {
				c.Pool.QueryTimeout, c.BreakerTimeout = queryTimeout, time.Second
			})
			// Four seconds of fault: writers wait out the timeout on the shard's keys until
			// CIRCUIT_BREAKER_THRESHOLD (5) failures in a row open its breaker.
			g := layertest.Gray{Bound: queryTimeout + layertest.Margin, Fault: 4 * time.Second}
			res := layertest.Drill(t, f.tg, g.Proxied(proxy, "hang", 0, 0))
			during := res.Phase(drill.PhaseFault)
			layertest.AssertOnly503s(t, during)
			if backend == "cache" {
				assert.Zero(t, during.Failed, "without its shared cache tier the layer still serves every request")
				layertest.AssertSkipped(t, res, drill.PhaseFault, redisclient.ReadTimeout)
			} else {
				assert.Positive(t, during.Writes.OK, "the other shard's keys are written during the hang")
			}
		})
	}
}
