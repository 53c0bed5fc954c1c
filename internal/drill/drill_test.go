package drill

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

// fakeLayer answers /write and /read/{key} from a map, the way the layers do, and fails
// on demand.
type fakeLayer struct {
	mode    atomic.Value // one of the modes below
	mu      sync.Mutex
	records map[string]string
	dropped []string     // keys acknowledged but not stored
	hung    atomic.Int64 // requests held until the client gave up
}

const (
	modeOK          = "ok"
	modeUnavailable = "503"
	modeHang        = "hang"        // hold every request until the client gives up
	modeDropWrites  = "drop writes" // acknowledge writes without storing them
)

const apiKey = "drill-test-key"

func newFakeLayer(t *testing.T) (*fakeLayer, string) {
	f := &fakeLayer{records: map[string]string{}}
	f.mode.Store(modeOK)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeLayer) set(mode string) { f.mode.Store(mode) }

func (f *fakeLayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-API-Key") != apiKey {
		http.Error(w, `{"detail":"no key"}`, http.StatusUnauthorized)
		return
	}
	mode := f.mode.Load().(string)
	switch mode {
	case modeUnavailable:
		http.Error(w, `{"detail":"Service unavailable"}`, http.StatusServiceUnavailable)
		return
	case modeHang:
		// Read the body first: the server notices a client's hang-up only after it has.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		f.hung.Add(1)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if key, ok := strings.CutPrefix(r.URL.Path, "/read/"); ok {
		v, found := f.records[key]
		resp := map[string]any{"success": found, "key": key}
		if found {
			resp["value"] = v
		}
		_ = json.NewEncoder(w).Encode(resp)
		return
	}
	var req struct{ Key, Value string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"detail":"bad"}`, http.StatusUnprocessableEntity)
		return
	}
	if mode == modeDropWrites {
		f.dropped = append(f.dropped, req.Key)
	} else {
		f.records[req.Key] = req.Value
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"success": true, "key": req.Key})
}

func workload(base string) Workload {
	return Workload{
		BaseURL: base, Writers: 2, Readers: 2, RecoverRun: 5,
		RequestTimeout: 2 * time.Second, ReadBackSettle: 100 * time.Millisecond,
		Header: http.Header{"X-Api-Key": {apiKey}},
	}
}

// waitAnswers waits until the current phase of run has at least n successful answers.
func waitAnswers(t *testing.T, run *Run, n int, what string) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, what, func() bool {
		_, ok := run.Answers()
		return ok >= n
	})
}

func TestReadBackFindsTheLostWrites(t *testing.T) {
	f, base := newFakeLayer(t)
	run := Start(t.Context(), workload(base))
	waitAnswers(t, run, 20, "answers before the fault")

	run.Phase(PhaseFault)
	f.set(modeDropWrites)
	testenv.WaitFor(t, 10*time.Second, "dropped writes", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.dropped) >= 10
	})
	run.Phase(PhaseAfter)
	f.set(modeOK)
	waitAnswers(t, run, 20, "answers after the fault")
	res := run.Stop()

	lost, err := res.ReadBack(t.Context(), base, nil)
	require.NoError(t, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.ElementsMatch(t, f.dropped, lost, "lost = exactly the acknowledged writes the layer dropped")
	assert.Equal(t, lost, res.Lost)
	assert.True(t, res.ReadBackDone)
	assert.Len(t, res.Acknowledged, len(f.records)-1+len(f.dropped), "every write stored or dropped was acknowledged (the hot key is not counted)")
	require.Len(t, res.Phases, 3)
	for i, name := range []string{PhaseBefore, PhaseFault, PhaseAfter} {
		p := res.Phases[i]
		assert.Equal(t, name, p.Name)
		assert.Equal(t, p.Reads.Count(), p.Reads.Answers["200"], "%s: every read found the hot key", name)
		assert.Equal(t, p.Writes.Count(), p.Writes.Answers["200"], "%s: every write acknowledged", name)
		assert.Zero(t, p.Failed)
		assert.Zero(t, p.LastFailure)
		assert.True(t, p.Recovered)
	}
	assert.Empty(t, res.HotKeySeed)
	assert.False(t, res.Capped)
	assert.False(t, res.Interrupted)
}

func TestFailuresTimeoutsAndRecovery(t *testing.T) {
	f, base := newFakeLayer(t)
	w := workload(base)
	w.RequestTimeout = 100 * time.Millisecond
	run := Start(t.Context(), w)
	waitAnswers(t, run, 10, "answers before the fault")

	f.set(modeUnavailable) // before the phase begins: every request of the phase fails
	run.Phase(PhaseFault)
	testenv.WaitFor(t, 10*time.Second, "503s", func() bool {
		n, _ := run.Answers()
		return n >= 20
	})
	f.set(modeHang)
	testenv.WaitFor(t, 10*time.Second, "timeouts", func() bool { return f.hung.Load() >= 4 })
	run.Phase(PhaseAfter)
	f.set(modeOK)
	waitAnswers(t, run, 10, "answers after the fault")
	res := run.Stop()

	fault := res.Phase(PhaseFault)
	require.NotNil(t, fault)
	assert.Zero(t, fault.Reads.OK+fault.Writes.OK, "nothing succeeds in the fault")
	assert.Positive(t, fault.Reads.Answers["503"]+fault.Writes.Answers["503"])
	assert.Positive(t, fault.Reads.Answers["timeout"]+fault.Writes.Answers["timeout"])
	assert.Equal(t, fault.Reads.Count()+fault.Writes.Count(), fault.Failed)
	assert.GreaterOrEqual(t, fault.Slowest(), w.RequestTimeout, "a timed-out request took the whole timeout")
	assert.GreaterOrEqual(t, fault.FailedP99, w.RequestTimeout*99/100, "p99 of failures is a timeout")
	assert.False(t, fault.Recovered)
	assert.Positive(t, fault.LastFailure)

	d, ok := res.TimeToRecover()
	assert.True(t, ok)
	assert.Positive(t, d)
	after := res.Phase(PhaseAfter)
	assert.Positive(t, after.OKReadsPerSec()+after.OKWritesPerSec())
}

func TestRecoveryIsTheFirstRunOfNSuccesses(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	okAnswer, failed := answer{outcome: "200", ok: true}, answer{outcome: "503"}
	p := newPhase(PhaseAfter, t0, 3)
	p.add(kindRead, okAnswer, at(1))
	p.add(kindWrite, okAnswer, at(2))
	p.add(kindWrite, failed, at(3)) // restarts the count
	p.add(kindRead, okAnswer, at(4))
	p.add(kindWrite, okAnswer, at(5))
	assert.False(t, p.recovered, "two in a row are not three")
	p.add(kindRead, okAnswer, at(6))
	p.add(kindRead, failed, at(7)) // later failures do not undo it
	s := p.stats(at(8))
	assert.True(t, s.Recovered)
	assert.Equal(t, 6*time.Second, s.Recovery)
	assert.Equal(t, 8*time.Second, s.Duration)
	assert.Equal(t, 3, s.Reads.OK)
	assert.Equal(t, 2, s.Writes.OK)
	assert.Equal(t, 2, s.Failed)
	assert.Equal(t, 7*time.Second, s.LastFailure)
	assert.InDelta(t, 3.0/8, s.OKReadsPerSec(), 1e-9)
}

func TestRunStopsAtItsCap(t *testing.T) {
	_, base := newFakeLayer(t)
	w := workload(base)
	w.MaxRequests = 50
	run := Start(t.Context(), w)
	testenv.WaitFor(t, 10*time.Second, "the cap", func() bool {
		n, _ := run.Answers()
		return n >= 50
	})
	res := run.Stop()
	assert.True(t, res.Capped)
	p := res.Phase(PhaseBefore)
	assert.Equal(t, 50, p.Reads.Count()+p.Writes.Count(), "exactly the cap")
}

func TestCancelledRunIsInterrupted(t *testing.T) {
	f, base := newFakeLayer(t)
	f.set(modeHang)
	w := workload(base)
	w.Readers = 0
	ctx, cancel := context.WithCancel(t.Context())
	run := Start(ctx, w)
	cancel()
	res := run.Stop()
	assert.True(t, res.Interrupted)
	assert.Zero(t, res.Phase(PhaseBefore).Writes.Count(), "abandoned requests are not counted")
}

func TestReadBackFailsWhenTheLayerDoes(t *testing.T) {
	f, base := newFakeLayer(t)
	run := Start(t.Context(), workload(base))
	waitAnswers(t, run, 10, "answers")
	res := run.Stop()
	require.NotEmpty(t, res.Acknowledged)
	f.set(modeUnavailable)
	lost, err := res.ReadBack(t.Context(), base, nil)
	assert.ErrorContains(t, err, "unreadable", "a failing layer proves nothing lost")
	assert.Nil(t, lost)
	assert.False(t, res.ReadBackDone)

	_, err = res.ReadBack(t.Context(), "http://10.0.0.1:8002", nil)
	assert.ErrorContains(t, err, "only loopback")
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    Workload
		want string // "" = valid
	}{
		{"valid", Workload{BaseURL: "http://127.0.0.1:8002/", Writers: 1}, ""},
		{"localhost", Workload{BaseURL: "http://localhost:8002", Readers: 1}, ""},
		{"not loopback", Workload{BaseURL: "http://192.0.2.1:8002", Writers: 1}, "only loopback"},
		{"no scheme", Workload{BaseURL: "127.0.0.1:8002", Writers: 1}, "base URL"},
		{"other scheme", Workload{BaseURL: "ftp://127.0.0.1:8002", Writers: 1}, "want http"},
		{"no workers", Workload{BaseURL: "http://127.0.0.1:8002"}, "at least one"},
		{"too many", Workload{BaseURL: "http://127.0.0.1:8002", Writers: MaxWorkers, Readers: 1}, "at most"},
		{"over the cap limit", Workload{BaseURL: "http://127.0.0.1:8002", Writers: 1, MaxRequests: MaxRequestsLimit + 1}, "max requests"},
		{"slash in key", Workload{BaseURL: "http://127.0.0.1:8002", Writers: 1, KeyPrefix: "a/b"}, "'/'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			if tc.want == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.want)
			}
		})
	}
	assert.Panics(t, func() { Start(t.Context(), Workload{BaseURL: "http://192.0.2.1", Writers: 1}) })
}

func TestPrint(t *testing.T) {
	_, base := newFakeLayer(t)
	run := Start(t.Context(), workload(base))
	waitAnswers(t, run, 10, "answers")
	run.Phase(PhaseAfter)
	waitAnswers(t, run, 10, "answers after")
	res := run.Stop()
	_, err := res.ReadBack(t.Context(), base, nil)
	require.NoError(t, err)
	var b strings.Builder
	require.NoError(t, res.Print(&b))
	out := b.String()
	assert.Contains(t, out, "drill of "+base+": 2 writers, 2 readers")
	assert.Regexp(t, `(?m)^before +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ms +- +- +[0-9.]+s +200: [0-9]+ +200: [0-9]+$`, out)
	assert.Contains(t, out, "acknowledged writes: ")
	assert.Contains(t, out, ", lost: 0\n")
	assert.Contains(t, out, "time to recover: ")
	assert.NotContains(t, out, "still failed")

	res.Phases[len(res.Phases)-1].LastFailure = res.Phases[len(res.Phases)-1].Recovery + 5*time.Second
	b.Reset()
	require.NoError(t, res.Print(&b))
	assert.Contains(t, b.String(), "but requests still failed until ")
}
