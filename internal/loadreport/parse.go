// Package loadreport turns the output of the load tools load-test.sh and scripts/bench.sh
// run (loadgen, hey, oha) into one tool-independent Result, and writes the benchmark
// report: BENCHMARKS.md and its SVG chart. It holds no load logic of its own: loadgen
// (internal/loadgen) sends the requests.
package loadreport

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Result is what one run measured, whatever the tool.
type Result struct {
	Tool     string  `json:"tool"`
	Requests uint64  `json:"requests"` // responses and errors
	RPS      float64 `json:"rps"`
	P50MS    float64 `json:"p50_ms"` // -1: the tool did not say (hey, with few requests)
	P99MS    float64 `json:"p99_ms"`
	// Non2xx counts responses with a status outside 200…299, by status in Statuses.
	Non2xx   uint64            `json:"non_2xx"`
	Statuses map[string]uint64 `json:"statuses,omitempty"`
	// Errors counts requests without a response (refused, timed out …), by kind.
	Errors     uint64            `json:"errors"`
	ErrorKinds map[string]uint64 `json:"error_kinds,omitempty"`
}

// Failed is the number of requests that did not get a 2xx answer.
func (r Result) Failed() uint64 { return r.Non2xx + r.Errors }

// Notes is a short account of what failed, e.g. "429×950, timeout×2", or "" when nothing did.
func (r Result) Notes() string {
	s, e := breakdown(r.Statuses), breakdown(r.ErrorKinds)
	if s != "" && e != "" {
		return s + ", " + e
	}
	return s + e
}

// breakdown is counts by name, sorted by name: "429×950, 503×3".
func breakdown(by map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, by[k]))
	}
	return strings.Join(parts, ", ")
}

// Parse reads the output of tool: "loadgen" (its -o json), "hey" (its text summary) or
// "oha" (its JSON output).
func Parse(tool string, r io.Reader) (Result, error) {
	switch tool {
	case "loadgen":
		return ParseLoadgen(r)
	case "hey":
		return ParseHey(r)
	case "oha":
		return ParseOha(r)
	}
	return Result{}, fmt.Errorf("unknown tool %q: want loadgen, hey or oha", tool)
}

// loadgenJSON is the part of loadgen's -o json output read here (internal/loadgen.JSONResult).
type loadgenJSON struct {
	Requests   *uint64           `json:"requests"`
	RPS        float64           `json:"rps"`
	P50MS      float64           `json:"p50_ms"`
	P99MS      float64           `json:"p99_ms"`
	StatusCode map[string]uint64 `json:"status_codes"`
	Non2xx     uint64            `json:"non_2xx"`
	Errors     uint64            `json:"errors"`
	ErrorKinds map[string]uint64 `json:"error_kinds"`
}

// ParseLoadgen reads the JSON object of `loadgen run -o json` (the totals, for a mix).
func ParseLoadgen(r io.Reader) (Result, error) {
	var j loadgenJSON
	if err := json.NewDecoder(r).Decode(&j); err != nil {
		return Result{}, fmt.Errorf("loadgen output: %w", err)
	}
	if j.Requests == nil {
		return Result{}, errors.New(`loadgen output: no "requests" field`)
	}
	res := Result{Tool: "loadgen", Requests: *j.Requests, RPS: j.RPS, P50MS: j.P50MS, P99MS: j.P99MS,
		Non2xx: j.Non2xx, Errors: j.Errors, Statuses: non2xx(j.StatusCode), ErrorKinds: nonEmpty(j.ErrorKinds)}
	return res, nil
}

var (
	heyRPS        = regexp.MustCompile(`^\s*Requests/sec:\s+([0-9.]+)`)
	heyPercentile = regexp.MustCompile(`^\s*(50|99)% in ([0-9.]+) secs`)
	heyStatus     = regexp.MustCompile(`^\s*\[(\d+)\]\s+(\d+) responses`)
	heyError      = regexp.MustCompile(`^\s*\[(\d+)\]\s+(.*)$`)
)

