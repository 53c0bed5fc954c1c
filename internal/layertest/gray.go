package layertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/testenv"
)

// Margin is how much later than a layer's own timeout an answer may come while a backend
// hangs or crawls: scheduling, the race detector and a busy two-core machine, not a second
// timeout.
const Margin = 1500 * time.Millisecond

// Gray is a fault that does not kill: a backend that hangs with its connections open,
// answers slowly, resets them or cuts an answer short (a testenv.Proxy's toxics), run
// against a layer by Drill.
type Gray struct {
	// Bound is what every answer, in every phase, must come within: the layer's timeout
	// for the calls the fault delays, plus Margin.
	Bound time.Duration
	// Inject starts the fault and Heal ends it.
	Inject, Heal func(t testing.TB)
	// Fault is how long the fault lasts (default 2 s); Before and After how long the
	// workload runs before it and after it (defaults 0.5 s and 2 s: long enough for a
	// breaker's probe, once a second, to find the backend back).
	Before, Fault, After time.Duration
	// Writers and Readers are the drill's workers (defaults 4 and 4).
	Writers, Readers int
}

// Proxied is g with Inject and Heal set to fault's toxic on p and to healing p:
// "latency" (of latency), "hang", "reset" and "cut" (after cutAfter bytes).
func (g Gray) Proxied(p *testenv.FaultProxy, fault string, latency time.Duration, cutAfter int64) Gray {
	g.Heal = p.Heal
	switch fault {
	case "latency":
		g.Inject = func(t testing.TB) { p.Latency(t, latency) }
	case "hang":
		g.Inject = p.Hang
	case "reset":
		g.Inject = p.ResetPeer
	case "cut":
		g.Inject = func(t testing.TB) { p.LimitData(t, cutAfter) }
	default:
		panic("layertest: unknown gray fault " + fault)
	}
	return g
}

// EachGrayFault runs run in a subtest per fault of GrayFaults, each with a fresh backend
// from serverURL (e.g. testenv.PostgresURL) behind a Proxy: run gives the layer proxiedURL
// and drills it with g, the fault on that proxy within bound (latency 200 ms each way; a
// cut after 2 kB).
func EachGrayFault(t *testing.T, serverURL func(testing.TB) string, bound time.Duration,
	run func(t *testing.T, fault, proxiedURL string, g Gray)) {
	for _, fault := range GrayFaults {
		t.Run(fault, func(t *testing.T) {
			url := serverURL(t)
			proxy := testenv.Proxy(t, testenv.HostPort(t, url))
			run(t, fault, proxy.URL(url), Gray{Bound: bound}.Proxied(proxy, fault, 200*time.Millisecond, 2048))
		})
	}
}

// readBackLimit bounds reading back a drill's acknowledged writes (a few thousand keys).
const readBackLimit = time.Minute

// GrayFaults are the faults Proxied knows, in the order tests run them.
var GrayFaults = []string{"latency", "hang", "reset", "cut"}

// Drill runs the drill workload against tg (with its Headers) with g's fault in its middle, then reads back
// every acknowledged write. It asserts what holds for every layer and every fault: no
// answer, in any phase, later than g.Bound; no acknowledged write lost; and, once the fault
// is healed, a run of successful answers. It returns the result for the layer's own
// checks (what was served during the fault).
func Drill(t *testing.T, tg Target, g Gray) *drill.Result {
	t.Helper()
	g = g.withDefaults()
	require.Positive(t, g.Bound, "a gray fault needs a bound")
	w := drill.Workload{
		BaseURL: tg.URL, Writers: g.Writers, Readers: g.Readers, Header: tg.Headers,
		KeyPrefix:      "gray-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()),
		RequestTimeout: g.Bound + 5*time.Second, // the client waits past the bound, to see it broken
		MaxRequests:    200_000,
		RecoverRun:     10,
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.Before+g.Fault+g.After+2*w.RequestTimeout)
	defer cancel()
	run := drill.Start(ctx, w)
	wait(g.Before)
	run.Phase(drill.PhaseFault)
	g.Inject(t)
	wait(g.Fault)
	g.Heal(t)
	run.Phase(drill.PhaseAfter)
	wait(g.After)
	res := run.Stop()
	rctx, rcancel := context.WithTimeout(context.Background(), readBackLimit)
	defer rcancel()
	lost, err := res.ReadBack(rctx, tg.URL, tg.Headers)
	require.NoError(t, err, "read back the acknowledged writes")

	var out strings.Builder
	_ = res.Print(&out)
	t.Logf("drill of %s:\n%s", t.Name(), out.String())
	assert.NotEmpty(t, res.Acknowledged, "some writes were acknowledged")
	assert.Empty(t, lost, "acknowledged writes lost")
	for _, p := range res.Phases {
		assert.LessOrEqual(t, p.Slowest(), g.Bound, "the slowest answer of phase %q", p.Name)
	}
	after := res.Phase(drill.PhaseAfter)
	require.NotNil(t, after)
	assert.True(t, after.Recovered, "the layer served again after the fault was healed")
	return res
}

// wait lets the run go on for d.
func wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

func (g Gray) withDefaults() Gray {
	if g.Before == 0 {
		g.Before = 500 * time.Millisecond
	}
	if g.Fault == 0 {
		g.Fault = 2 * time.Second
	}
	if g.After == 0 {
		g.After = 2 * time.Second
	}
	if g.Writers == 0 {
		g.Writers = 4
	}
	if g.Readers == 0 {
		g.Readers = 4
	}
	return g
}

// AssertOnly503s fails t if a request of phase p failed other than with a 503: a timeout,
// a broken connection or another status.
func AssertOnly503s(t testing.TB, p *drill.PhaseStats) {
	t.Helper()
	for kind, answers := range map[string]map[string]int{"read": p.Reads.Answers, "write": p.Writes.Answers} {
		for outcome, n := range answers {
			if !strings.HasPrefix(outcome, "200") {
				assert.Equal(t, "503", outcome, "%d %ss of phase %q", n, kind, p.Name)
			}
		}
	}
}

// AssertSkipped fails t unless the reads served in phase name were at least four times what
// the run's readers could have had by waiting out timeout on every read: the failing
// dependency was skipped, not waited on. A count, not a speed: it holds on a slow machine.
func AssertSkipped(t testing.TB, res *drill.Result, name string, timeout time.Duration) {
	t.Helper()
	p := res.Phase(name)
	if !assert.NotNil(t, p, "phase %q", name) {
		return
	}
	waited := float64(res.Workload.Readers) * p.Duration.Seconds() / timeout.Seconds()
	assert.Greater(t, float64(p.Reads.OK), 4*waited,
		"reads served in phase %q: waiting out %s on each, %d readers would have had %.0f", name, timeout, res.Workload.Readers, waited)
}
