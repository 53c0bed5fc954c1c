package l8_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l8"
)

// grayTimeout is every store's timeout in the fault tests (MongoDB's selection, connection
// and operation timeouts, PostgreSQL's query timeout), shorter than the defaults so that
// the tests are short.
const grayTimeout = time.Second

// Each of L8's stores in turn behind a Toxiproxy that makes it crawl, hang with its
// connections open, reset them or cut an answer short, while the drill writes documents
// (/write) and reads a cached one (/read/{key}), and, for PostgreSQL, writers record
// transactions. Every answer comes within the timeout plus a margin, nothing acknowledged
// is lost, the layer serves again once the fault is healed, and each store fails alone:
//
//   - MongoDB, which documents need: failures are 503s; the cached document is still served.
//   - PostgreSQL: documents never notice; transactions answer 503 or succeed, and every
//     acknowledged one is there afterwards.
//   - Redis, a cache L8 can do without: every request succeeds, from the databases.
func TestGrayStores(t *testing.T) {
	bound := grayTimeout + layertest.Margin
	for _, store := range []string{"MongoDB", "PostgreSQL", "Redis"} {
		t.Run(store, func(t *testing.T) {
			layertest.EachGrayFault(t, serverURL[store], bound, func(t *testing.T, _, url string, g layertest.Gray) {
				b := shared(t)
				*b.addr(store) = url
				tg := start(t, b, shortTimeouts)
				var txns *transactionLoad
				switch store {
				case "MongoDB":
					// Documents come back with a probe of MongoDB's guard, one a second, and the
					// first may meet a connection that the heal closed.
					g.After = 3 * time.Second
				case "PostgreSQL":
					txns = startTransactions(t, tg, 2)
				}
				during := layertest.Drill(t, tg, g).Phase(drill.PhaseFault)
				layertest.AssertOnly503s(t, during)
				switch store {
				case "MongoDB":
					assert.Positive(t, during.Reads.OK, "the cached document is served while MongoDB fails")
				case "PostgreSQL":
					assert.Zero(t, during.Failed, "documents do not need PostgreSQL")
					txns.stopAndCheck(t, bound)
				case "Redis":
					assert.Zero(t, during.Failed, "without its cache L8 still serves every request")
					assert.Positive(t, during.Reads.OK)
				}
			})
		})
	}
}

// serverURL gives a test the URL of each store's shared test server.
var serverURL = map[string]func(testing.TB) string{
	"MongoDB":    func(t testing.TB) string { url, _ := testenv.MongoURL(t); return url },
	"PostgreSQL": testenv.PostgresURL,
	"Redis":      testenv.RedisURL,
}

// addr is the URL of store in b.
func (b *backends) addr(store string) *string {
	return map[string]*string{"MongoDB": &b.mongo, "PostgreSQL": &b.pg, "Redis": &b.redis}[store]
}

// proxied is t's backends with store's address replaced by a Toxiproxy's in front of it.
func proxied(t *testing.T, store string) (backends, *testenv.FaultProxy) {
	b := shared(t)
	proxy := testenv.Proxy(t, testenv.HostPort(t, *b.addr(store)))
	*b.addr(store) = proxy.URL(*b.addr(store))
	return b, proxy
}

// A store that hangs with its connections open costs a few timeouts: then its guard opens,
// /health and /stats say so, and its endpoints answer 503 at once instead of waiting the
// timeout each. Healed, a probe finds it back.
func TestHangingStoreIsRefused(t *testing.T) {
	for _, tc := range []struct {
		store string
		call  func(c *layertest.Client) layertest.Response
	}{
		{"MongoDB", func(c *layertest.Client) layertest.Response { return c.Write("hang-doc", "v") }},
		{"PostgreSQL", func(c *layertest.Client) layertest.Response {
			return post(c, "/write/transaction", map[string]any{"user_id": "hang-user", "amount": 1, "transaction_type": "t"})
		}},
	} {
		t.Run(tc.store, func(t *testing.T) {
			b, proxy := proxied(t, tc.store)
			c := client(t, start(t, b, shortTimeouts))
			require.Equal(t, http.StatusOK, tc.call(c).Status)
			breakerOf := func(path string) any {
				return c.Get(path).Body["circuit_breakers"].(map[string]any)[tc.store]
			}

			proxy.Hang(t)
			testenv.WaitFor(t, 10*grayTimeout, "the guard to open", func() bool {
				tc.call(c)
				return breakerOf("/stats") == "open"
			})
			start := time.Now()
			r := tc.call(c)
			elapsed := time.Since(start)
			assert.Equal(t, http.StatusServiceUnavailable, r.Status)
			assert.Equal(t, tc.store+" unavailable", r.Body["detail"])
			assert.Less(t, elapsed, grayTimeout/2, "refused without waiting the timeout")
			h := c.Get("/health")
			assert.Equal(t, http.StatusServiceUnavailable, h.Status)
			assert.Contains(t, []any{"open", "half_open"}, h.Body["circuit_breakers"].(map[string]any)[tc.store])
			layertest.AssertNoLeak(t, h)

			proxy.Heal(t)
			testenv.WaitFor(t, 10*grayTimeout, "a probe to find the store back", func() bool {
				return tc.call(c).Status == http.StatusOK
			})
			assert.Equal(t, "closed", breakerOf("/health"))
		})
	}
}

