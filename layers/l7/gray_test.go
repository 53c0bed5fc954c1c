package l7_test

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l7"
)

// queryTimeout is the API's query timeout in the fault tests, shorter than the default so
// that the tests are short.
const queryTimeout = time.Second

// The write database, then the read database, behind a Toxiproxy that makes it crawl, hang
// with its connections open, reset them or cut an answer short, under the drill (the API
// and a projector in the process). Every answer comes within the query timeout plus a
// margin; failures are 503s; the other side keeps working (reads while the write database
// fails, commands while the read database fails); and once the fault is healed every
// acknowledged command reads back, and every event was projected exactly once.
func TestGrayDatabases(t *testing.T) {
	for _, side := range []string{"write", "read"} {
		t.Run(side, func(t *testing.T) {
			layertest.EachGrayFault(t, testenv.PostgresURL, queryTimeout+layertest.Margin, func(t *testing.T, _, url string, g layertest.Gray) {
				d := sharedDBs(t)
				if side == "write" {
					d.write = url
				} else {
					d.read = url
				}
				// The 503s the faults cause are expected: they are not logged.
				tg := startAPILogging(t, d, slog.New(slog.DiscardHandler), func(c *l7.Config) { c.Pool.QueryTimeout = queryTimeout })
				// Batches of the default size: the backlog a fault leaves is projected within the
				// drill's read-back.
				runProjector(t, d, func(c *l7.ProjectorConfig) { c.Projector.BatchSize = 100 })
				waitHealthy(t, tg)
				during := layertest.Drill(t, tg, g).Phase(drill.PhaseFault)
				layertest.AssertOnly503s(t, during)
				if side == "write" {
					assert.Positive(t, during.Reads.OK, "queries do not need the write database")
				} else {
					assert.Positive(t, during.Writes.OK, "commands do not need the read database")
				}
				projectedOnce(t, tg, d)
			})
		})
	}
}

// projectedOnce waits for the projection to catch up and checks that every published
// event was applied once: as many projected as published, and as many records as events,
// each applied once (every key of a drill is written by one command).
func projectedOnce(t *testing.T, tg layertest.Target, d dbs) {
	t.Helper()
	settle(t, tg)
	st := layertest.NewClient(t, tg).Get("/stats")
	require.Equal(t, http.StatusOK, st.Status, string(st.Raw))
	published := st.Body["events_published"].(float64)
	assert.Positive(t, published)
	assert.Equal(t, published, st.Body["events_projected"])
	assert.Equal(t, 0.0, st.Body["events_parked"])
	var records, applied, most int64
	require.NoError(t, testenv.QueryRow(d.read, "SELECT count(*), sum(write_count), max(write_count) FROM records", nil,
		&records, &applied, &most))
	assert.Equal(t, int64(published), records, "a record per command")
	assert.Equal(t, int64(published), applied, "each event applied once")
	assert.Equal(t, int64(1), most, "no event applied twice")
}
