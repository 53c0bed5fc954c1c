package l9_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/geo"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l9"
)

var regionKeys = []string{geo.USEast, geo.EUWest, geo.AsiaPac}

// stack is one L9 service over three regions.
type stack struct {
	tg   layertest.Target
	srv  *layertest.Served[*l9.Service]
	tune func(*l9.Config)  // the stack's backends and settings
	db   map[string]string // region key → database URL
}

// options change the configuration or the servers of a stack.
type options struct {
	db           map[string]string // region key → database URL; default a fresh database on the shared server
	cache        map[string]string // region key → Redis URL; default a fresh Redis DB on the shared server
	replication  map[string]string // region key → replication's URL of its database; default db's
	queryTimeout time.Duration     // DB_QUERY_TIMEOUT; default the configuration's
	latency      time.Duration
	noReplic     bool
}

// newStack starts L9 with fast health checks and retries, so that the fault tests see
// recovery within a second or two.
func newStack(t *testing.T, o options) *stack {
	t.Helper()
	db, cache := map[string]string{}, map[string]string{}
	for _, k := range regionKeys {
		db[k], cache[k] = o.db[k], o.cache[k]
		if db[k] == "" {
			db[k] = testenv.PostgresURL(t)
		}
		if cache[k] == "" {
			cache[k] = testenv.RedisURL(t)
		}
	}
	tune := func(cfg *l9.Config) {
		cfg.USEastDB, cfg.EUWestDB, cfg.AsiaPacDB = db[geo.USEast], db[geo.EUWest], db[geo.AsiaPac]
		cfg.USEastCache, cfg.EUWestCache, cfg.AsiaPacCache = cache[geo.USEast], cache[geo.EUWest], cache[geo.AsiaPac]
		cfg.USEastReplication, cfg.EUWestReplication, cfg.AsiaPacReplication = o.replication[geo.USEast], o.replication[geo.EUWest], o.replication[geo.AsiaPac]
		if o.queryTimeout > 0 {
			cfg.Pool.QueryTimeout = o.queryTimeout
		}
		cfg.Geo.InterRegionLatency = o.latency
		cfg.Geo.ReplicationEnabled = !o.noReplic
		cfg.Geo.HealthInterval = 200 * time.Millisecond
		cfg.Geo.PollInterval = 100 * time.Millisecond
		cfg.Geo.RetryMin, cfg.Geo.RetryMax = 20*time.Millisecond, 300*time.Millisecond
		// A region down at start-up is joined later, not waited for long. The same bound covers
		// the schema creation of the regions that are up, which took over 1 s during a full run of
		// the suite (internal/geo): hence 10 s, not less.
		cfg.Pool.StartupTimeout = 10 * time.Second
	}
	s := &stack{tune: tune, db: db}
	s.start(t)
	return s
}

// start (re)starts the service on the stack's configuration.
func (s *stack) start(t *testing.T) {
	t.Helper()
	s.srv = layertest.Serve(t, l9.New, s.tune)
	s.tg = layertest.Target{
		URL: s.srv.URL, Layer: l9.Layer, WriteMessage: "Written to US-EAST and replicating to 2 regions",
		Settle:       s.settle,
		Rows:         func(t testing.TB) int { return layertest.CountRows(t, s.db[geo.USEast], "records") },
		NoTimestamps: true,
	}
}

// settle waits until every region has applied every write: every database answers and
// no outbox holds anything.
func (s *stack) settle(t testing.TB) {
	t.Helper()
	c := layertest.NewClient(t, s.tg)
	testenv.WaitFor(t, 15*time.Second, "replication to catch up", func() bool {
		r := c.Get("/stats")
		if r.Status != http.StatusOK || r.Body["replication_backlog"] != 0.0 {
			return false
		}
		for _, e := range r.Body["regions"].([]any) {
			if e.(map[string]any)["database"] != "healthy" {
				return false
			}
		}
		return true
	})
}

// target is the stack for requests that carry X-Region: region ("" for none).
func (s *stack) target(region string) layertest.Target {
	tg := s.tg
	if region != "" {
		tg.Headers = http.Header{"X-Region": {region}}
	}
	return tg
}

