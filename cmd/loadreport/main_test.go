package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const loadgenJSON = `{"spec":"GET http://127.0.0.1:8002/read/hot","requests":300,"responses":297,"rps":1996.74,
"p50_ms":3.371,"p99_ms":16.9,"status_codes":{"200":290,"503":7},"non_2xx":7,"errors":3,
"error_kinds":{"timeout":3}}`

// The scripts read parse's line by position: requests, req/s, p50, p99, non-2xx, errors, notes.
func TestParsePrintsTheScriptsLine(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, parse([]string{"-tool", "loadgen"}, strings.NewReader(loadgenJSON), &out))
	assert.Equal(t, "300\t1996.7\t3.37\t16.90\t7\t3\t503×7, timeout×3\n", out.String())

	out.Reset()
	clean := strings.NewReader(`{"requests":10,"rps":5,"p50_ms":1,"p99_ms":2,"status_codes":{"200":10}}`)
	require.NoError(t, parse([]string{"-tool", "loadgen"}, clean, &out))
	assert.Equal(t, "10\t5.0\t1.00\t2.00\t0\t0\t-\n", out.String(), "no failures: notes are -")
}

func TestParseRefusesBadInput(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, parse([]string{"-tool", "wrk"}, strings.NewReader(loadgenJSON), &out))
	assert.Error(t, parse([]string{"-tool", "loadgen"}, strings.NewReader("loadgen: refused\n"), &out))
	assert.Error(t, parse([]string{"-x"}, strings.NewReader(loadgenJSON), &out))
	assert.Empty(t, out.String())
}

// record, then report: the path scripts/bench.sh takes.
func TestRecordThenReport(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "results.jsonl")
	output := filepath.Join(dir, "run.json")
	require.NoError(t, os.WriteFile(output, []byte(loadgenJSON), 0o600))
	for _, args := range [][]string{
		{"-target", "ceiling (start)", "-workload", "hot-read", "-shape", "GET /read/hot", "-tool", "loadgen", output},
		{"-target", "L2", "-name", "Read Cache", "-workload", "hot-read", "-shape", "GET /read/hot",
			"-note", "cache-aside", "-tool", "loadgen", output},
		{"-target", "L3", "-name", "Read Replicas", "-workload", "hot-read", "-skipped", "scripts/stack.sh up 3 failed"},
	} {
		require.NoError(t, record(append([]string{"-results", results}, args...)), "%v", args)
	}
	assert.Error(t, record([]string{"-results", results, "-target", "L1", "-workload", "write"}),
		"neither a result nor a reason")
	assert.Error(t, record([]string{"-results", results, "-target", "L1", "-workload", "write",
		"-skipped", "x", "-tool", "loadgen", output}), "both a result and a reason")

	md, svg := filepath.Join(dir, "BENCH.md"), filepath.Join(dir, "docs", "bench.svg")
	require.NoError(t, report([]string{"-results", results, "-markdown", md, "-chart", svg,
		"-chart-link", "docs/bench.svg", "-command", "scripts/bench.sh -z 3s", "-started", "2026-01-02T03:04:05Z",
		"-elapsed", "95s", "-duration", "3s", "-warmup", "1s", "-c", "50", "-keys", "1000"}))
	b, err := os.ReadFile(md)
	require.NoError(t, err)
	assert.Contains(t, string(b), "![Requests per second by layer and workload](docs/bench.svg)")
	assert.Contains(t, string(b), "| L2 Read Cache | `GET /read/hot` | 1,997 | 100% | 3.37 | 16.9 | 7 (503×7) | 3 (timeout×3) |")
	assert.Contains(t, string(b), "| L3 Read Replicas | — | — | — | — | — | — | not measured: scripts/stack.sh up 3 failed |")
	assert.Contains(t, string(b), "* **L2:** cache-aside")
	s, err := os.ReadFile(svg)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(s), "<svg "), "the chart is an SVG")

	assert.Error(t, report([]string{"-results", results, "-markdown", md}), "required flags")
	assert.Error(t, report([]string{"-results", filepath.Join(dir, "none.jsonl"), "-markdown", md,
		"-command", "x", "-started", "2026-01-02T03:04:05Z", "-duration", "3s", "-c", "1"}), "no results file")
}
