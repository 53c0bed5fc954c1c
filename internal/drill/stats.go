package drill

import (
	"time"

	"github.com/dblayers/dblayers/internal/loadgen"
)

type kind int

const (
	kindRead kind = iota
	kindWrite
)

// phase collects the answers to the requests sent while it was current; guarded by Run.mu.
type phase struct {
	name       string
	start, end time.Time // end is zero while current
	kinds      [2]KindStats
	failed     *loadgen.Histogram
	recoverRun int // N of Recovery
	streak     int // successful answers in a row, in answer order
	recovery   time.Duration
	recovered  bool
	lastFail   time.Duration // from start to the last failed answer so far
}

func newPhase(name string, start time.Time, recoverRun int) *phase {
	p := &phase{name: name, start: start, failed: new(loadgen.Histogram), recoverRun: recoverRun}
	for i := range p.kinds {
		p.kinds[i].Answers = map[string]int{}
	}
	return p
}

// add counts one answer, received at time at.
func (p *phase) add(k kind, a answer, at time.Time) {
	s := &p.kinds[k]
	s.Answers[a.outcome]++
	s.Slowest = max(s.Slowest, a.elapsed)
	if !a.ok {
		p.failed.Record(a.elapsed)
		p.streak = 0
		p.lastFail = max(p.lastFail, at.Sub(p.start))
		return
	}
	s.OK++
	p.streak++
	if !p.recovered && p.streak >= p.recoverRun {
		p.recovered, p.recovery = true, at.Sub(p.start)
	}
}

func (r *Run) record(p *phase, k kind, a answer, at time.Time) {
	if a.abandon {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p.add(k, a, at)
}

// KindStats are the answers to one kind of request (reads or writes) of a phase.
type KindStats struct {
	// Answers counts the requests by outcome: the HTTP status ("200", "503" …); for a 200
	// that is not a success, "200 unacknowledged" (a write without "success": true),
	// "200 not found" and "200 wrong value" (a read), "200 unreadable body"; for a request
	// without an answer, the kind of error: "timeout" (the request timeout passed),
	// "connection refused", "connection reset", "connection closed (EOF)" …
	Answers map[string]int
	OK      int           // successes: acknowledged writes, reads of the right value
	Slowest time.Duration // the longest request, answered or not
}

// Count is the number of requests counted.
func (k KindStats) Count() int {
	n := 0
	for _, c := range k.Answers {
		n += c
	}
	return n
}

// PhaseStats are the answers to the requests sent during one phase, whenever they came.
type PhaseStats struct {
	Name     string
	Duration time.Duration // from the phase's start to the next phase's, or to Stop
	Reads    KindStats
	Writes   KindStats

	Failed    int           // requests of either kind that did not succeed, answered or not
	FailedP99 time.Duration // their 99th percentile latency (within 0.4%); 0 when none

	// Recovery is the phase's time to recover: from the phase's start to the arrival of
	// the RecoverRun-th answer of the first run of RecoverRun successful answers in a row,
	// counting the answers to requests sent in the phase, reads and writes together, in
	// the order they arrived (a failure of either kind restarts the count). Recovered is
	// false when no such run came. In PhaseAfter it says when the layer was whole again;
	// in PhaseFault, how soon it served again without the failed part, if it does.
	Recovery  time.Duration
	Recovered bool
	// LastFailure is the time from the phase's start to the arrival of the last failed
	// answer to a request sent in it (0 when none failed): failures after Recovery mean the
	// layer fell back again.
	LastFailure time.Duration
}

func (p *phase) stats(end time.Time) PhaseStats {
	return PhaseStats{
		Name: p.name, Duration: end.Sub(p.start),
		Reads: p.kinds[kindRead], Writes: p.kinds[kindWrite],
		Failed: int(p.failed.Count()), FailedP99: p.failed.Quantile(0.99),
		Recovery: p.recovery, Recovered: p.recovered, LastFailure: p.lastFail,
	}
}

// OKReadsPerSec is the phase's successful reads per second.
func (p PhaseStats) OKReadsPerSec() float64 { return perSec(p.Reads.OK, p.Duration) }

// OKWritesPerSec is the phase's acknowledged writes per second.
func (p PhaseStats) OKWritesPerSec() float64 { return perSec(p.Writes.OK, p.Duration) }

// Slowest is the phase's longest request of either kind.
func (p PhaseStats) Slowest() time.Duration { return max(p.Reads.Slowest, p.Writes.Slowest) }

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// collect makes the result once the workers are done; end is the end of the last phase.
func (r *Run) collect(end time.Time) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{Workload: r.w, HotKeySeed: r.seed, Capped: r.capped.Load(), Interrupted: r.ctx.Err() != nil}
	for i, p := range r.phases {
		e := p.end
		if i == len(r.phases)-1 {
			e = end
		}
		res.Phases = append(res.Phases, p.stats(e))
	}
	for id, ns := range r.acked {
		for _, n := range ns {
			res.Acknowledged = append(res.Acknowledged, r.w.Key(id, n))
		}
	}
	return res
}