// ParseHey reads hey's text summary. hey reports latencies in seconds with four decimals,
// so its p50 and p99 have a resolution of 0.1 ms; with too few requests for a percentile it
// prints "0% in 0.0000 secs" instead, and that percentile is -1 (unknown) here.
func ParseHey(r io.Reader) (Result, error) {
	res := Result{Tool: "hey", P50MS: -1, P99MS: -1, Statuses: map[string]uint64{}, ErrorKinds: map[string]uint64{}}
	sawRPS := false
	inErrors := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Error distribution:"):
			inErrors = true
		case inErrors:
			if m := heyError.FindStringSubmatch(line); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				res.Errors += n
				res.ErrorKinds[errorKind(m[2])] += n
			}
		case heyRPS.MatchString(line):
			res.RPS, _ = strconv.ParseFloat(heyRPS.FindStringSubmatch(line)[1], 64)
			sawRPS = true
		case heyPercentile.MatchString(line):
			m := heyPercentile.FindStringSubmatch(line)
			secs, _ := strconv.ParseFloat(m[2], 64)
			if m[1] == "50" {
				res.P50MS = secs * 1000
			} else {
				res.P99MS = secs * 1000
			}
		case heyStatus.MatchString(line):
			m := heyStatus.FindStringSubmatch(line)
			n, _ := strconv.ParseUint(m[2], 10, 64)
			res.Requests += n
			if !is2xx(m[1]) {
				res.Non2xx += n
				res.Statuses[m[1]] += n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Result{}, fmt.Errorf("hey output: %w", err)
	}
	if !sawRPS {
		return Result{}, errors.New("hey output: no Requests/sec line (did hey fail?)")
	}
	res.Requests += res.Errors
	res.Statuses, res.ErrorKinds = nonEmpty(res.Statuses), nonEmpty(res.ErrorKinds)
	return res, nil
}

// ohaJSON is the part of oha's JSON output read here (`oha --output-format json`, or `-j`
// in versions before 1.5). Latencies are in seconds.
type ohaJSON struct {
	Summary *struct {
		RequestsPerSec float64 `json:"requestsPerSec"`
	} `json:"summary"`
	LatencyPercentiles struct {
		P50 *float64 `json:"p50"`
		P99 *float64 `json:"p99"`
	} `json:"latencyPercentiles"`
	StatusCodeDistribution map[string]uint64 `json:"statusCodeDistribution"`
	ErrorDistribution      map[string]uint64 `json:"errorDistribution"`
}

// ohaDeadline is the error oha gives the requests still in flight when a -z run ends: they
// were cut by the tool, not failed by the target, so they are not counted.
const ohaDeadline = "aborted due to deadline"

// ParseOha reads oha's JSON output.
func ParseOha(r io.Reader) (Result, error) {
	var j ohaJSON
	if err := json.NewDecoder(r).Decode(&j); err != nil {
		return Result{}, fmt.Errorf("oha output: %w", err)
	}
	if j.Summary == nil {
		return Result{}, errors.New(`oha output: no "summary" object`)
	}
	res := Result{Tool: "oha", RPS: j.Summary.RequestsPerSec,
		Statuses: map[string]uint64{}, ErrorKinds: map[string]uint64{}}
	if p := j.LatencyPercentiles.P50; p != nil {
		res.P50MS = *p * 1000
	}
	if p := j.LatencyPercentiles.P99; p != nil {
		res.P99MS = *p * 1000
	}
	for code, n := range j.StatusCodeDistribution {
		res.Requests += n
		if !is2xx(code) {
			res.Non2xx += n
			res.Statuses[code] += n
		}
	}
	for msg, n := range j.ErrorDistribution {
		if msg == ohaDeadline {
			continue
		}
		res.Requests += n
		res.Errors += n
		res.ErrorKinds[errorKind(msg)] += n
	}
	res.Statuses, res.ErrorKinds = nonEmpty(res.Statuses), nonEmpty(res.ErrorKinds)
	return res, nil
}

func is2xx(code string) bool { return len(code) == 3 && code[0] == '2' }

func non2xx(codes map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for code, n := range codes {
		if !is2xx(code) && n > 0 {
			out[code] = n
		}
	}
	return nonEmpty(out)
}

func nonEmpty(m map[string]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	return m
}

// errorKind shortens a tool's error message to its last clause, e.g. `Get "http://…": dial
// tcp 127.0.0.1:8002: connect: connection refused` → "connection refused".
func errorKind(msg string) string {
	msg = strings.TrimSpace(msg)
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		msg = msg[i+2:]
	}
	if len(msg) > 60 {
		msg = msg[:60] + "…"
	}
	return msg
}