// shortTimeouts sets every store's timeout to grayTimeout.
func shortTimeouts(cfg *l8.Config) {
	cfg.Mongo.Timeout, cfg.Mongo.OperationTimeout, cfg.Pool.QueryTimeout = grayTimeout, grayTimeout, grayTimeout
}

// FerretDB killed (SIGKILL) while the drill runs, then started again: its connections are
// refused at once, and so are the document writes, instead of each waiting for the
// driver to select a server (MONGODB_TIMEOUT) as they did, at a p99 of 4 s (issue 20).
func TestMongoDBKilled(t *testing.T) {
	srv := testenv.StartMongo(t)
	b := shared(t)
	b.mongo, b.mongoDB = srv.URL(), "polyglot_db"
	tg := start(t, b, shortTimeouts)
	res := layertest.Drill(t, tg, layertest.Gray{
		Bound:  grayTimeout + layertest.Margin,
		Inject: srv.Kill,
		Heal:   srv.Start,
		After:  3 * time.Second,
	})
	during := res.Phase(drill.PhaseFault)
	layertest.AssertOnly503s(t, during)
	require.Positive(t, during.Failed)
	assert.Less(t, during.FailedP99, grayTimeout, "a killed MongoDB's writes fail fast, not each after the timeout")
}

// transactionLoad is writers recording transactions until stopped, each for users of its
// own, 500 transactions per user: a user's list shows at most TRANSACTION_LIST_LIMIT (1,000).
type transactionLoad struct {
	tg      layertest.Target
	stop    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	acked   map[string][]float64 // user → acknowledged transaction ids
	slowest time.Duration
	answers map[int]int // by status
}

func startTransactions(t *testing.T, tg layertest.Target, writers int) *transactionLoad {
	l := &transactionLoad{tg: tg, acked: map[string][]float64{}, answers: map[int]int{}}
	prefix := fmt.Sprintf("gray-%d", time.Now().UnixNano())
	for w := range writers {
		l.wg.Go(func() {
			c := layertest.NewClient(t, tg)
			for i := 0; i < 100_000 && !l.stop.Load(); i++ {
				user := fmt.Sprintf("%s-w%d-u%d", prefix, w, i/500)
				body, _ := json.Marshal(map[string]any{"user_id": user, "amount": "1.00", "transaction_type": "gray"})
				start := time.Now()
				r := c.Do(http.MethodPost, "/write/transaction", body)
				elapsed := time.Since(start)
				l.mu.Lock()
				l.slowest = max(l.slowest, elapsed)
				l.answers[r.Status]++
				if r.Status == http.StatusOK {
					l.acked[user] = append(l.acked[user], r.Body["transaction_id"].(float64))
				}
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(func() { l.stop.Store(true); l.wg.Wait() })
	return l
}

// stopAndCheck stops the writers and checks that every answer came within bound, that
// failures were 503s, and that every acknowledged transaction is listed for its user.
func (l *transactionLoad) stopAndCheck(t *testing.T, bound time.Duration) {
	l.stop.Store(true)
	l.wg.Wait()
	t.Logf("transactions: answers by status %v, slowest %s", l.answers, l.slowest)
	assert.LessOrEqual(t, l.slowest, bound, "the slowest transaction write")
	for status := range l.answers {
		assert.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, status)
	}
	c := layertest.NewClient(t, l.tg)
	for user, ids := range l.acked {
		r := c.Get("/read/transaction/" + user)
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		listed := map[float64]bool{}
		for _, txn := range r.Body["value"].([]any) {
			listed[txn.(map[string]any)["id"].(float64)] = true
		}
		for _, id := range ids {
			assert.True(t, listed[id], "acknowledged transaction %v of %s", id, user)
		}
	}
}
