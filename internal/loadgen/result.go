package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// Result is what a run measured. Latencies are those of requests that got a response
// (any status), from sending the request to having read the whole response body;
// requests that failed without a response are counted in Errors only.
type Result struct {
	Concurrency int
	Rate        float64       // the configured limit, 0 = none
	Warmup      time.Duration // not measured
	Elapsed     time.Duration // from the end of the warm-up to the last measured response
	Interrupted bool          // the run was stopped early
	Total       Stats         // all specs together
	Specs       []Stats       // per spec, in the order given
}

// Stats are the measurements of one spec, or of all.
type Stats struct {
	Label   string // "METHOD URL" of the spec; "total" for all
	Weight  int
	Latency *Histogram
	Status  map[int]uint64    // responses by status code
	Errors  map[string]uint64 // requests without a response, by kind of error
}

// Responses is the number of requests answered with any status.
func (s *Stats) Responses() uint64 { return s.Latency.Count() }

// ErrorCount is the number of requests that got no response.
func (s *Stats) ErrorCount() uint64 { return sum(s.Errors) }

// Requests is the number of measured requests: responses and errors.
func (s *Stats) Requests() uint64 { return s.Responses() + s.ErrorCount() }

// Non2xx is the number of responses with a status outside 200…299.
func (s *Stats) Non2xx() uint64 {
	var n uint64
	for code, c := range s.Status {
		if code < 200 || code > 299 {
			n += c
		}
	}
	return n
}

func sum[K comparable](m map[K]uint64) uint64 {
	var n uint64
	for _, c := range m {
		n += c
	}
	return n
}

func (r *runner) result(workers []*worker, end time.Time) *Result {
	res := &Result{
		Concurrency: r.cfg.Concurrency,
		Rate:        r.cfg.Rate,
		Warmup:      r.cfg.Warmup,
		Elapsed:     max(end.Sub(r.measureFrom), 0),
		Interrupted: r.ctx.Err() != nil,
		Total: Stats{Label: "total", Latency: new(Histogram),
			Status: map[int]uint64{}, Errors: map[string]uint64{}},
	}
	for i, t := range r.targets {
		s := Stats{Label: t.Spec.String(), Weight: t.weight, Latency: t.latency.Snapshot(),
			Status: map[int]uint64{}, Errors: map[string]uint64{}}
		for _, w := range workers {
			addCounts(s.Status, w.stats[i].status)
			addCounts(s.Errors, w.stats[i].errors)
		}
		res.Total.Latency.Merge(s.Latency)
		addCounts(res.Total.Status, s.Status)
		addCounts(res.Total.Errors, s.Errors)
		res.Specs = append(res.Specs, s)
	}
	if len(r.targets) == 1 {
		res.Total.Label, res.Total.Weight = res.Specs[0].Label, res.Specs[0].Weight
	}
	return res
}

func addCounts[K comparable](dst, src map[K]uint64) {
	for k, c := range src {
		dst[k] += c
	}
}

// RPS is the measured requests per second (responses and errors).
func (r *Result) RPS(s *Stats) float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests()) / r.Elapsed.Seconds()
}

// The quantiles every report shows.
var quantiles = []struct {
	name string
	q    float64
}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p99.9", 0.999}}

// JSONStats is the machine-readable form of Stats; latencies are in milliseconds.
type JSONStats struct {
	Spec       string            `json:"spec"`
	Weight     int               `json:"weight,omitempty"`
	Requests   uint64            `json:"requests"`
	Responses  uint64            `json:"responses"`
	RPS        float64           `json:"rps"`
	AvgMS      float64           `json:"avg_ms"`
	MinMS      float64           `json:"min_ms"`
	P50MS      float64           `json:"p50_ms"`
	P90MS      float64           `json:"p90_ms"`
	P99MS      float64           `json:"p99_ms"`
	P999MS     float64           `json:"p999_ms"`
	MaxMS      float64           `json:"max_ms"`
	StatusCode map[string]uint64 `json:"status_codes"`
	Non2xx     uint64            `json:"non_2xx"`
	Errors     uint64            `json:"errors"`
	ErrorKinds map[string]uint64 `json:"error_kinds"`
}

