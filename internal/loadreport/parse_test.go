package loadreport

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A real `loadgen run -o json` output of a 70/30 mix (specs shortened).
const loadgenOutput = `{
  "spec": "total",
  "requests": 1000,
  "responses": 990,
  "rps": 1996.7,
  "avg_ms": 4.1,
  "min_ms": 0.3,
  "p50_ms": 3.37,
  "p90_ms": 8.2,
  "p99_ms": 16.97,
  "p999_ms": 30.1,
  "max_ms": 31,
  "status_codes": {"200": 960, "429": 25, "503": 5},
  "non_2xx": 30,
  "errors": 10,
  "error_kinds": {"timeout": 10},
  "concurrency": 10,
  "duration_s": 0.5,
  "warmup_s": 0,
  "rate_limit": 0,
  "interrupted": false,
  "specs": [
    {"spec": "GET http://127.0.0.1:8002/read/k{key:1000}", "weight": 70, "requests": 700,
     "rps": 1.5, "p50_ms": 99, "p99_ms": 99, "status_codes": {"200": 700}, "non_2xx": 0, "errors": 0}
  ]
}
`

// hey 0.1.4's summary of a run with some failures, trimmed of the histogram.
const heyOutput = `
Summary:
  Total:	0.0576 secs
  Slowest:	0.0397 secs
  Fastest:	0.0001 secs
  Average:	0.0016 secs
  Requests/sec:	5299.9032

  Total data:	43500 bytes
  Size/request:	145 bytes

Latency distribution:
  10% in 0.0002 secs
  25% in 0.0003 secs
  50% in 0.0005 secs
  75% in 0.0008 secs
  90% in 0.0017 secs
  95% in 0.0031 secs
  99% in 0.0397 secs

Status code distribution:
  [200]	290 responses
  [503]	8 responses

Error distribution:
  [2]	Get "http://127.0.0.1:8002/read/lt-hot": dial tcp 127.0.0.1:8002: connect: connection refused
`

// oha's JSON output (schema of oha 1.x: summary, latencyPercentiles in seconds,
// statusCodeDistribution, errorDistribution).
const ohaOutput = `{
  "summary": {"successRate": 0.99, "total": 2.0, "slowest": 0.05, "fastest": 0.0001,
              "average": 0.002, "requestsPerSec": 4321.5, "totalData": 1000, "sizePerRequest": 145,
              "sizePerSec": 1000},
  "responseTimeHistogram": {"0.001": 10},
  "latencyPercentiles": {"p10": 0.0002, "p25": 0.0003, "p50": 0.0012, "p75": 0.002,
                         "p90": 0.003, "p95": 0.004, "p99": 0.0155, "p99.9": 0.02, "p99.99": 0.03},
  "rps": {"mean": 4300, "percentiles": {"p50": 4400, "p99": 5000}},
  "details": {},
  "statusCodeDistribution": {"200": 8600, "401": 40},
  "errorDistribution": {"aborted due to deadline": 50, "connection closed before message completed": 3}
}`

func TestParse(t *testing.T) {
	tests := []struct {
		name, tool, in string
		want           Result
	}{
		{"loadgen totals of a mix", "loadgen", loadgenOutput, Result{Tool: "loadgen", Requests: 1000,
			RPS: 1996.7, P50MS: 3.37, P99MS: 16.97, Non2xx: 30, Statuses: map[string]uint64{"429": 25, "503": 5},
			Errors: 10, ErrorKinds: map[string]uint64{"timeout": 10}}},
		{"hey with failures", "hey", heyOutput, Result{Tool: "hey", Requests: 300, RPS: 5299.9032,
			P50MS: 0.5, P99MS: 39.7, Non2xx: 8, Statuses: map[string]uint64{"503": 8},
			Errors: 2, ErrorKinds: map[string]uint64{"connection refused": 2}}},
		{"oha without the deadline aborts", "oha", ohaOutput, Result{Tool: "oha", Requests: 8643,
			RPS: 4321.5, P50MS: 1.2, P99MS: 15.5, Non2xx: 40, Statuses: map[string]uint64{"401": 40},
			Errors: 3, ErrorKinds: map[string]uint64{"connection closed before message completed": 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.tool, strings.NewReader(tc.in))
			require.NoError(t, err)
			assert.InDelta(t, tc.want.P50MS, got.P50MS, 1e-9)
			assert.InDelta(t, tc.want.P99MS, got.P99MS, 1e-9)
			got.P50MS, got.P99MS = tc.want.P50MS, tc.want.P99MS
			assert.Equal(t, tc.want, got)
		})
	}
}

// With fewer requests than a percentile needs, hey prints "0% in 0.0000 secs" lines.
func TestParseHeyWithTooFewRequestsForP99(t *testing.T) {
	out := `Summary:
  Requests/sec:	1796.8

Latency distribution:
  10% in 0.0028 secs
  50% in 0.0037 secs
  90% in 0.0045 secs
  0% in 0.0000 secs
  0% in 0.0000 secs

Status code distribution:
  [200]	10 responses
`
	got, err := ParseHey(strings.NewReader(out))
	require.NoError(t, err)
	assert.InDelta(t, 3.7, got.P50MS, 1e-9)
	assert.Equal(t, -1.0, got.P99MS, "unknown, not 0 ms")
	assert.Equal(t, uint64(10), got.Requests)
	assert.Equal(t, "—", fmtMS(got.P99MS))
}

func TestParseRejectsWhatIsNotASummary(t *testing.T) {
	tests := []struct{ name, tool, in string }{
		{"loadgen error text", "loadgen", "loadgen: refusing non-loopback target\n"},
		{"loadgen object without totals", "loadgen", `{"spec":"x"}`},
		{"hey usage text", "hey", "Usage: hey [options...] <url>\n"},
		{"oha without summary", "oha", `{"latencyPercentiles":{}}`},
		{"unknown tool", "wrk", heyOutput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.tool, strings.NewReader(tc.in))
			assert.Error(t, err)
		})
	}
}

func TestNotes(t *testing.T) {
	assert.Equal(t, "", Result{}.Notes())
	assert.Equal(t, "429×950, 503×3, timeout×2", Result{
		Statuses:   map[string]uint64{"503": 3, "429": 950},
		ErrorKinds: map[string]uint64{"timeout": 2},
	}.Notes())
}

func TestErrorKindKeepsTheLastClause(t *testing.T) {
	assert.Equal(t, "connection refused",
		errorKind(`Get "http://127.0.0.1:8002/x": dial tcp 127.0.0.1:8002: connect: connection refused`))
	assert.Equal(t, "timeout", errorKind("timeout"))
	assert.Len(t, []rune(errorKind(strings.Repeat("x", 200))), 61)
}
