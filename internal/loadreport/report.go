package loadreport

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Workload is one of the benchmark's four kinds of load.
type Workload struct {
	ID    string // as in the results file
	Title string // %s, if any, is the number of preloaded keys
	About string // what is sent, in one sentence
}

// Workloads are the benchmark's workloads, in report order.
var Workloads = []Workload{
	{"hot-read", "Hot-key read",
		"every request reads the same key, written once before the run"},
	{"uniform-read", "Uniform read over %s preloaded keys",
		"every request reads a key drawn uniformly from the keys preloaded before the run"},
	{"write", "Distinct-key write",
		"every request writes a key never written before (`lg-{run}-{n}`)"},
	{"mixed", "Mixed: 70% uniform read, 30% distinct-key write",
		"each request is, at random, a uniform read (weight 70) or a distinct-key write (weight 30)"},
}

// title is the workload's title; keys fills the uniform read's key count.
func (w Workload) title(keys int) string {
	if strings.Contains(w.Title, "%s") {
		return fmt.Sprintf(w.Title, thousands(float64(keys)))
	}
	return w.Title
}

func workloadByID(id string) (Workload, bool) {
	for _, w := range Workloads {
		if w.ID == id {
			return w, true
		}
	}
	return Workload{}, false
}

// Run describes a benchmark run: how it was started and where.
type Run struct {
	Command     string        // the exact command line
	Started     time.Time     // when it started
	Elapsed     time.Duration // how long the whole run took, bring-up and preload included
	Duration    string        // measured time per workload, e.g. "10s"
	Warmup      string        // unmeasured time before each measurement, e.g. "2s"
	Concurrency int
	Keys        int    // keys preloaded for the uniform reads
	LoadStart   string // load averages when the run started
	LoadEnd     string // … and when it ended
	Steal       string // share of CPU time the hypervisor gave to other guests during the run, e.g. "3.2%"
	Others      string // layers that were running beside the measured one, if any
	Chart       string // the chart's path relative to the report, "" for none
	Machine     Machine
}

// WriteMarkdown writes the benchmark report: how it was measured, then one table per
// workload (targets in the order they first appear in recs), then the notes per target.
func WriteMarkdown(w io.Writer, run Run, recs []Record) error {
	p := &mdWriter{w: w}
	p.f("# Benchmarks\n\n")
	p.f("Measured by the benchmark command on %s; this file and the chart are its output "+
		"(regenerate them, do not edit them):\n\n", run.Started.UTC().Format("2006-01-02 15:04 MST"))
	p.f("```\n%s\n```\n\n", run.Command)
	if run.Chart != "" {
		p.f("![Requests per second by layer and workload](%s)\n\n", run.Chart)
	}
	p.f("## How it was measured\n\n")
	p.f("* **Machine:** %s.\n", run.Machine)
	p.f("* **Load:** [loadgen](LOAD-TESTING.md#the-tools), %d concurrent clients (one request in "+
		"flight each, keep-alive), %s measured per workload after %s of unmeasured warm-up, "+
		"no rate limit, all on 127.0.0.1. Load generator and services share the machine's CPUs.\n",
		run.Concurrency, run.Duration, run.Warmup)
	p.f("* **One layer at a time:** each layer is brought up alone with `scripts/stack.sh up N` " +
		"(its databases, caches and workers on this machine), preloaded, measured, and brought down " +
		"again before the next one.")
	if run.Others != "" {
		p.f(" Exception in this run: %s.", run.Others)
	}
	p.f("\n")
	p.f("* **Preload:** %d keys `k0` … `k%d` written through the layer's own write endpoint "+
		"(and, for layers that apply writes asynchronously, L6 and L7, until their `/stats` "+
		"shows the queue or projection drained), plus the hot key; skipped when a marker key "+
		"shows a complete preload from an earlier run (the notes say which). Then, before the "+
		"workloads, a wait for the machine to be quiet (`settle` in `scripts/bench.sh`), so that "+
		"work still running is not measured with the layer; the notes give any wait over 2 s.\n",
		run.Keys, max(run.Keys-1, 0))
	p.f("* **Ceiling:** `loadgen ceiling`, a server whose handler does nothing but answer " +
		"(same Go HTTP server settings as the layers), loaded the same way in the same run, at " +
		"its start and at its end: what no layer can beat on this machine. \"Of ceiling\" " +
		"compares with the better of the two; the gap between them, and any layer above 100%%, " +
		"show how much other work on the machine moved the numbers during the run.\n")
	p.f("* **Columns:** req/s = requests completed per second; p50/p99 = latency percentiles in " +
		"ms, from sending a request to reading its whole answer; non-2xx = answers with another " +
		"status (a 503, a 429 …); errors = requests that got no answer at all.\n")
	if run.LoadStart != "" || run.LoadEnd != "" {
		p.f("* **Machine load** (1/5/15-minute load average): %s at the start, %s at the end. "+
			"Other work on the machine lowers every number; compare layers within one run.\n",
			orDash(run.LoadStart), orDash(run.LoadEnd))
	}
	if run.Steal != "" {
		p.f("* **CPU steal** (time this virtual machine's CPUs were ready to run but the "+
			"hypervisor ran something else): %s of all CPU time during the run. Steal lowers "+
			"every number as other load does.\n", run.Steal)
	}
	p.f("* **Total time of the run:** %s.\n\n", run.Elapsed.Round(time.Second))

	targets := targetOrder(recs)
	ceiling := map[string]float64{} // the best ceiling measured, by workload
	for _, r := range recs {
		if isCeiling(r.Target) && r.Result != nil {
			ceiling[r.Workload] = max(ceiling[r.Workload], r.Result.RPS)
		}
	}
	for _, wl := range Workloads {
		rows := recordsFor(recs, wl.ID, targets)
		if len(rows) == 0 {
			continue
		}
		p.f("## %s\n\n%s.\n\n", wl.title(run.Keys), capitalize(wl.About))
		p.f("| target | requests sent | req/s | of ceiling | p50 ms | p99 ms | non-2xx | errors |\n")
		p.f("|---|---|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range rows {
			label := r.Target
			if r.Name != "" {
				label += " " + r.Name
			}
			if r.Result == nil {
				p.f("| %s | %s | — | — | — | — | — | not measured: %s |\n", label, shape(r), mdEscape(r.Skipped))
				continue
			}
			res := r.Result
			of := "—"
			if c := ceiling[wl.ID]; c > 0 && !isCeiling(r.Target) {
				of = percent(100 * res.RPS / c)
			}
			p.f("| %s | %s | %s | %s | %s | %s | %s | %s |\n", label, shape(r), thousands(res.RPS), of,
				fmtMS(res.P50MS), fmtMS(res.P99MS), failures(res.Non2xx, res.Statuses), failures(res.Errors, res.ErrorKinds))
		}
		p.f("\n")
	}

	notes := targetNotes(recs, targets)
	if len(notes) > 0 {
		p.f("## Notes per target\n\n")
		for _, n := range notes {
			p.f("* **%s:** %s\n", n.target, mdEscape(n.text))
		}
		p.f("\n")
	}
	return p.err
}