// JSONResult is the machine-readable form of Result: the totals at the top level, and
// per spec in "specs" when the run mixed several.
type JSONResult struct {
	JSONStats
	Concurrency int         `json:"concurrency"`
	DurationS   float64     `json:"duration_s"`
	WarmupS     float64     `json:"warmup_s"`
	RateLimit   float64     `json:"rate_limit"`
	Interrupted bool        `json:"interrupted"`
	Specs       []JSONStats `json:"specs,omitempty"`
}

// ms is d in milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d.Nanoseconds())/1e3) / 1e3 }

func (r *Result) jsonStats(s *Stats) JSONStats {
	h := s.Latency
	j := JSONStats{
		Spec: s.Label, Weight: s.Weight, Requests: s.Requests(), Responses: s.Responses(),
		RPS:   math.Round(r.RPS(s)*10) / 10,
		AvgMS: ms(h.Mean()), MinMS: ms(h.Min()),
		P50MS: ms(h.Quantile(0.5)), P90MS: ms(h.Quantile(0.9)), P99MS: ms(h.Quantile(0.99)),
		P999MS: ms(h.Quantile(0.999)), MaxMS: ms(h.Max()),
		StatusCode: map[string]uint64{}, Non2xx: s.Non2xx(), Errors: s.ErrorCount(), ErrorKinds: s.Errors,
	}
	for code, c := range s.Status {
		j.StatusCode[strconv.Itoa(code)] = c
	}
	return j
}

// JSON returns r in its machine-readable form.
func (r *Result) JSON() JSONResult {
	j := JSONResult{
		JSONStats:   r.jsonStats(&r.Total),
		Concurrency: r.Concurrency,
		DurationS:   r.Elapsed.Seconds(),
		WarmupS:     r.Warmup.Seconds(),
		RateLimit:   r.Rate,
		Interrupted: r.Interrupted,
	}
	if len(r.Specs) > 1 {
		for i := range r.Specs {
			j.Specs = append(j.Specs, r.jsonStats(&r.Specs[i]))
		}
	}
	return j
}

// WriteJSON writes r as one JSON object and a newline.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.JSON())
}

// WriteText writes a summary like hey's.
func (r *Result) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("Summary:\n")
	p.f("  Total:        %.4f secs", r.Elapsed.Seconds())
	if r.Warmup > 0 {
		p.f(" (after %v warm-up, not counted)", r.Warmup)
	}
	p.f("\n  Concurrency:  %d\n", r.Concurrency)
	if r.Rate > 0 {
		p.f("  Rate limit:   %g req/s\n", r.Rate)
	}
	if r.Interrupted {
		p.f("  INTERRUPTED:  the run was stopped early\n")
	}
	r.writeStats(p, &r.Total)
	if len(r.Specs) > 1 {
		for i := range r.Specs {
			p.f("\nSpec %d (weight %d): %s\n", i+1, r.Specs[i].Weight, r.Specs[i].Label)
			r.writeStats(p, &r.Specs[i])
		}
	}
	return p.err
}

func (r *Result) writeStats(p *printer, s *Stats) {
	h := s.Latency
	p.f("  Requests:     %d (%d responses, %d errors)\n", s.Requests(), s.Responses(), s.ErrorCount())
	p.f("  Requests/sec: %.1f\n", r.RPS(s))
	if h.Count() > 0 {
		p.f("\nLatency (ms; percentiles within 0.4%%):\n")
		p.f("  Average:      %.3f\n  Fastest:      %.3f\n", ms(h.Mean()), ms(h.Min()))
		for _, q := range quantiles {
			p.f("  %-6s        %.3f\n", q.name+":", ms(h.Quantile(q.q)))
		}
		p.f("  Slowest:      %.3f\n", ms(h.Max()))
	}
	if len(s.Status) > 0 {
		p.f("\nStatus code distribution:\n")
		for _, code := range slices.Sorted(maps.Keys(s.Status)) {
			p.f("  [%d] %d responses\n", code, s.Status[code])
		}
	}
	if len(s.Errors) > 0 {
		p.f("\nError distribution:\n")
		for _, kind := range slices.Sorted(maps.Keys(s.Errors)) {
			p.f("  [%d] %s\n", s.Errors[kind], kind)
		}
	}
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
