package l1_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l1"
)

// A PostgreSQL that does not die but hangs with its connections open, crawls, resets them
// or cuts an answer short (Toxiproxy between the layer and the database): every answer
// comes within DB_QUERY_TIMEOUT plus a margin, a failure is a 503, a slow database still
// serves, nothing acknowledged is lost, and the layer serves again once the fault is gone.
func TestGrayDatabase(t *testing.T) {
	const queryTimeout = time.Second
	layertest.EachGrayFault(t, testenv.PostgresURL, queryTimeout+layertest.Margin, func(t *testing.T, fault, url string, g layertest.Gray) {
		srv := layertest.Serve(t, l1.New, func(c *l1.Config) {
			c.DatabaseURL, c.Pool.QueryTimeout, c.Pool.ConnectTimeout = url, queryTimeout, queryTimeout
		})
		tg := layertest.Target{URL: srv.URL, Layer: l1.Layer}
		during := layertest.Drill(t, tg, g).Phase(drill.PhaseFault)
		layertest.AssertOnly503s(t, during)
		if fault == "latency" {
			assert.Zero(t, during.Failed, "a slow database still answers within the timeout")
		}
		assert.Equal(t, http.StatusOK, layertest.NewClient(t, tg).Get("/health").Status)
	})
}