// in returns a client whose requests carry X-Region: region ("" for none).
func (s *stack) in(t testing.TB, region string) *layertest.Client {
	return layertest.NewClient(t, s.target(region))
}

// writeTo posts a write with an optional body region.
func writeTo(c *layertest.Client, key, value, bodyRegion string) layertest.Response {
	body := map[string]any{"key": key, "value": value}
	if bodyRegion != "" {
		body["region"] = bodyRegion
	}
	data, _ := json.Marshal(body)
	return c.Do(http.MethodPost, "/write", data)
}

// row is a record as one region's database holds it.
type row struct {
	Value, Origin string
	HLC           int64
}

// dump returns every record of one region's database.
func dump(t testing.TB, url string) map[string]row {
	t.Helper()
	out := map[string]row{}
	var k string
	var r row
	require.NoError(t, testenv.ForEachRow(url, `SELECT key, value, origin, hlc FROM records`, nil,
		[]any{&k, &r.Value, &r.Origin, &r.HLC}, func() { out[k] = r }))
	return out
}

func outboxCount(t testing.TB, url, destination string) int {
	t.Helper()
	var n int
	require.NoError(t, testenv.QueryRow(url, `SELECT count(*) FROM replication_outbox WHERE destination = $1`, []any{destination}, &n))
	return n
}

func TestContract(t *testing.T) {
	layertest.Run(t, newStack(t, options{}).tg)
}

