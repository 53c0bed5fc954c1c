package l4_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l4"
)

// A shard that hangs with its connections open costs only the keys it holds: their
// requests fail with a 503 within the query timeout plus a margin, the other shards'
// keys go on being written, and nothing acknowledged is lost.
func TestGrayShard(t *testing.T) {
	const queryTimeout = time.Second
	urls := []string{testenv.PostgresURL(t), testenv.PostgresURL(t), testenv.PostgresURL(t)}
	proxy := testenv.Proxy(t, testenv.HostPort(t, urls[1]))
	proxied := slices.Clone(urls)
	proxied[1] = proxy.URL(urls[1])
	tg, _ := start(t, proxied, testenv.RedisURL(t), func(c *l4.Config) { c.Pool.QueryTimeout = queryTimeout })
	res := layertest.Drill(t, tg, layertest.Gray{Bound: queryTimeout + layertest.Margin}.Proxied(proxy, "hang", 0, 0))
	during := res.Phase(drill.PhaseFault)
	layertest.AssertOnly503s(t, during)
	assert.Positive(t, during.Writes.OK, "the other shards' keys are written during the hang")
}
