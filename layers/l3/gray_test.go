package l3_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l3"
)

// A replica that hangs with its connections open is left out of rotation after the read
// that found it hanging (the layer runs without its cache here, so that reads reach the
// replicas): reads go on from the other replica and the primary, every answer
// within the query timeout plus a margin and none failing, and the replica serves again
// once a check finds it well.
func TestGrayReplica(t *testing.T) {
	const queryTimeout = time.Second
	c := startCluster(t)
	proxy := testenv.Proxy(t, testenv.HostPort(t, c.replicaURLs[0]))
	tg := start(t, c, func(cfg *l3.Config) {
		cfg.ReplicaURLs = slices.Clone(c.replicaURLs)
		cfg.ReplicaURLs[0] = proxy.URL(c.replicaURLs[0])
		cfg.Pool.QueryTimeout = queryTimeout
		cfg.RedisURL = fmt.Sprintf("redis://127.0.0.1:%d", testenv.FreePort(t)) // no cache: every read reaches a database
	})
	res := layertest.Drill(t, tg.Target, layertest.Gray{Bound: queryTimeout + layertest.Margin}.Proxied(proxy, "hang", 0, 0))
	during := res.Phase(drill.PhaseFault)
	assert.Zero(t, during.Failed, "a hanging replica costs no request its answer")
	layertest.AssertSkipped(t, res, drill.PhaseFault, queryTimeout)
	testenv.WaitFor(t, 10*time.Second, "replica-1 to serve again", func() bool {
		return replicaStat(t, tg, "replica-1")["serving"] == true
	})
}