// The original's 18 tests (tests/test_global.py), on one service. Where the original read
// right after writing because its replication was synchronous, these wait for the
// asynchronous replication first (settle) — and then check more: no read is a fallback.
func TestOriginal(t *testing.T) {
	s := newStack(t, options{})
	prefix := fmt.Sprintf("orig-%d-", time.Now().UnixNano())
	key := func(t *testing.T, k string) string { return prefix + strings.ReplaceAll(t.Name(), "/", ".") + "-" + k }

	t.Run("test_health", func(t *testing.T) {
		r := s.in(t, "").Get("/health")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, "healthy", r.Body["status"])
		assert.Equal(t, "9-global-distributed", r.Body["layer"])
		assert.Equal(t, 3.0, r.Body["total_regions"])
		assert.Equal(t, 3.0, r.Body["healthy_regions"])
		assert.Equal(t, map[string]any{"us-east": true, "eu-west": true, "asia-pac": true}, r.Body["regions"])
	})
	t.Run("test_list_regions", func(t *testing.T) {
		r := s.in(t, "").Get("/regions")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, []any{
			map[string]any{"key": "us-east", "name": "US-EAST", "healthy": true},
			map[string]any{"key": "eu-west", "name": "EU-WEST", "healthy": true},
			map[string]any{"key": "asia-pac", "name": "ASIA-PAC", "healthy": true},
		}, r.Body["regions"])
	})
	for _, tc := range []struct{ test, region, name string }{
		{"test_write_to_us_east", "us-east", "US-EAST"},
		{"test_write_to_eu_west", "eu-west", "EU-WEST"},
		{"test_write_to_asia_pac", "asia-pac", "ASIA-PAC"},
	} {
		t.Run(tc.test, func(t *testing.T) {
			r := writeTo(s.in(t, ""), key(t, "k"), "v", tc.region)
			require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
			assert.Equal(t, true, r.Body["success"])
			assert.Equal(t, tc.name, r.Body["primary_region"])
			assert.Len(t, r.Body["replicated_to"], 2)
			assert.NotContains(t, r.Body["replicated_to"], tc.name)
			assert.Equal(t, "Written to "+tc.name+" and replicating to 2 regions", r.Body["message"])
			assert.Equal(t, "async", r.Body["replication"])
		})
	}
	t.Run("test_read_from_primary_region", func(t *testing.T) {
		k := key(t, "k")
		writeTo(s.in(t, ""), k, "primary", "us-east")
		r := s.in(t, "us-east").Read(k)
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, "primary", r.Body["value"])
		assert.Equal(t, "US-EAST", r.Body["region"], "read in its own region, no fallback")
		assert.Nil(t, r.Body["fallback"])
	})
	t.Run("test_global_replication", func(t *testing.T) {
		k := key(t, "k")
		r := writeTo(s.in(t, ""), k, "global", "us-east")
		assert.Equal(t, []any{"EU-WEST", "ASIA-PAC"}, r.Body["replicated_to"])
		s.settle(t)
		for _, region := range regionKeys {
			r := s.in(t, region).Read(k)
			assert.Equal(t, "global", r.Body["value"], region)
			assert.Equal(t, geo.Name(region), r.Body["region"], "each region has its own copy")
			assert.Equal(t, "US-EAST", r.Body["origin_region"])
		}
	})
	t.Run("test_cache_behavior", func(t *testing.T) {
		k, c := key(t, "k"), s.in(t, "us-east")
		c.MustWrite(k, "v")
		assert.Equal(t, "database", c.Read(k).Body["source"])
		assert.Equal(t, "cache", c.Read(k).Body["source"])
	})
	t.Run("test_read_latency_tracking", func(t *testing.T) {
		k, c := key(t, "k"), s.in(t, "")
		c.MustWrite(k, "v")
		lat, ok := c.Read(k).Body["latency_ms"].(float64)
		require.True(t, ok, "latency_ms is a number")
		assert.GreaterOrEqual(t, lat, 0.0)
	})
	t.Run("test_read_nonexistent_key", func(t *testing.T) {
		k := key(t, "missing")
		r := s.in(t, "").Read(k)
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{
			"success": false, "key": k, "value": nil, "source": "none", "region": "US-EAST", "latency_ms": nil,
			"message": "Key not found in any region", "requested_region": "US-EAST", "fallback": nil,
			"unavailable_regions": []any{}, "hlc": nil, "origin_region": nil,
		}, r.Body)
	})
	t.Run("test_regional_failover", func(t *testing.T) {
		// No settle: right after the write, asia-pac may not have it yet; the read then falls
		// back to the other regions (the original's not-found fallback) and still finds it.
		k := key(t, "k")
		writeTo(s.in(t, ""), k, "failover", "eu-west")
		r := s.in(t, "asia-pac").Read(k)
		assert.Equal(t, true, r.Body["success"])
		assert.Equal(t, "failover", r.Body["value"])
		if r.Body["fallback"] != nil { // found in the first region that has it: us-east or eu-west
			assert.Equal(t, "not_found", r.Body["fallback"])
			assert.Contains(t, []any{"US-EAST (fallback)", "EU-WEST (fallback)"}, r.Body["region"])
		}
	})
	t.Run("test_stats_endpoint", func(t *testing.T) {
		s.settle(t) // so that two calls give the same numbers
		r := s.in(t, "").Get("/stats")
		require.Equal(t, http.StatusOK, r.Status)
		regions, _ := r.Body["regions"].([]any)
		require.Len(t, regions, 3)
		for i, entry := range regions {
			e := entry.(map[string]any)
			assert.Equal(t, geo.Name(regionKeys[i]), e["region"])
			for _, field := range []string{"db_pool_size", "cache_keys", "total_records", "healthy",
				"replication_backlog", "replication_lag_seconds", "outbound", "records_originated"} {
				assert.Contains(t, e, field)
			}
			assert.Equal(t, true, e["healthy"])
		}
		assert.Equal(t, 3.0, r.Body["total_regions"])
		assert.Equal(t, 3.0, r.Body["healthy_regions"])
		assert.Equal(t, true, r.Body["replication_enabled"])
		assert.Equal(t, r.Body, s.in(t, "").Get("/cache-stats").Body, "/cache-stats is the same document")
	})
	t.Run("test_write_with_header", func(t *testing.T) {
		r := s.in(t, "eu-west").MustWrite(key(t, "k"), "v")
		assert.Equal(t, "EU-WEST", r.Body["primary_region"])
	})
	t.Run("test_concurrent_writes_different_regions", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				r := s.in(t, regionKeys[i%3]).Write(key(t, fmt.Sprint(i)), fmt.Sprint("v", i))
				assert.Equal(t, http.StatusOK, r.Status)
			})
		}
		wg.Wait()
		for i := range 5 {
			assert.Equal(t, fmt.Sprint("v", i), s.in(t, "").Read(key(t, fmt.Sprint(i))).Body["value"])
		}
	})
	t.Run("test_data_consistency_across_regions", func(t *testing.T) {
		k := key(t, "k")
		s.in(t, "").MustWrite(k, "consistent")
		s.settle(t)
		for _, region := range regionKeys {
			r := s.in(t, region).Read(k)
			assert.Equal(t, "consistent", r.Body["value"], region)
			assert.Nil(t, r.Body["fallback"], region)
		}
	})
	t.Run("test_update_replication", func(t *testing.T) {
		k, c := key(t, "k"), s.in(t, "us-east")
		c.MustWrite(k, "v1")
		s.settle(t)
		assert.Equal(t, "v1", s.in(t, "eu-west").Read(k).Body["value"]) // cached in eu-west now
		c.MustWrite(k, "v2")
		s.settle(t)
		r := s.in(t, "eu-west").Read(k)
		assert.Equal(t, "v2", r.Body["value"], "the replicated write invalidated eu-west's cached copy")
		assert.Equal(t, "EU-WEST", r.Body["region"])
	})
	t.Run("test_disaster_recovery_scenario", func(t *testing.T) {
		k := key(t, "k")
		s.in(t, "").MustWrite(k, "dr")
		found := 0
		for _, region := range regionKeys {
			if s.in(t, region).Read(k).Body["value"] == "dr" {
				found++
			}
		}
		assert.GreaterOrEqual(t, found, 1)
	})
	t.Run("test_regional_isolation", func(t *testing.T) {
		k := key(t, "k")
		s.in(t, "us-east").MustWrite(k, "iso")
		s.settle(t)
		us := s.in(t, "us-east")
		us.Read(k)
		assert.Equal(t, "cache", us.Read(k).Body["source"])
		eu := s.in(t, "eu-west").Read(k)
		assert.Equal(t, "database", eu.Body["source"], "each region has its own cache")
		assert.Equal(t, "EU-WEST", eu.Body["region"])
	})
}

