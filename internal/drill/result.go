package drill

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Result is what a run measured.
type Result struct {
	Workload     Workload     // as run, defaults applied
	Phases       []PhaseStats // in order
	Acknowledged []string     // the keys whose write was acknowledged
	HotKeySeed   string       // "" when Start's write of the hot key was acknowledged, else its outcome
	Capped       bool         // the run stopped at Workload.MaxRequests
	Interrupted  bool         // the run's context ended: requests in flight then were not counted

	// Set by a successful ReadBack.
	ReadBackDone bool
	Lost         []string
}

// Phase returns the stats of the last phase called name, nil if there was none.
func (r *Result) Phase(name string) *PhaseStats {
	for i := len(r.Phases) - 1; i >= 0; i-- {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// TimeToRecover is the Recovery of the last PhaseAfter; ok is false when there was no
// such phase or the layer did not recover in it.
func (r *Result) TimeToRecover() (d time.Duration, ok bool) {
	p := r.Phase(PhaseAfter)
	if p == nil || !p.Recovered {
		return 0, false
	}
	return p.Recovery, true
}

// readBackWorkers is how many reads a read-back has in flight.
const readBackWorkers = 8

// readBackPause spaces the rounds of a read-back.
const readBackPause = 200 * time.Millisecond

// ReadBack reads every acknowledged key from the layer at baseURL (with header, or the
// run's header when nil) and returns those that are lost: read as missing or with another
// value than the one written. A key that reads wrong, or whose read fails (a non-200
// status, no answer), is read again in later rounds until Workload.ReadBackSettle has
// passed; a key that still reads wrong then is lost. If reads still fail then, it is an
// error: the layer did not answer, which proves nothing. Bounded by ctx, the settle time
// and the request timeout. A nil error also sets r.Lost and r.ReadBackDone.
func (r *Result) ReadBack(ctx context.Context, baseURL string, header http.Header) ([]string, error) {
	w := r.Workload
	w.BaseURL = strings.TrimRight(baseURL, "/")
	if header != nil {
		w.Header = header
	}
	if err := checkBaseURL(w.BaseURL); err != nil {
		return nil, err
	}
	client := newClient(readBackWorkers)
	defer client.CloseIdleConnections()

	deadline := time.Now().Add(w.ReadBackSettle)
	pending := r.Acknowledged
	var wrong, failing []string
	var lastFailure string
	for {
		answers := readAll(ctx, client, w, pending)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read-back: %w", err)
		}
		wrong, failing = nil, nil
		for i, a := range answers {
			switch {
			case a.ok:
			case a.outcome == outcomeNotFound || a.outcome == outcomeWrongValue:
				wrong = append(wrong, pending[i])
			default:
				failing, lastFailure = append(failing, pending[i]), a.outcome
			}
		}
		pending = append(wrong, failing...)
		if len(pending) == 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-time.After(readBackPause):
		case <-ctx.Done():
			return nil, fmt.Errorf("read-back: %w", ctx.Err())
		}
	}
	if len(failing) > 0 {
		return nil, fmt.Errorf("read-back: %d of %d acknowledged keys still unreadable after %v (last: %s)",
			len(failing), len(r.Acknowledged), w.ReadBackSettle, lastFailure)
	}
	r.Lost, r.ReadBackDone = wrong, true
	return wrong, nil
}

// readAll reads keys, readBackWorkers at a time; answers are in the order of keys.
func readAll(ctx context.Context, c *http.Client, w Workload, keys []string) []answer {
	answers := make([]answer, len(keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(readBackWorkers, len(keys)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(keys) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				answers[i] = read(ctx, c, w, keys[i])
			}
		})
	}
	wg.Wait()
	return answers
}

// Print writes r as a table, one row per phase (the answers to the requests sent in it,
// whenever they came, times from the phase's start), then the acknowledged and lost writes and
// the time to recover.
func (r *Result) Print(out io.Writer) error {
	w := r.Workload
	var b strings.Builder
	fmt.Fprintf(&b, "drill of %s: %d writers, %d readers of one key, request timeout %v\n",
		w.BaseURL, w.Writers, w.Readers, w.RequestTimeout)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "phase\tsecs\tok reads/s\tok writes/s\tslowest\tp99 failed\tlast failed at\t%d ok in a row at\treads\twrites\n", w.RecoverRun)
	for _, ph := range r.Phases {
		p99, last, rec := "-", "-", "never"
		if ph.Failed > 0 {
			p99, last = fmtMS(ph.FailedP99), fmt.Sprintf("%.2fs", ph.LastFailure.Seconds())
		}
		if ph.Recovered {
			rec = fmt.Sprintf("%.2fs", ph.Recovery.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\n", ph.Name, ph.Duration.Seconds(),
			ph.OKReadsPerSec(), ph.OKWritesPerSec(), fmtMS(ph.Slowest()), p99, last, rec,
			fmtAnswers(ph.Reads.Answers), fmtAnswers(ph.Writes.Answers))
	}
	_ = tw.Flush() // into a strings.Builder: cannot fail
	lost := "not read back"
	if r.ReadBackDone {
		lost = fmt.Sprint(len(r.Lost))
	}
	fmt.Fprintf(&b, "acknowledged writes: %d, lost: %s\n", len(r.Acknowledged), lost)
	for _, k := range r.Lost[:min(len(r.Lost), 10)] {
		fmt.Fprintf(&b, "  lost: %s\n", k)
	}
	if d, ok := r.TimeToRecover(); ok {
		fmt.Fprintf(&b, "time to recover: %.2fs (from the start of %q to the last of the first %d successful answers in a row)\n",
			d.Seconds(), PhaseAfter, w.RecoverRun)
		if last := r.Phase(PhaseAfter).LastFailure; last > d {
			fmt.Fprintf(&b, "  but requests still failed until %.2fs\n", last.Seconds())
		}
	} else if r.Phase(PhaseAfter) != nil {
		fmt.Fprintf(&b, "time to recover: not recovered (no %d successful answers in a row in %q)\n", w.RecoverRun, PhaseAfter)
	}
	if r.HotKeySeed != "" {
		fmt.Fprintf(&b, "note: the hot key's first write failed (%s): reads may find no value\n", r.HotKeySeed)
	}
	if r.Capped {
		fmt.Fprintf(&b, "note: the run stopped at its cap of %d requests\n", w.MaxRequests)
	}
	if r.Interrupted {
		fmt.Fprintf(&b, "note: interrupted: requests in flight at the end were not counted\n")
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// fmtMS is d in milliseconds, to a precision that suits its size.
func fmtMS(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms >= 100 {
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.1fms", ms)
}

// fmtAnswers lists answers by outcome, most frequent first: "200: 981; timeout: 8".
func fmtAnswers(answers map[string]int) string {
	if len(answers) == 0 {
		return "-"
	}
	keys := slices.SortedFunc(maps.Keys(answers), func(a, b string) int {
		return cmp.Or(cmp.Compare(answers[b], answers[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, answers[k])
	}
	return strings.Join(parts, "; ")
}
