package layertest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

// FastFail is how quickly a request must be answered while a backend is down.
const FastFail = 3 * time.Second

// leakWords would betray driver or host detail in a client-facing error.
var leakWords = []string{"dial", "tcp", "127.0.0.1", "localhost", "refused", "pgconn", "pgx", "SQLSTATE", "redis:", "connect:", "EOF", "timeout"}

// AssertNoLeak fails t if a response body carries driver or host detail.
func AssertNoLeak(t testing.TB, r Response) {
	t.Helper()
	for _, w := range leakWords {
		assert.NotContains(t, strings.ToLower(string(r.Raw)), strings.ToLower(w), "the error body leaks internal detail")
	}
}

// AssertFastUnavailable sends a request and checks it is answered 503, within FastFail,
// with a detail and no internal detail.
func AssertFastUnavailable(t testing.TB, what string, send func() Response) {
	t.Helper()
	start := time.Now()
	r := send()
	elapsed := time.Since(start)
	assert.Equal(t, http.StatusServiceUnavailable, r.Status, "%s: %s", what, r.Raw)
	assert.Less(t, elapsed, FastFail, "%s took %s", what, elapsed)
	assert.NotEmpty(t, r.Body["detail"], what)
	AssertNoLeak(t, r)
}

// DatabaseOutage stops the layer's database: writes, reads and /health must answer 503
// fast, with no driver text. Then it starts the database again: the same service must
// serve again without a restart, and keep what it acknowledged before the outage.
func DatabaseOutage(t *testing.T, tg Target, stop, start func()) {
	c := NewClient(t, tg)
	c.MustWrite("before-outage", "kept")
	settle(t, tg)

	stop()
	AssertFastUnavailable(t, "write", func() Response { return c.Write("during-outage", "v") })
	AssertFastUnavailable(t, "read", func() Response { return c.Read("never-cached") })
	AssertFastUnavailable(t, "health", func() Response { return c.Get("/health") })

	start()
	testenv.WaitFor(t, 15*time.Second, "the service to serve again", func() bool {
		return c.Get("/health").Status == http.StatusOK
	})
	c.MustWrite("after-outage", "v")
	settle(t, tg)
	require.Equal(t, "v", c.Read("after-outage").Body["value"])
	assert.Equal(t, "kept", c.Read("before-outage").Body["value"])
}
