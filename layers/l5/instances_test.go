package l5_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
)

// invalidationBound is how soon, at most, another instance must stop serving a value
// after a write through one instance was acknowledged (README: "Cross-instance
// invalidation"). Pub/sub delivers in milliseconds; the bound leaves room for a loaded
// CI machine, for a subscription that is being re-established, and for
// L1_CACHE_DISCONNECTED_TTL (1 s) while Redis is down.
const invalidationBound = 3 * time.Second

func TestMain(m *testing.M) { testenv.Main(m) }

// startProcess runs the cmd/l5 binary on a free port and waits until it is healthy and
// subscribed to invalidations. It is stopped with SIGTERM when t ends.
func startProcess(t *testing.T, dbURL, redisURL string) *layertest.Client {
	t.Helper()
	port := testenv.FreePort(t)
	p := testenv.StartProcess(t, testenv.Build(t, "github.com/dblayers/dblayers/cmd/l5"), "HOST=127.0.0.1", "PORT="+strconv.Itoa(port),
		"DATABASE_URL="+dbURL, "REDIS_URL="+redisURL, "LOG_LEVEL=warn", "L1_CACHE_TTL=60", "L1_CACHE_DISCONNECTED_TTL=1")
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	p.AwaitHealthy(t, url, 30*time.Second)
	c := layertest.NewClient(t, layertest.Target{URL: url})
	awaitSubscribed(t, c)
	return c
}

func awaitSubscribed(t *testing.T, c *layertest.Client) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "the invalidation subscription", func() bool {
		return c.Get("/stats").Body["l1_invalidation_subscribed"] == true
	})
}

// readUntilL1 reads key until this instance answers from L1, and returns the value.
func readUntilL1(t *testing.T, c *layertest.Client, key string) any {
	t.Helper()
	var v any
	testenv.WaitFor(t, 5*time.Second, key+" to be served from L1", func() bool {
		r := c.Read(key)
		v = r.Body["value"]
		return r.Body["cache_level"] == "L1"
	})
	return v
}

// awaitValue waits, within invalidationBound, until c reads want for key.
func awaitValue(t *testing.T, c *layertest.Client, key, want, why string) {
	t.Helper()
	began := time.Now()
	testenv.WaitFor(t, invalidationBound, why, func() bool { return c.Read(key).Body["value"] == want })
	t.Logf("%s: %s after the write was acknowledged", why, time.Since(began).Round(time.Millisecond))
}

// Two real L5 processes on one Redis and one PostgreSQL: a write through either stops
// the other serving the old value from its L1 within invalidationBound, also when the
// subscription's connection is killed and when Redis is down altogether.
func TestTwoProcessesInvalidateEachOther(t *testing.T) {
	rs := testenv.StartRedis(t) // private: this test kills connections and stops it
	dbURL := testenv.PostgresURL(t)
	a := startProcess(t, dbURL, rs.URL(0))
	b := startProcess(t, dbURL, rs.URL(0))

	a.MustWrite("k", "v1")
	awaitInvalidations(t, b, 1)
	require.Equal(t, "v1", readUntilL1(t, b, "k"))
	a.MustWrite("k", "v2")
	awaitValue(t, b, "k", "v2", "b serves a's write")

	require.Equal(t, "v2", readUntilL1(t, a, "k"))
	b.MustWrite("k", "v3")
	awaitValue(t, a, "k", "v3", "a serves b's write")

	// /clear-cache on one instance clears the other's L1 too.
	require.Equal(t, "v3", readUntilL1(t, b, "k"))
	require.Equal(t, http.StatusOK, a.Do(http.MethodPost, "/clear-cache", nil).Status)
	testenv.WaitFor(t, invalidationBound, "b's L1 to be cleared", func() bool {
		return b.Read("k").Body["cache_level"] != "L1"
	})

	// The subscription connections are killed and a write is published at once, possibly
	// into the gap: b clears its L1 when it subscribes again, so the message is not needed.
	require.Equal(t, "v3", readUntilL1(t, b, "k"))
	admin := redisClient(t, rs.URL(0))
	require.NoError(t, admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err())
	a.MustWrite("k", "v4")
	awaitValue(t, b, "k", "v4", "b serves a's write made while its subscription was reconnecting")
	awaitSubscribed(t, a)
	awaitSubscribed(t, b)

	// Redis down: no invalidation can travel; b's L1 keeps entries for at most
	// L1_CACHE_DISCONNECTED_TTL, so a's write (to PostgreSQL only) still shows up.
	require.Equal(t, "v4", readUntilL1(t, b, "k"))
	rs.Stop(t)
	testenv.WaitFor(t, 5*time.Second, "b to notice Redis is gone", func() bool {
		return b.Get("/stats").Body["l1_invalidation_subscribed"] == false
	})
	assert.Equal(t, "v4", readUntilL1(t, b, "k"), "b still answers from L1 without Redis")
	a.MustWrite("k", "v5")
	awaitValue(t, b, "k", "v5", "b serves a's write made while Redis was down")

	rs.Start(t)
	awaitSubscribed(t, a)
	awaitSubscribed(t, b)
	require.Equal(t, "v5", readUntilL1(t, b, "k"))
	a.MustWrite("k", "v6")
	awaitValue(t, b, "k", "v6", "b serves a's write after Redis came back")
}
