package l9_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/geo"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
)

// grayQueryTimeout is DB_QUERY_TIMEOUT in these tests: every answer must come within it
// plus layertest.Margin.
const grayQueryTimeout = time.Second

// eu-west's PostgreSQL hangs with its connections open, crawls, resets them or cuts an
// answer short, under writers and readers homed in eu-west (which has no cache here, so
// that its reads reach its database). Every answer comes within the query timeout plus a
// margin, every failure is a 503, and every read is served: by the next region when
// eu-west's fails. A region that hangs or resets is skipped after a few failed calls, and
// its reads go on at many times what waiting out the timeout on each would allow. Writes homed elsewhere
// meanwhile reach eu-west once it is back, and every acknowledged write reads back in
// every region's database.
func TestGrayRegion(t *testing.T) {
	layertest.EachGrayFault(t, testenv.PostgresURL, grayQueryTimeout+layertest.Margin, func(t *testing.T, fault, url string, g layertest.Gray) {
		noCache := fmt.Sprintf("redis://127.0.0.1:%d", testenv.FreePort(t)) // nothing listens
		s := newStack(t, options{db: map[string]string{geo.EUWest: url}, cache: map[string]string{geo.EUWest: noCache},
			queryTimeout: grayQueryTimeout})
		us, eu := s.in(t, geo.USEast), s.in(t, geo.EUWest)
		eu.MustWrite("replicated", "v")
		s.settle(t)
		var elsewhere []string
		inject := g.Inject
		skipped := fault == "hang" || fault == "reset"
		g.Inject = func(t testing.TB) {
			inject(t)
			if skipped {
				testenv.WaitFor(t, 5*grayQueryTimeout, "eu-west to be skipped", func() bool {
					return regionStats(us, geo.EUWest)["skipped"] == true
				})
				r := eu.Read("replicated")
				assert.Equal(t, "US-EAST (fallback)", r.Body["region"], "a read homed in a skipped region is served by the next one")
				assert.Equal(t, "unavailable", r.Body["fallback"])
			}
			for i := range 5 {
				k := fmt.Sprintf("gray-%s-us-east-%d", fault, i)
				us.MustWrite(k, drill.ValueOf(k))
				elsewhere = append(elsewhere, k)
			}
		}
		res := layertest.Drill(t, s.target(geo.EUWest), g)

		before, during := res.Phase(drill.PhaseBefore), res.Phase(drill.PhaseFault)
		t.Logf("%s: reads/s before %.0f, during %.0f; writes/s before %.0f, during %.0f", fault,
			before.OKReadsPerSec(), during.OKReadsPerSec(), before.OKWritesPerSec(), during.OKWritesPerSec())
		assert.Equal(t, during.Reads.Count(), during.Reads.OK, "every read during the fault was served: %v", during.Reads.Answers)
		if skipped {
			layertest.AssertSkipped(t, res, drill.PhaseFault, grayQueryTimeout)
		}
		for _, p := range res.Phases {
			layertest.AssertOnly503s(t, &p)
		}
		s.settle(t)
		assertEverywhere(t, s, append(res.Acknowledged, elsewhere...))
	})
}

// The replication path to and from eu-west is cut (its connections hang, as in a
// partition between regions) under writers and readers homed in eu-west. The regions keep
// serving their own requests: every answer fast, none failing, reads at many times what
// waiting out the timeout on each would allow. The shippers time out, back off and keep every undelivered
// write in the outboxes; once the cut heals they deliver it, and every acknowledged write
// reads back in every region's database.
func TestGrayPartition(t *testing.T) {
	dbURL := testenv.PostgresURL(t)
	proxy := testenv.Proxy(t, testenv.HostPort(t, dbURL))
	s := newStack(t, options{
		db: map[string]string{geo.EUWest: dbURL}, replication: map[string]string{geo.EUWest: proxy.URL(dbURL)},
		queryTimeout: grayQueryTimeout,
	})
	us := s.in(t, geo.USEast)
	g := layertest.Gray{Bound: grayQueryTimeout + layertest.Margin}
	g.Inject = func(t testing.TB) {
		proxy.Hang(t)
		testenv.WaitFor(t, 5*grayQueryTimeout, "eu-west's shipper to us-east to fail", func() bool {
			out := regionStats(us, geo.EUWest)["outbound"].(map[string]any)[geo.Name(geo.USEast)].(map[string]any)
			return out["last_error"] == "EU-WEST database unavailable"
		})
	}
	g.Heal = func(t testing.TB) {
		assert.Positive(t, outboxCount(t, dbURL, geo.USEast), "eu-west's writes wait in its outbox")
		proxy.Heal(t)
	}
	res := layertest.Drill(t, s.target(geo.EUWest), g)

	before, during := res.Phase(drill.PhaseBefore), res.Phase(drill.PhaseFault)
	t.Logf("reads/s before %.0f, during %.0f; writes/s before %.0f, during %.0f",
		before.OKReadsPerSec(), during.OKReadsPerSec(), before.OKWritesPerSec(), during.OKWritesPerSec())
	assert.Zero(t, during.Failed, "a cut between regions costs no request its answer: %v %v", during.Reads.Answers, during.Writes.Answers)
	assert.Positive(t, during.Writes.OK)
	layertest.AssertSkipped(t, res, drill.PhaseFault, grayQueryTimeout)
	s.settle(t)
	assertEverywhere(t, s, res.Acknowledged)
}

// regionStats is region's entry of /stats.
func regionStats(c *layertest.Client, region string) map[string]any {
	for _, e := range c.Get("/stats").Body["regions"].([]any) {
		if e := e.(map[string]any); e["region"] == geo.Name(region) {
			return e
		}
	}
	return nil
}

// assertEverywhere checks that every region's database holds each of keys with the value
// a drill writes under it.
func assertEverywhere(t *testing.T, s *stack, keys []string) {
	t.Helper()
	for _, region := range regionKeys {
		rows := dump(t, s.db[region])
		missing := 0
		for _, k := range keys {
			if rows[k].Value != drill.ValueOf(k) {
				missing++
			}
		}
		assert.Zero(t, missing, "of %d acknowledged writes, missing or wrong in %s", len(keys), region)
	}
}
