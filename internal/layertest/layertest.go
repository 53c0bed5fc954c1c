// Package layertest is the black-box HTTP suite that every layer passes: the common
// contract of README.md's "Run it" (write, read, not-found as 200, health, stats), bad input that must
// get a clear 4xx and change nothing, and concurrent clients whose last acknowledged
// writes must be what is stored. A layer's own tests call Run with its URL and add the
// tests of what only that layer does.
package layertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Target describes the layer under test.
type Target struct {
	URL          string      // base URL, e.g. an httptest.Server's
	Layer        string      // the health "layer" string, e.g. "0-single-db"
	WriteMessage string      // the message of a successful write
	Headers      http.Header // sent with every request (e.g. L10's API key)
	// Settle is called after writes and before reads that must see them; layers whose
	// writes become visible asynchronously (write buffering, CQRS) make it wait.
	Settle func(t testing.TB)
	// Rows counts the records the layer stores, to show bad input stored nothing.
	Rows func(t testing.TB) int
	// NoTimestamps says the layer's reads carry no created_at/updated_at (L9, as in the
	// original); every other layer must return them.
	NoTimestamps bool
}

// Client is a small JSON client for one layer.
type Client struct {
	t       testing.TB
	base    string
	headers http.Header
	http    *http.Client
}

// NewClient returns a client for tg.
func NewClient(t testing.TB, tg Target) *Client {
	return &Client{t: t, base: tg.URL, headers: tg.Headers, http: &http.Client{Timeout: 30 * time.Second}}
}

// Response is a decoded answer.
type Response struct {
	Status int
	Body   map[string]any
	Raw    []byte
	Header http.Header
}

// Do sends a request with an optional raw body and decodes a JSON object answer.
func (c *Client) Do(method, path string, body []byte) Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range c.headers {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	r := Response{Status: resp.StatusCode, Raw: raw, Header: resp.Header}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

// Write posts {"key","value"}.
func (c *Client) Write(key, value string) Response {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"key": key, "value": value})
	return c.Do(http.MethodPost, "/write", body)
}

// MustWrite posts and requires a 200 with success true.
func (c *Client) MustWrite(key, value string) Response {
	c.t.Helper()
	r := c.Write(key, value)
	require.Equal(c.t, http.StatusOK, r.Status, "write %q: %s", key, r.Raw)
	require.Equal(c.t, true, r.Body["success"], "write %q: %s", key, r.Raw)
	return r
}

// Read gets /read/{key}, escaping the key.
func (c *Client) Read(key string) Response {
	c.t.Helper()
	return c.Do(http.MethodGet, "/read/"+url.PathEscape(key), nil)
}

// Get gets a path.
func (c *Client) Get(path string) Response {
	c.t.Helper()
	return c.Do(http.MethodGet, path, nil)
}

func settle(t testing.TB, tg Target) {
	if tg.Settle != nil {
		tg.Settle(t)
	}
}