type mdWriter struct {
	w   io.Writer
	err error
}

func (p *mdWriter) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// isCeiling: target is a measurement of the trivial-handler ceiling ("ceiling", or e.g.
// "ceiling (start)" and "ceiling (end)" when it was measured more than once).
func isCeiling(target string) bool { return strings.HasPrefix(target, "ceiling") }

// targetOrder lists the targets in the order they first appear.
func targetOrder(recs []Record) []string {
	var out []string
	for _, r := range recs {
		if !slices.Contains(out, r.Target) {
			out = append(out, r.Target)
		}
	}
	return out
}

// recordsFor returns the last record of each target for workload id, in target order.
func recordsFor(recs []Record, id string, targets []string) []Record {
	var out []Record
	for _, t := range targets {
		var last *Record
		for i := range recs {
			if recs[i].Target == t && recs[i].Workload == id {
				last = &recs[i]
			}
		}
		if last != nil {
			out = append(out, *last)
		}
	}
	return out
}

type note struct{ target, text string }

// targetNotes lists each distinct note once, with the targets that carry it ("ceiling
// (start), ceiling (end)"), in target order.
func targetNotes(recs []Record, targets []string) []note {
	var texts []string
	who := map[string][]string{}
	for _, t := range targets {
		for _, r := range recs {
			if r.Target != t || r.Note == "" || slices.Contains(who[r.Note], t) {
				continue
			}
			if len(who[r.Note]) == 0 {
				texts = append(texts, r.Note)
			}
			who[r.Note] = append(who[r.Note], t)
		}
	}
	out := make([]note, 0, len(texts))
	for _, text := range texts {
		out = append(out, note{strings.Join(who[text], ", "), text})
	}
	return out
}

func shape(r Record) string {
	if r.Shape == "" {
		return "—"
	}
	return "`" + strings.ReplaceAll(r.Shape, "|", `\|`) + "`"
}

// failures is a count with its breakdown, e.g. "950 (429×950)", or "0".
func failures(n uint64, by map[string]uint64) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", n, mdEscape(breakdown(by)))
}

// percent shows small shares with a decimal, so that 0.4% does not read as 0%.
func percent(v float64) string {
	if v < 9.95 {
		return fmt.Sprintf("%.1f%%", v)
	}
	return fmt.Sprintf("%.0f%%", v)
}

func fmtMS(v float64) string {
	switch {
	case v < 0:
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// thousands formats v rounded to an integer with thin separators: 12345.6 → "12,346".
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
