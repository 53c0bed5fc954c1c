package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/loadgen"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want loadgen.Spec
	}{
		{"70 GET http://127.0.0.1:8002/read/k{key:100000}",
			loadgen.Spec{Weight: 70, Method: "GET", URL: "http://127.0.0.1:8002/read/k{key:100000}"}},
		{` 30  POST	http://127.0.0.1:8002/write  {"key": "w{n}",  "value": "v"} `,
			loadgen.Spec{Weight: 30, Method: "POST", URL: "http://127.0.0.1:8002/write", Body: `{"key": "w{n}",  "value": "v"}`}},
	}
	for _, tc := range tests {
		got, err := parseSpec(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got)
	}
	for _, bad := range []string{"", "70 GET", "x GET http://127.0.0.1/", "0 GET http://127.0.0.1/", "-1 GET http://127.0.0.1/"} {
		_, err := parseSpec(bad)
		assert.Error(t, err, bad)
	}
}

func TestParseRun(t *testing.T) {
	cfg, out, err := parseRun([]string{"-c", "8", "-z", "3s", "-q", "100", "-d", `{"key":"{n}"}`,
		"-H", "X-A: 1", "http://127.0.0.1:8000/write", "-o", "json", "-H", "X-B: 2"})
	require.NoError(t, err)
	assert.Equal(t, "json", out)
	assert.Equal(t, 8, cfg.Concurrency)
	assert.Equal(t, 3*time.Second, cfg.Duration)
	assert.Equal(t, 100.0, cfg.Rate)
	assert.Equal(t, []string{"X-A: 1", "X-B: 2"}, cfg.Headers)
	assert.Equal(t, []loadgen.Spec{{Weight: 1, Method: "POST", URL: "http://127.0.0.1:8000/write", Body: `{"key":"{n}"}`}}, cfg.Specs,
		"a body makes the default method POST")

	cfg, _, err = parseRun([]string{"-n", "10", "-spec", "7 GET http://127.0.0.1:1/a", "-spec", "3 PUT http://127.0.0.1:1/b x"})
	require.NoError(t, err)
	assert.Len(t, cfg.Specs, 2)
	assert.Equal(t, 50, cfg.Concurrency, "default concurrency")

	for _, args := range [][]string{
		{"-z", "1s"},          // no URL
		{"http://127.0.0.1/"}, // neither -n nor -z
		{"-n", "1", "http://127.0.0.1/", "http://127.0.0.1/"}, // two URLs
		{"-n", "1", "-spec", "1 GET http://127.0.0.1/", "http://127.0.0.1/"},
		{"-n", "1", "-o", "xml", "http://127.0.0.1/"},
		{"-n", "1", "http://192.168.0.1/"},
		{"-n", "10000001", "http://127.0.0.1/"},
		{"-z", "11m", "http://127.0.0.1/"},
		{"-bogus", "http://127.0.0.1/"},
	} {
		_, _, err := parseRun(args)
		assert.Error(t, err, "%q", args)
	}
}

func TestRunLoadJSON(t *testing.T) {
	srv := httptest.NewServer(loadgen.CeilingHandler())
	t.Cleanup(srv.Close)
	var out strings.Builder
	require.NoError(t, runLoad(context.Background(), []string{"-c", "2", "-n", "20", "-o", "json", srv.URL + "/read/x"}, &out))
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(out.String()), &got), out.String())
	assert.EqualValues(t, 20, got["requests"])
	assert.EqualValues(t, 0, got["errors"])
	assert.Equal(t, map[string]any{"200": 20.0}, got["status_codes"])
	for _, k := range []string{"rps", "avg_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "duration_s"} {
		assert.Contains(t, got, k)
	}
}