// Run runs the common suite against tg. Keys are unique per run, so it can share a
// database with other tests.
//
// The subtests whose keys are their own run in parallel, after the parent test's function
// returns. Three run first, one at a time: "bad input" counts every stored row, and the
// two with 100 concurrent clients would, side by side, double the connections a layer
// opens (L0 opens one per request).
func Run(t *testing.T, tg Target) {
	prefix := fmt.Sprintf("lt%d-", time.Now().UnixNano())
	key := func(t *testing.T, k string) string { return prefix + strings.ReplaceAll(t.Name(), "/", ".") + "-" + k }
	parallel := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t)
		})
	}

	parallel("health", func(t *testing.T) {
		r := NewClient(t, tg).Get("/health")
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.Equal(t, "healthy", r.Body["status"])
		assert.Equal(t, tg.Layer, r.Body["layer"])
	})
	parallel("stats", func(t *testing.T) {
		r := NewClient(t, tg).Get("/cache-stats")
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.NotEmpty(t, r.Body)
	})
	parallel("write new record", func(t *testing.T) {
		c, k := NewClient(t, tg), key(t, "k")
		r := c.MustWrite(k, "v")
		assert.Equal(t, k, r.Body["key"])
		if tg.WriteMessage != "" {
			assert.Equal(t, tg.WriteMessage, r.Body["message"])
		}
	})
	parallel("read existing record", func(t *testing.T) {
		c, k := NewClient(t, tg), key(t, "k")
		c.MustWrite(k, "v")
		settle(t, tg)
		r := c.Read(k)
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.Equal(t, true, r.Body["success"])
		assert.Equal(t, k, r.Body["key"])
		assert.Equal(t, "v", r.Body["value"])
		assert.Nil(t, r.Body["message"])
		if !tg.NoTimestamps {
			assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`, r.Body["created_at"])
			assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`, r.Body["updated_at"])
		}
	})
	parallel("read missing key is 200 with success false", func(t *testing.T) {
		c, k := NewClient(t, tg), key(t, "missing")
		r := c.Read(k)
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.Equal(t, false, r.Body["success"])
		assert.Equal(t, k, r.Body["key"])
		assert.Nil(t, r.Body["value"])
		assert.Contains(t, strings.ToLower(fmt.Sprint(r.Body["message"])), "not found")
	})
	parallel("update existing record", func(t *testing.T) {
		c, k := NewClient(t, tg), key(t, "k")
		c.MustWrite(k, "v1")
		settle(t, tg)
		c.Read(k) // may fill a cache
		c.MustWrite(k, "v2")
		settle(t, tg)
		assert.Equal(t, "v2", c.Read(k).Body["value"])
	})
	parallel("multiple records", func(t *testing.T) {
		c := NewClient(t, tg)
		for i := range 3 {
			c.MustWrite(key(t, fmt.Sprint(i)), fmt.Sprint("value", i))
		}
		settle(t, tg)
		for i := range 3 {
			assert.Equal(t, fmt.Sprint("value", i), c.Read(key(t, fmt.Sprint(i))).Body["value"])
		}
	})
	parallel("values round-trip", func(t *testing.T) {
		c := NewClient(t, tg)
		values := map[string]string{
			"empty":   "",
			"large":   strings.Repeat("x", 10_000),
			"special": "Special chars: !@#$%^&*()_+-=[]{}|;':\",./<>? 测试数据 🚀",
			"sql":     "'); DROP TABLE records; --",
		}
		for name, v := range values {
			c.MustWrite(key(t, name), v)
		}
		settle(t, tg)
		for name, v := range values {
			r := c.Read(key(t, name))
			assert.Equal(t, true, r.Body["success"], name)
			assert.Equal(t, v, r.Body["value"], name)
		}
	})
	parallel("keys with spaces, unicode and SQL read back through the path", func(t *testing.T) {
		c := NewClient(t, tg)
		keys := []string{key(t, "key with space"), key(t, "ключ-测试-🔑"), key(t, "x' OR '1'='1"), key(t, "a%2Fb?c#d")}
		for i, k := range keys {
			c.MustWrite(k, fmt.Sprint("v", i))
		}
		settle(t, tg)
		for i, k := range keys {
			r := c.Read(k)
			assert.Equal(t, fmt.Sprint("v", i), r.Body["value"], k)
			assert.Equal(t, k, r.Body["key"])
		}
	})
	timestamps := func(t *testing.T) {
		c, k := NewClient(t, tg), key(t, "k")
		c.MustWrite(k, "v1")
		settle(t, tg)
		first := c.Read(k)
		require.NotNil(t, first.Body["created_at"], "%s", first.Raw)
		c.MustWrite(k, "v2")
		settle(t, tg)
		second := c.Read(k)
		assert.Equal(t, first.Body["created_at"], second.Body["created_at"])
		assert.Greater(t, fmt.Sprint(second.Body["updated_at"]), fmt.Sprint(first.Body["updated_at"]))
	}
	if !tg.NoTimestamps {
		parallel("timestamps: created_at kept, updated_at moves", timestamps)
	}
	t.Run("bad input gets a 4xx and stores nothing", func(t *testing.T) { badInput(t, tg, key(t, "bad")) })
	parallel("unknown route 404, wrong method 405", func(t *testing.T) {
		c := NewClient(t, tg)
		r := c.Get("/no-such-route")
		assert.Equal(t, http.StatusNotFound, r.Status)
		assert.Equal(t, "Not Found", r.Body["detail"])
		r = c.Get("/write")
		assert.Equal(t, http.StatusMethodNotAllowed, r.Status)
		assert.Equal(t, "Method Not Allowed", r.Body["detail"])
	})
	parallel("responses carry a request id", func(t *testing.T) {
		r := NewClient(t, tg).Get("/health")
		assert.NotEmpty(t, r.Header.Get("X-Request-Id"))
	})
	t.Run("100 concurrent clients on one key", func(t *testing.T) { concurrentOneKey(t, tg, key(t, "hot")) })
	t.Run("100 concurrent clients on many keys", func(t *testing.T) { concurrentManyKeys(t, tg, key(t, "")) })
}

