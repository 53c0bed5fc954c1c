package l5_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
)

// A Redis (the shared tier and the invalidation bus) that hangs with its connections open:
// the layer serves every request from its memory tier and PostgreSQL, each within the
// timeouts plus a margin, says the Redis tier is skipped, and loses nothing.
func TestGrayRedisTier(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	proxy := testenv.Proxy(t, testenv.HostPort(t, redisURL))
	tg := start(t, testenv.PostgresURL(t), proxy.URL(redisURL))
	var skipped bool
	g := layertest.Gray{Bound: 2*time.Second + layertest.Margin}.Proxied(proxy, "hang", 0, 0)
	inject := g.Inject
	g.Inject = func(t testing.TB) {
		inject(t)
		c := layertest.NewClient(t, tg)
		testenv.WaitFor(t, 5*time.Second, "the Redis tier to be skipped", func() bool {
			c.Read("any")
			return c.Get("/health").Body["l2_cache"] == "skipped"
		})
		skipped = c.Get("/stats").Body["l2_skipped"] == true
	}
	during := layertest.Drill(t, tg, g).Phase(drill.PhaseFault)
	assert.True(t, skipped, "/stats says the Redis tier is skipped")
	assert.Zero(t, during.Failed, "without Redis the layer still serves every request")
	assert.Positive(t, during.Reads.OK)
}
