package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingServer counts requests by path and remembers write bodies' keys.
type countingServer struct {
	*httptest.Server
	total atomic.Int64
	mu    sync.Mutex
	paths map[string]int
	keys  map[string]int
	types map[string]int
}

func newCountingServer(t *testing.T) *countingServer {
	t.Helper()
	s := &countingServer{paths: map[string]int{}, keys: map[string]int{}, types: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct{ Key string }
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		s.paths[r.Method+" "+r.URL.Path]++
		if req.Key != "" {
			s.keys[req.Key]++
			s.types[r.Header.Get("Content-Type")]++
		}
		s.mu.Unlock()
		s.total.Add(1)
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = io.WriteString(w, CeilingBody)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestRunCountsEveryRequest(t *testing.T) {
	srv := newCountingServer(t)
	res, err := Run(context.Background(), Config{
		Specs:       []Spec{{Weight: 1, Method: "POST", URL: srv.URL + "/write", Body: `{"key":"k{n}","value":"v{n}"}`}},
		Concurrency: 8, Requests: 500, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	assert.Equal(t, uint64(500), res.Total.Requests())
	assert.Equal(t, int64(500), srv.total.Load(), "the server got exactly the requests reported")
	assert.Equal(t, map[int]uint64{200: 500}, res.Total.Status)
	assert.Zero(t, res.Total.ErrorCount())
	assert.Len(t, srv.keys, 500, "{n} gives every write its own key")
	assert.Equal(t, map[string]int{"application/json": 500}, srv.types)
	assert.Equal(t, uint64(500), res.Total.Latency.Count())
	assert.Positive(t, res.Total.Latency.Quantile(0.5))
	assert.Positive(t, res.Elapsed)
	assert.False(t, res.Interrupted)
}

func TestRunDurationAndWarmup(t *testing.T) {
	srv := newCountingServer(t)
	res, err := Run(context.Background(), Config{
		Specs:       []Spec{{Weight: 1, URL: srv.URL + "/read/k{key:100}"}},
		Concurrency: 4, Duration: 200 * time.Millisecond, Warmup: 300 * time.Millisecond, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	measured := res.Total.Requests()
	require.Positive(t, measured)
	assert.Greater(t, srv.total.Load(), int64(measured), "warm-up requests were sent but not counted")
	assert.GreaterOrEqual(t, res.Elapsed, 200*time.Millisecond)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for p := range srv.paths {
		assert.Regexp(t, `^GET /read/k\d\d?$`, p)
	}
}

func TestRunMix(t *testing.T) {
	srv := newCountingServer(t)
	res, err := Run(context.Background(), Config{
		Specs: []Spec{
			{Weight: 70, Method: "GET", URL: srv.URL + "/read/hot"},
			{Weight: 30, Method: "POST", URL: srv.URL + "/write", Body: `{"key":"w{n}"}`},
			{Weight: 10, Method: "GET", URL: srv.URL + "/missing"},
		},
		Concurrency: 6, Requests: 2000, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	require.Len(t, res.Specs, 3)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	assert.Equal(t, int64(2000), srv.total.Load())
	assert.Equal(t, uint64(srv.paths["GET /read/hot"]), res.Specs[0].Requests())
	assert.Equal(t, uint64(srv.paths["POST /write"]), res.Specs[1].Requests())
	assert.Equal(t, uint64(srv.paths["GET /missing"]), res.Specs[2].Requests())
	assert.Equal(t, map[int]uint64{404: res.Specs[2].Requests()}, res.Specs[2].Status)
	assert.Equal(t, res.Specs[2].Requests(), res.Total.Non2xx())
	// 70/110 of 2000 is 1273; 4 standard deviations are about 86.
	assert.InDelta(t, 1273, float64(res.Specs[0].Requests()), 150)
	assert.InDelta(t, 545, float64(res.Specs[1].Requests()), 150)

	j := res.JSON()
	assert.Equal(t, uint64(2000), j.Requests)
	assert.Len(t, j.Specs, 3)
	assert.Equal(t, res.Specs[2].Requests(), j.StatusCode["404"])
}

func TestRunRateLimit(t *testing.T) {
	srv := newCountingServer(t)
	const rate = 200.0
	start := time.Now()
	res, err := Run(context.Background(), Config{
		Specs:       []Spec{{Weight: 1, URL: srv.URL + "/read/hot"}},
		Concurrency: 20, Duration: 500 * time.Millisecond, Rate: rate, Timeout: 5 * time.Second,
	})
	elapsed := time.Since(start)
	require.NoError(t, err)
	got := srv.total.Load()
	// The pacer lets at most rate·T+1 requests start in T seconds. Unlimited, this server
	// answers thousands per second.
	assert.LessOrEqual(t, float64(got), rate*elapsed.Seconds()+1, "requests in %v", elapsed)
	assert.Positive(t, got)
	assert.Equal(t, uint64(got), res.Total.Requests())
}

func TestRunErrors(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	res, err := Run(context.Background(), Config{
		Specs:       []Spec{{Weight: 1, URL: slow.URL + "/"}},
		Concurrency: 2, Requests: 4, Timeout: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"timeout": 4}, res.Total.Errors)
	assert.Zero(t, res.Total.Responses())

	closed := httptest.NewServer(nil)
	url := closed.URL
	closed.Close()
	res, err = Run(context.Background(), Config{
		Specs:       []Spec{{Weight: 1, URL: url + "/"}},
		Concurrency: 1, Requests: 3, Timeout: time.Second,
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"connection refused": 3}, res.Total.Errors)
	var text strings.Builder
	require.NoError(t, res.WriteText(&text))
	assert.Contains(t, text.String(), "[3] connection refused")
}

func TestRunInterrupted(t *testing.T) {
	srv := newCountingServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, Config{
		Specs:       []Spec{{Weight: 1, URL: srv.URL + "/read/hot"}},
		Concurrency: 2, Duration: time.Minute, Timeout: time.Second,
	})
	require.NoError(t, err)
	assert.True(t, res.Interrupted)
	assert.Less(t, res.Elapsed, time.Minute)
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Specs: []Spec{{Weight: 1, URL: "http://127.0.0.1:8000/read/x"}}, Concurrency: 50,
		Duration: 10 * time.Second, Timeout: time.Second}
	require.NoError(t, ok.Validate())
	tests := []struct {
		name  string
		edit  func(*Config)
		error string
	}{
		{"not loopback", func(c *Config) { c.Specs[0].URL = "http://10.0.0.1:8000/x" }, "only loopback targets are allowed"},
		{"name not loopback", func(c *Config) { c.Specs[0].URL = "http://example.com/x" }, "only loopback targets are allowed"},
		{"template in host", func(c *Config) { c.Specs[0].URL = "http://127.0.0.{n}/x" }, "host"},
		{"user info", func(c *Config) { c.Specs[0].URL = "http://a@127.0.0.1/x" }, "bad URL"},
		{"no scheme", func(c *Config) { c.Specs[0].URL = "127.0.0.1:8000/x" }, "http://"},
		{"ftp", func(c *Config) { c.Specs[0].URL = "ftp://127.0.0.1/x" }, "http://"},
		{"no spec", func(c *Config) { c.Specs = nil }, "no target"},
		{"zero weight", func(c *Config) { c.Specs[0].Weight = 0 }, "weight"},
		{"bad method", func(c *Config) { c.Specs[0].Method = "GE T" }, "method"},
		{"bad key space", func(c *Config) { c.Specs[0].Body = "{key:0}" }, "key"},
		{"neither n nor z", func(c *Config) { c.Duration = 0 }, "-n"},
		{"both n and z", func(c *Config) { c.Requests = 10 }, "not both"},
		{"too many requests", func(c *Config) { c.Duration, c.Requests = 0, MaxRequests+1 }, "at most"},
		{"too long", func(c *Config) { c.Duration = MaxDuration + time.Second }, "at most"},
		{"no workers", func(c *Config) { c.Concurrency = 0 }, "concurrency"},
		{"too many workers", func(c *Config) { c.Concurrency = MaxConcurrency + 1 }, "concurrency"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "rate"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"bad header", func(c *Config) { c.Headers = []string{"no colon"} }, "header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Specs = []Spec{ok.Specs[0]}
			tc.edit(&c)
			assert.ErrorContains(t, c.Validate(), tc.error)
		})
	}
	// The largest allowed values pass.
	c := ok
	c.Duration, c.Requests = 0, MaxRequests
	assert.NoError(t, c.Validate())
	c.Requests, c.Duration = 0, MaxDuration
	assert.NoError(t, c.Validate())
}

func TestHeadersAndHost(t *testing.T) {
	var got http.Header
	var host string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got, host = r.Header.Clone(), r.Host
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	_, err := Run(context.Background(), Config{
		Specs:       []Spec{{Weight: 1, Method: "post", URL: srv.URL + "/w", Body: "x"}},
		Headers:     []string{"X-API-Key: secret", "Host: layer.test", "Content-Type: text/plain"},
		ContentType: "application/json",
		Concurrency: 1, Requests: 1, Timeout: time.Second,
	})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "secret", got.Get("X-API-Key"))
	assert.Equal(t, "text/plain", got.Get("Content-Type"), "-H wins over -T")
	assert.Equal(t, "layer.test", host)
	assert.Empty(t, got.Get("Accept-Encoding"), "no compression")
}

func TestCeilingHandler(t *testing.T) {
	srv := httptest.NewServer(CeilingHandler())
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/write", "application/json", strings.NewReader(`{"key":"k"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.JSONEq(t, CeilingBody, string(body))
	assert.InDelta(t, 130, len(body), 20)
}

// A request must leave in one write, headers and body together, as real clients send small
// requests: a body in a packet of its own costs the server under test a second read. The
// server here answers from what its first read returned; split in two writes, that read
// usually holds the headers only.
func TestRunSendsRequestInOneWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	first := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			first <- ""
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		n, _ := conn.Read(buf)
		first <- string(buf[:n])
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	}()
	res, err := Run(context.Background(), Config{
		Specs:       []Spec{{Weight: 1, Method: "POST", URL: "http://" + ln.Addr().String() + "/write", Body: `{"key":"k{n}","value":"v{n}"}`}},
		Concurrency: 1, Requests: 1, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	assert.Equal(t, map[int]uint64{200: 1}, res.Total.Status)
	got := <-first
	assert.True(t, strings.HasPrefix(got, "POST /write HTTP/1.1\r\n"), got)
	assert.True(t, strings.HasSuffix(got, "\r\n\r\n"+`{"key":"k0","value":"v0"}`), "the first read holds the whole request: %q", got)
}
