package l6_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/internal/writequeue"
	"github.com/dblayers/dblayers/layers/l6"
)

// queryTimeout is PostgreSQL's query timeout in the fault tests, shorter than the default
// so that the tests are short.
const queryTimeout = time.Second

// grayBound is what every answer must come within while a backend fails: a write waits
// at most writequeue.EnqueueTimeout for its turn, then a script bounded by the client's
// 500 ms read timeout; a read that misses the cache waits the query timeout.
const grayBound = writequeue.EnqueueTimeout + queryTimeout + layertest.Margin

// redisReadTimeout is the API's Redis client's read timeout (internal/redisclient).
const redisReadTimeout = 500 * time.Millisecond

// startGray serves L6 with workers in the process over dbURL and redisURL, with the fault
// tests' query timeout.
func startGray(t *testing.T, dbURL, redisURL string) layertest.Target {
	return start(t, setup{dbURL: dbURL, redisURL: redisURL, workers: true, tune: func(c *l6.Config) {
		c.Pool.QueryTimeout = queryTimeout
	}})
}

// The queue's Redis crawls, hangs with its connections open, resets them or cuts an answer
// short, under the drill. L6 cannot work without its queue, so failures are 503s (a
// hanging Redis is refused at once once its guard has seen it fail, and fast 503s
// follow); every answer comes within the bound; and once Redis is back, every write that
// was acknowledged is read back and applied exactly once.
func TestGrayQueue(t *testing.T) {
	layertest.EachGrayFault(t, testenv.RedisURL, grayBound, func(t *testing.T, fault, url string, g layertest.Gray) {
		dbURL := testenv.PostgresURL(t)
		tg := startGray(t, dbURL, url)
		res := layertest.Drill(t, tg, g)
		during := res.Phase(drill.PhaseFault)
		layertest.AssertOnly503s(t, during)
		if fault == "hang" || fault == "reset" {
			require.Positive(t, during.Failed)
			assert.Less(t, during.FailedP99, redisReadTimeout, "refused at once, not each after a read timeout")
		}
		appliedOnce(t, tg, dbURL)
	})
}

// The PostgreSQL that the workers apply writes to (and that reads of uncached keys go to)
// fails the same ways: writes are still acknowledged, since only Redis holds them until
// the workers apply them, and the hot key is read from the cache; so no request fails.
// Once PostgreSQL is back, the workers apply the backlog, each write once.
func TestGrayWorkerDatabase(t *testing.T) {
	layertest.EachGrayFault(t, testenv.PostgresURL, grayBound, func(t *testing.T, _, url string, g layertest.Gray) {
		tg := startGray(t, url, testenv.RedisURL(t))
		res := layertest.Drill(t, tg, g)
		during := res.Phase(drill.PhaseFault)
		assert.Zero(t, during.Failed, "the queue does not need PostgreSQL")
		assert.Positive(t, during.Writes.OK)
		appliedOnce(t, tg, url)
	})
}

// appliedOnce waits for the queue to drain and checks that every write it accepted was
// applied and counted once: as many rows as writes (each key of a drill is written once),
// none pending, none dead-lettered.
func appliedOnce(t *testing.T, tg layertest.Target, dbURL string) {
	t.Helper()
	drained(t, tg)
	st := layertest.NewClient(t, tg).Get("/stats")
	require.Equal(t, http.StatusOK, st.Status, string(st.Raw))
	queued := st.Body["writes_queued"].(float64)
	assert.Positive(t, queued)
	assert.Equal(t, queued, st.Body["writes_processed"], "each accepted write counted once")
	assert.Equal(t, 0.0, st.Body["pending"])
	assert.Equal(t, 0.0, st.Body["dead_lettered"])
	assert.Equal(t, int(queued), layertest.CountRows(t, dbURL, "records"), "each accepted write applied")
}

// While the queue's Redis hangs, /health says the queue is refused by an open breaker and
// /stats shows the breaker open; once the hang ends, a probe finds Redis back.
func TestHangingQueueIsReported(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	proxy := testenv.Proxy(t, testenv.HostPort(t, redisURL))
	c := layertest.NewClient(t, startGray(t, testenv.PostgresURL(t), proxy.URL(redisURL)))
	c.MustWrite("k", "v")
	breaker := func() any { return c.Get("/stats").Body["circuit_breakers"].(map[string]any)["Redis"] }

	proxy.Hang(t)
	testenv.WaitFor(t, 10*time.Second, "the queue to be refused", func() bool {
		c.Write("k", "v2")
		return breaker() == "open"
	})
	start := time.Now()
	r := c.Write("k", "v3")
	assert.Less(t, time.Since(start), redisReadTimeout, "refused without waiting the read timeout")
	assert.Equal(t, http.StatusServiceUnavailable, r.Status)
	assert.Equal(t, "Queue unavailable", r.Body["detail"])
	h := c.Get("/health")
	assert.Equal(t, http.StatusServiceUnavailable, h.Status)
	assert.Equal(t, "Service unhealthy: queue unavailable (its Redis failed: circuit breaker open)", h.Body["detail"])
	layertest.AssertNoLeak(t, h)

	proxy.Heal(t)
	testenv.WaitFor(t, 10*time.Second, "the queue to be back", func() bool {
		return c.Get("/health").Status == http.StatusOK
	})
	assert.Equal(t, "closed", breaker())
	c.MustWrite("k", "v4")
	assert.Equal(t, "v4", c.Read("k").Body["value"])
}