// An invalid region is a 400 naming the valid ones (the original silently used us-east),
// and nothing is stored anywhere.
func TestInvalidRegion(t *testing.T) {
	s := newStack(t, options{})
	cases := []struct {
		name, header, bodyRegion, where string
	}{
		{"header in upper case", "EU-WEST", "", "X-Region header"},
		{"unknown header, valid body region: the header decides", "mars", "eu-west", "X-Region header"},
		{"unknown body region", "", "mars", "body field region"},
	}
	for _, tc := range cases {
		r := writeTo(s.in(t, tc.header), "k-"+tc.name, "v", tc.bodyRegion)
		assert.Equal(t, http.StatusBadRequest, r.Status, tc.name)
		detail := fmt.Sprint(r.Body["detail"])
		assert.Contains(t, detail, tc.where, tc.name)
		assert.Contains(t, detail, "valid regions are us-east, eu-west, asia-pac", tc.name)
	}
	r := s.in(t, "Mars").Read("k")
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Equal(t, `Invalid region "Mars" in X-Region header: valid regions are us-east, eu-west, asia-pac`, r.Body["detail"])

	r = s.in(t, "").Do(http.MethodPost, "/write", []byte(`{"key":"k","value":"v","region":5}`))
	assert.Equal(t, http.StatusUnprocessableEntity, r.Status, "a region that is not a string is a 422 like any field")

	r = writeTo(s.in(t, ""), "k-null", "v", "")
	assert.Equal(t, "US-EAST", r.Body["primary_region"], "no region anywhere: us-east, as in the original")
	r = s.in(t, "").Do(http.MethodPost, "/write", []byte(`{"key":"k-body","value":"v","region":null}`))
	assert.Equal(t, "US-EAST", r.Body["primary_region"])
	r = writeTo(s.in(t, ""), "k-body-valid", "v", "asia-pac")
	assert.Equal(t, "ASIA-PAC", r.Body["primary_region"])

	s.settle(t)
	for _, k := range regionKeys {
		assert.Len(t, dump(t, s.db[k]), 3, "%s holds only the three valid writes", k)
	}
}