func badInput(t *testing.T, tg Target, k string) {
	c := NewClient(t, tg)
	before := -1
	if tg.Rows != nil {
		before = tg.Rows(t)
	}
	longValue := strings.Repeat("v", 2<<20)
	cases := []struct {
		name   string
		body   string
		status int
	}{
		{"malformed JSON", `{"key": "` + k + `", "value": `, 422},
		{"not an object", `["` + k + `", "v"]`, 422},
		{"value is a number", `{"key": "` + k + `", "value": 42}`, 422},
		{"value is null", `{"key": "` + k + `", "value": null}`, 422},
		{"key is a bool", `{"key": true, "value": "v"}`, 422},
		{"missing value", `{"key": "` + k + `"}`, 422},
		{"missing key", `{"value": "v"}`, 422},
		{"empty body", ``, 422},
		{"empty key", `{"key": "", "value": "v"}`, 422},
		{"256-character key", `{"key": "` + strings.Repeat("k", 256) + `", "value": "v"}`, 422},
		{"key with slash", `{"key": "a/b", "value": "v"}`, 422},
		{"key with newline", `{"key": "a\nb", "value": "v"}`, 422},
		{"key with NUL", `{"key": "a\u0000b", "value": "v"}`, 422},
		{"value with NUL", `{"key": "` + k + `", "value": "a\u0000b"}`, 422},
		{"value over the limit", `{"key": "` + k + `", "value": "` + strings.Repeat("v", 1<<20+1) + `"}`, 413},
		{"body over the limit", `{"key": "` + k + `", "value": "` + longValue + `"}`, 413},
	}
	for _, tc := range cases {
		r := c.Do(http.MethodPost, "/write", []byte(tc.body))
		assert.Equal(t, tc.status, r.Status, "%s: %s", tc.name, truncate(r.Raw))
		assert.NotNil(t, r.Body["detail"], "%s: a clear error detail", tc.name)
		if tc.status == 422 {
			if items, ok := r.Body["detail"].([]any); assert.True(t, ok, tc.name) && assert.NotEmpty(t, items, tc.name) {
				item, _ := items[0].(map[string]any)
				assert.NotEmpty(t, item["msg"], tc.name)
				assert.NotEmpty(t, item["loc"], tc.name)
			}
		}
	}
	// A 255-character unicode key is the longest allowed: accepted.
	longest := strings.Repeat("é", 255)
	c.MustWrite(longest, "v")
	settle(t, tg)
	assert.Equal(t, "v", c.Read(longest).Body["value"])

	r := c.Get("/read/" + url.PathEscape(strings.Repeat("k", 256)))
	assert.Equal(t, 422, r.Status, "a 256-character key in the path")
	r = c.Get("/read/a%0Ab")
	assert.Equal(t, 422, r.Status, "a control character in the path")

	settle(t, tg)
	r = c.Read(k)
	assert.Equal(t, false, r.Body["success"], "nothing was stored under %q", k)
	if tg.Rows != nil {
		assert.Equal(t, before+1, tg.Rows(t), "only the valid 255-character key was stored")
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// acked is one acknowledged write: its value and the interval in which it happened.
type acked struct {
	value      string
	start, end time.Time
}

// concurrentOneKey has 100 clients write one key at once. Every write must be
// acknowledged, and the final value must be a write that nothing started after: the last
// acknowledged write in any order consistent with real time (a linearizable register).
func concurrentOneKey(t *testing.T, tg Target, k string) {
	const clients, perClient = 100, 3
	var (
		mu    sync.Mutex
		acks  []acked
		fails []string
		wg    sync.WaitGroup
	)
	for i := range clients {
		wg.Go(func() {
			c := NewClient(t, tg)
			for j := range perClient {
				v := fmt.Sprintf("c%d-w%d", i, j)
				start := time.Now()
				r := c.Write(k, v)
				end := time.Now()
				mu.Lock()
				if r.Status == http.StatusOK {
					acks = append(acks, acked{v, start, end})
				} else {
					fails = append(fails, fmt.Sprintf("%d %s", r.Status, r.Raw))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Empty(t, fails, "every concurrent write is acknowledged")
	settle(t, tg)
	final := NewClient(t, tg).Read(k).Body["value"]
	var w *acked
	for i := range acks {
		if acks[i].value == final {
			w = &acks[i]
		}
	}
	require.NotNil(t, w, "the final value %v is one of the acknowledged writes", final)
	for _, other := range acks {
		assert.False(t, other.start.After(w.end), "write %s started after %s was acknowledged, yet %s is stored", other.value, w.value, w.value)
	}
}

// concurrentManyKeys has 100 clients each write their own key several times at once; each
// key must end with its client's last write, and every read must answer 200.
func concurrentManyKeys(t *testing.T, tg Target, prefix string) {
	const clients, perClient = 100, 3
	var wg sync.WaitGroup
	statuses := make(chan int, clients*(perClient+1))
	for i := range clients {
		wg.Go(func() {
			c := NewClient(t, tg)
			k := fmt.Sprint(prefix, i)
			for j := range perClient {
				statuses <- c.Write(k, fmt.Sprintf("v%d-%d", i, j)).Status
			}
			statuses <- c.Read(k).Status
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		require.Equal(t, http.StatusOK, s)
	}
	settle(t, tg)
	c := NewClient(t, tg)
	for i := range clients {
		assert.Equal(t, fmt.Sprintf("v%d-%d", i, perClient-1), c.Read(fmt.Sprint(prefix, i)).Body["value"])
	}
}
