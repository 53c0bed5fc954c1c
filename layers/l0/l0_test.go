package l0_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l0"
)

func start(t *testing.T, dbURL string) layertest.Target {
	t.Helper()
	srv := layertest.Serve(t, l0.New, func(c *l0.Config) { c.DatabaseURL = dbURL })
	return layertest.Target{
		URL: srv.URL, Layer: l0.Layer, WriteMessage: "Data written successfully",
		Rows: func(t testing.TB) int { return layertest.CountRows(t, dbURL, "records") },
	}
}

// The original's test_api.py (health, write, update, read, not found, multiple, empty,
// large and special values, url-encoded keys, timestamps, concurrency) and more.
func TestContract(t *testing.T) {
	layertest.Run(t, start(t, testenv.PostgresURL(t)))
}

func TestEveryRequestOpensAConnection(t *testing.T) {
	tg := start(t, testenv.PostgresURL(t))
	c := layertest.NewClient(t, tg)
	opened := func() float64 { return c.Get("/cache-stats").Body["connections_opened"].(float64) }
	before := opened()
	c.MustWrite("k", "v")
	c.Read("k")
	assert.Equal(t, before+2, opened())
	assert.Equal(t, false, c.Get("/cache-stats").Body["pooled"])
}

// More concurrent requests than the server takes connections: each still gets a connection
// of its own, but at most DB_MAX_OPEN_CONNECTIONS are open at once and the others wait for a
// slot, instead of being refused by PostgreSQL ("too many clients", a 503).
func TestOpenConnectionsAreBounded(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{Settings: []string{"max_connections = 20"}})
	srv := layertest.Serve(t, l0.New, func(c *l0.Config) {
		c.DatabaseURL = pg.CreateDatabase(t)
		c.DB.MaxOpen = 10
		// The wait for a slot counts against the query timeout; this test is about the bound.
		c.DB.QueryTimeout = 30 * time.Second
	})
	c := layertest.NewClient(t, layertest.Target{URL: srv.URL})
	stats := func() map[string]any { return c.Get("/cache-stats").Body }
	before := stats()["connections_opened"].(float64)

	const clients = 100
	status := make([]int, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { status[i] = c.Write(fmt.Sprintf("k%d", i), "v").Status })
	}
	wg.Wait()
	for i, s := range status {
		assert.Equal(t, http.StatusOK, s, "write %d", i)
	}
	after := stats()
	assert.Equal(t, before+clients, after["connections_opened"], "one connection per request")
	assert.Equal(t, float64(10), after["max_open"])
	assert.Equal(t, float64(0), after["connections_open"])
	assert.Equal(t, float64(0), after["requests_waiting"])
}

func TestDatabaseOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	tg := start(t, pg.CreateDatabase(t))
	layertest.DatabaseOutage(t, tg, func() { pg.Stop(t) }, func() { pg.Start(t) })
}

func TestStartupCreatesSchemaOnce(t *testing.T) {
	url := testenv.PostgresURL(t)
	start(t, url)
	start(t, url) // a second instance on the same database
	var n int
	require.NoError(t, testenv.QueryRow(url, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'records'`, nil, &n))
	assert.Equal(t, 1, n)
}