// Many clients write one key at once through all three regions. Afterwards every region
// holds the same value, and it is the last-writer-wins winner among the acknowledged
// writes: the greatest (hlc, region).
func TestConcurrentCrossRegionWritesConverge(t *testing.T) {
	s := newStack(t, options{})
	const writers, perWriter = 6, 10 // per region
	type acked struct {
		value string
		v     geo.Version
	}
	var (
		mu   sync.Mutex
		acks []acked
		wg   sync.WaitGroup
	)
	for _, region := range regionKeys {
		for w := range writers {
			wg.Go(func() {
				c := s.in(t, region)
				for i := range perWriter {
					value := fmt.Sprintf("%s-w%d-%d", region, w, i)
					r := c.Write("contended", value)
					if !assert.Equal(t, http.StatusOK, r.Status, string(r.Raw)) {
						return
					}
					h, err := geo.ParseHLC(fmt.Sprint(r.Body["hlc"]))
					require.NoError(t, err)
					mu.Lock()
					acks = append(acks, acked{value, geo.Version{HLC: h, Origin: region}})
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	require.Len(t, acks, 3*writers*perWriter)
	winner := acks[0]
	for _, a := range acks[1:] {
		if a.v.Newer(winner.v) {
			winner = a
		}
	}
	s.settle(t)
	for _, region := range regionKeys {
		got := dump(t, s.db[region])["contended"]
		assert.Equal(t, row{Value: winner.value, Origin: winner.v.Origin, HLC: int64(winner.v.HLC)}, got, "%s's database", region)
		r := s.in(t, region).Read("contended")
		assert.Equal(t, winner.value, r.Body["value"], "%s through the API (cache included)", region)
		assert.Equal(t, winner.v.HLC.String(), r.Body["hlc"])
		assert.Equal(t, geo.Name(region), r.Body["region"])
	}
}

// One region (eu-west, a real PostgreSQL of its own) is stopped while the two others take
// writes; the service is restarted while it is down. Meanwhile writes homed elsewhere
// succeed, eu-west's own writes and reads of keys nobody else has fail fast with 503, its
// reads of replicated keys fail over, after a few failed calls it is skipped, /health says
// degraded and /stats shows the skip and the backlog. When it returns it catches up:
// nothing lost, nothing shipped twice.
func TestRegionOutageCatchUpAndRestart(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	s := newStack(t, options{db: map[string]string{geo.EUWest: pg.CreateDatabase(t)}})
	us, eu, asia := s.in(t, "us-east"), s.in(t, "eu-west"), s.in(t, "asia-pac")

	const perWriter = 40
	values := map[string]string{} // last acknowledged value per key
	var mu sync.Mutex
	writer := func(c *layertest.Client, name string, from, to int) {
		for i := from; i < to; i++ {
			k := fmt.Sprintf("%s-%d", name, i%25) // rewrites too, not only new keys
			v := fmt.Sprintf("%s-v%d", name, i)
			r := c.Write(k, v)
			require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
			mu.Lock()
			values[k] = v
			mu.Unlock()
		}
	}
	writeBoth := func(from, to int) {
		var wg sync.WaitGroup
		wg.Go(func() { writer(us, "us", from, to) })
		wg.Go(func() { writer(asia, "asia", from, to) })
		wg.Wait()
	}
	eu.MustWrite("eu-before", "kept")
	writeBoth(0, perWriter/2)
	s.settle(t)

	pg.Stop(t)
	writeBoth(perWriter/2, perWriter) // writes homed elsewhere keep succeeding

	layertest.AssertFastUnavailable(t, "write homed in eu-west", func() layertest.Response { return eu.Write("eu-during", "v") })
	layertest.AssertFastUnavailable(t, "read of a key only eu-west could have", func() layertest.Response { return eu.Read("nowhere") })
	start := time.Now()
	r := eu.Read("eu-before")
	assert.Less(t, time.Since(start), layertest.FastFail)
	assert.Equal(t, "kept", r.Body["value"], "eu-west's own write, replicated before the outage, is read elsewhere")
	assert.Equal(t, "US-EAST (fallback)", r.Body["region"])
	assert.Equal(t, "unavailable", r.Body["fallback"])
	assert.Equal(t, []any{"EU-WEST"}, r.Body["unavailable_regions"])

	regionStats := func(i int) map[string]any { return us.Get("/stats").Body["regions"].([]any)[i].(map[string]any) }
	testenv.WaitFor(t, 5*time.Second, "eu-west to be skipped", func() bool { return regionStats(1)["skipped"] == true })
	assert.Equal(t, false, regionStats(0)["skipped"])
	h := us.Get("/health")
	assert.Equal(t, http.StatusOK, h.Status)
	assert.Equal(t, "degraded", h.Body["status"])
	assert.Equal(t, 2.0, h.Body["healthy_regions"])
	assert.Equal(t, map[string]any{"database": "skipped", "cache": "healthy"}, h.Body["components"].(map[string]any)["eu-west"])

	st := us.Get("/stats").Body
	euStats := st["regions"].([]any)[1].(map[string]any)
	assert.Equal(t, false, euStats["healthy"])
	assert.Equal(t, "skipped", euStats["database"])
	assert.Greater(t, euStats["replication_backlog"], 0.0, "eu-west is behind")
	assert.Greater(t, euStats["replication_lag_seconds"], 0.0)
	usOut := st["regions"].([]any)[0].(map[string]any)["outbound"].(map[string]any)["EU-WEST"].(map[string]any)
	assert.Equal(t, "EU-WEST database unavailable", usOut["last_error"])

	// Restart the service while eu-west is down: the outboxes keep what it has not got.
	testenv.WaitFor(t, 10*time.Second, "us-east and asia-pac to have delivered to each other", func() bool {
		return outboxCount(t, s.db[geo.USEast], geo.AsiaPac) == 0 && outboxCount(t, s.db[geo.AsiaPac], geo.USEast) == 0
	})
	s.srv.Stop() // a process restart, with the start below
	pendingUS, pendingAsia := outboxCount(t, s.db[geo.USEast], geo.EUWest), outboxCount(t, s.db[geo.AsiaPac], geo.EUWest)
	assert.Equal(t, perWriter/2, pendingUS, "every write us-east took during the outage waits for eu-west, and no more")
	assert.Equal(t, perWriter/2, pendingAsia)
	s.start(t)
	pg.Start(t)
	s.settle(t)

	want := map[string]string{"eu-before": "kept"}
	for k, v := range values {
		want[k] = v
	}
	for _, region := range regionKeys {
		got := map[string]string{}
		for k, r := range dump(t, s.db[region]) {
			got[k] = r.Value
		}
		assert.Equal(t, want, got, "%s holds every acknowledged write's latest value", region)
	}
	eu = s.in(t, "eu-west") // the restarted service listens elsewhere
	st = s.in(t, "").Get("/stats").Body
	delivered := func(from, to int) float64 {
		out := st["regions"].([]any)[from].(map[string]any)["outbound"].(map[string]any)
		return out[geo.Name(regionKeys[to])].(map[string]any)["delivered"].(float64)
	}
	assert.Equal(t, float64(pendingUS), delivered(0, 1), "after the restart us-east shipped eu-west only what it lacked")
	assert.Equal(t, float64(pendingAsia), delivered(2, 1))
	assert.Equal(t, 0.0, delivered(0, 2), "nothing already delivered was shipped again")
	assert.Equal(t, 0.0, delivered(2, 0))
	testenv.WaitFor(t, 5*time.Second, "every shipper to report no error", func() bool {
		for _, reg := range s.in(t, "").Get("/stats").Body["regions"].([]any) {
			for _, out := range reg.(map[string]any)["outbound"].(map[string]any) {
				if out.(map[string]any)["last_error"] != nil {
					return false
				}
			}
		}
		return true
	})
	r = eu.Read("eu-before")
	assert.Equal(t, "EU-WEST", r.Body["region"], "eu-west serves its own reads again")
	assert.Equal(t, "healthy", s.in(t, "").Get("/health").Body["status"])
}

// A region whose Redis is down still serves from its database; /health says degraded.
func TestRegionCacheDown(t *testing.T) {
	rs := testenv.StartRedis(t)
	s := newStack(t, options{cache: map[string]string{geo.USEast: rs.URL(0)}})
	c := s.in(t, "us-east")
	c.MustWrite("k", "v1")
	c.Read("k")
	require.Equal(t, "cache", c.Read("k").Body["source"])

	rs.Stop(t)
	c.MustWrite("k", "v2")
	r := c.Read("k")
	assert.Equal(t, "v2", r.Body["value"])
	assert.Equal(t, "database", r.Body["source"])
	assert.Equal(t, "US-EAST", r.Body["region"], "no failover: the region's database answers")
	h := c.Get("/health")
	assert.Equal(t, http.StatusOK, h.Status)
	assert.Equal(t, "degraded", h.Body["status"])
	assert.Equal(t, false, h.Body["regions"].(map[string]any)["us-east"])

	rs.Start(t)
	testenv.WaitFor(t, 5*time.Second, "the cache to be used again", func() bool { return c.Read("k").Body["source"] == "cache" })
	assert.Equal(t, "v2", c.Read("k").Body["value"])
}

// With replication off (the original's REPLICATION_ENABLED=false) a key lives only in its
// home region, so a read elsewhere crosses regions: with INTER_REGION_LATENCY it costs at
// least one simulated round trip, a local read none.
func TestNoReplicationAndInterRegionLatency(t *testing.T) {
	const latency = 60 * time.Millisecond
	s := newStack(t, options{noReplic: true, latency: latency})
	r := s.in(t, "us-east").MustWrite("here", "v")
	assert.Equal(t, []any{}, r.Body["replicated_to"])
	assert.Equal(t, "Written to US-EAST", r.Body["message"])
	assert.Equal(t, "disabled", r.Body["replication"])
	assert.Empty(t, dump(t, s.db[geo.EUWest]))
	assert.Zero(t, outboxCount(t, s.db[geo.USEast], geo.EUWest))

	r = s.in(t, "eu-west").Read("here")
	assert.Equal(t, "v", r.Body["value"])
	assert.Equal(t, "US-EAST (fallback)", r.Body["region"])
	assert.Equal(t, "not_found", r.Body["fallback"])
	assert.GreaterOrEqual(t, r.Body["latency_ms"], float64(latency.Milliseconds()), "a read from another region pays the round trip")

	st := s.in(t, "").Get("/stats").Body
	assert.Equal(t, false, st["replication_enabled"])
	assert.Equal(t, 60.0, st["inter_region_latency_ms"])
	assert.Equal(t, 1.0, st["total_records_global"])
}

// total_records_global counts keys, not copies (the original summed the regions: 3× each).
func TestStatsCountDistinctKeys(t *testing.T) {
	s := newStack(t, options{})
	for i, region := range regionKeys {
		s.in(t, region).MustWrite(fmt.Sprint("k", i), "v")
	}
	s.in(t, "eu-west").MustWrite("k0", "rewritten in eu-west")
	s.settle(t)
	st := s.in(t, "").Get("/stats").Body
	assert.Equal(t, 3.0, st["total_records_global"])
	var originated []float64
	for _, e := range st["regions"].([]any) {
		e := e.(map[string]any)
		assert.Equal(t, 3.0, e["total_records"], e["region"])
		assert.Equal(t, 0.0, e["replication_backlog"], e["region"])
		assert.Equal(t, 0.0, e["replication_lag_seconds"], e["region"])
		originated = append(originated, e["records_originated"].(float64))
	}
	assert.Equal(t, []float64{0, 2, 1}, originated, "k0's current version is eu-west's")
	assert.True(t, slices.Equal(originated, []float64{0, 2, 1}))
	assert.False(t, strings.Contains(string(s.in(t, "").Get("/stats").Raw), "127.0.0.1"))
}
