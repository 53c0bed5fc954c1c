package l10_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/auth"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/config"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/metrics/metricstest"
	"github.com/dblayers/dblayers/internal/ratelimit"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l10"
)

const (
	testKey   = "tester-key-0123456789abcdef"
	otherKey  = "other-key-0123456789abcdef"
	jwtSecret = "l10-test-secret-0123456789abcdef0123456789"
)

// fixture is one L10 in this process over its own shard databases and Redis databases.
type fixture struct {
	svc        *l10.Service
	tg         layertest.Target // with a valid API key
	anon       layertest.Target // without credentials
	shardURLs  []string
	l2URL      string
	limiterURL string
}

// start runs an L10 on fresh databases, with two API keys ("tester" and "other"), a
// limit high enough for any test that is not about it, and opts applied last.
func start(t *testing.T, opts ...func(*l10.Config)) *fixture {
	t.Helper()
	f := &fixture{
		shardURLs: []string{testenv.PostgresURL(t), testenv.PostgresURL(t)},
		l2URL:     testenv.RedisURL(t), limiterURL: testenv.RedisURL(t),
	}
	return f.another(t, opts...)
}

// configure sets an L10's configuration to f's backends: two API keys, a limit no test
// reaches unless it sets one, then opts.
func (f *fixture) configure(opts ...func(*l10.Config)) func(*l10.Config) {
	return func(cfg *l10.Config) {
		cfg.Shard1URL, cfg.Shard2URL = f.shardURLs[0], f.shardURLs[1]
		cfg.CacheL2URL, cfg.RateLimiterURL = f.l2URL, f.limiterURL
		cfg.Environment = "test"
		cfg.Auth = auth.Config{Enabled: true, APIKeys: []string{"tester:" + testKey, "other:" + otherKey}}
		cfg.RateLimitRequests, cfg.RateLimitWindow = 1_000_000, time.Minute
		for _, o := range opts {
			o(cfg)
		}
	}
}

// another runs a second L10 (its own L1, metrics and breakers) on f's backends.
func (f *fixture) another(t *testing.T, opts ...func(*l10.Config)) *fixture {
	t.Helper()
	srv := layertest.Serve(t, l10.New, f.configure(opts...))
	g := *f
	g.svc = srv.Service
	g.tg = layertest.Target{
		URL: srv.URL, Layer: l10.Layer, Headers: http.Header{"X-Api-Key": {testKey}},
		Rows: func(t testing.TB) int {
			return layertest.CountRows(t, f.shardURLs[0], "records") + layertest.CountRows(t, f.shardURLs[1], "records")
		},
	}
	g.anon = layertest.Target{URL: srv.URL, Layer: l10.Layer}
	awaitSubscribed(t, g.client(t))
	return &g
}

func (f *fixture) client(t *testing.T) *layertest.Client { return layertest.NewClient(t, f.tg) }

// awaitSubscribed waits until c's instance gets other instances' invalidations: until then
// its L1 entries are short-lived, and the subscription clears L1 when it comes up, so every
// instance a test starts waits for it (another) before the test looks at what L1 answers.
func awaitSubscribed(t *testing.T, c *layertest.Client) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "the invalidation subscription", func() bool {
		stats, _ := c.Get("/stats").Body["cache"].(map[string]any)
		return stats["l1_invalidation_subscribed"] == true
	})
}

// as is a client sending these headers instead of the test key.
func (f *fixture) as(t *testing.T, headers ...string) *layertest.Client {
	tg := f.anon
	tg.Headers = http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		tg.Headers.Set(headers[i], headers[i+1])
	}
	return layertest.NewClient(t, tg)
}

// keyOn returns the first key prefix0, prefix1, … that lives on the named shard.
func keyOn(t testing.TB, svc *l10.Service, shard, prefix string) string {
	t.Helper()
	for i := range 1000 { // each key is on either shard with probability 1/2
		if k := fmt.Sprint(prefix, i); svc.Owner(k) == shard {
			return k
		}
	}
	t.Fatalf("no key %s0…%s999 on %s", prefix, prefix, shard)
	return ""
}

func TestContract(t *testing.T) {
	f := start(t)
	f.tg.WriteMessage = "" // names the shard: checked in TestOriginal
	layertest.Run(t, f.tg)
}

// TestOriginal holds the Go counterparts of the original's 11 L10 tests, by their names.
// Where the original only checked configuration (the rate limiter, which could never
// trigger), the real behaviour is tested below as well.
func TestOriginal(t *testing.T) {
	f := start(t)

	t.Run("test_health", func(t *testing.T) {
		r := f.client(t).Get("/health")
		require.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.Equal(t, "healthy", r.Body["status"])
		assert.Equal(t, l10.Layer, r.Body["layer"])
		assert.Equal(t, "test", r.Body["environment"])
		assert.Equal(t, map[string]any{"shard1": true, "shard2": true}, r.Body["shards_healthy"])
		assert.Equal(t, map[string]any{"L1": true, "L2": true}, r.Body["caches_healthy"])
		assert.Equal(t, true, r.Body["rate_limiter_healthy"])
		assert.Equal(t, map[string]any{"shard1": "closed", "shard2": "closed", "redis_cache": "closed", "redis_rate_limiter": "closed"}, r.Body["circuit_breakers"])
	})
	t.Run("test_authentication_required", func(t *testing.T) {
		r := f.as(t).Write("auth_test", "v")
		assert.Equal(t, http.StatusUnauthorized, r.Status)
		assert.Equal(t, map[string]any{"detail": "Invalid API key"}, r.Body)
		_, ok := layertest.StoredValue(t, f.shardURLs[0], "auth_test")
		assert.False(t, ok, "nothing stored")
	})
	t.Run("test_write_with_auth", func(t *testing.T) {
		r := f.client(t).MustWrite("test1", "value1")
		assert.Equal(t, map[string]any{"success": true, "key": "test1", "shard": "shard1", "cached": true,
			"message": "Written to shard1 and cached"}, r.Body)
		v, ok := layertest.StoredValue(t, f.shardURLs[0], "test1")
		assert.True(t, ok)
		assert.Equal(t, "value1", v)
	})
	t.Run("test_read_with_cache", func(t *testing.T) {
		c := f.client(t)
		c.MustWrite("cache_test", "cached_value")
		for range 2 { // the write filled both tiers: L1 answers
			r := c.Read("cache_test")
			assert.Equal(t, "cached_value", r.Body["value"])
			assert.Equal(t, true, r.Body["cache_hit"])
			assert.Equal(t, "L1", r.Body["cache_level"])
			assert.Nil(t, r.Body["shard"], "a cache answered")
		}
		// Another instance (its own L1) finds it in L2, then in its L1.
		gc := f.another(t).client(t)
		for _, level := range []string{"L2", "L1"} {
			r := gc.Read("cache_test")
			assert.Equal(t, "cached_value", r.Body["value"])
			assert.Equal(t, level, r.Body["cache_level"])
		}
	})
	t.Run("test_database_sharding", func(t *testing.T) {
		c := f.client(t)
		shards := map[string]int{}
		for i := range 10 {
			r := c.MustWrite(fmt.Sprint("shard_test_", i), "v")
			shards[r.Body["shard"].(string)]++
		}
		assert.Equal(t, map[string]int{"shard1": 6, "shard2": 4}, shards, "the original's md5 mod 2")
		// The reference placements, and each row on its owner only.
		for key, want := range map[string]string{"a": "shard2", "test1": "shard1", "auth_test": "shard1",
			"cache_test": "shard1", "flow_test": "shard2", "test_key": "shard2", "user:123": "shard2",
			"key2": "shard1", "key1": "shard2"} {
			assert.Equal(t, want, f.svc.Owner(key), key)
		}
		c.MustWrite("user:123", "alice")
		_, on2 := layertest.StoredValue(t, f.shardURLs[1], "user:123")
		_, on1 := layertest.StoredValue(t, f.shardURLs[0], "user:123")
		assert.True(t, on2)
		assert.False(t, on1)
	})
	t.Run("test_rate_limiting", func(t *testing.T) {
		r := f.client(t).Get("/stats")
		require.Equal(t, http.StatusOK, r.Status)
		rl := r.Body["rate_limiting"].(map[string]any)
		assert.Equal(t, true, rl["enabled"])
		assert.Equal(t, 1_000_000.0, rl["max_requests"])
		assert.Equal(t, 60.0, rl["window_seconds"])
		assert.Equal(t, true, r.Body["features"].(map[string]any)["rate_limiting"])
		// That the limit triggers: TestRateLimit.
	})
	t.Run("test_circuit_breaker_info", func(t *testing.T) {
		r := f.client(t).Get("/stats")
		assert.Equal(t, map[string]any{"shard1": "closed", "shard2": "closed", "redis_cache": "closed", "redis_rate_limiter": "closed"}, r.Body["circuit_breakers"])
		assert.Equal(t, true, r.Body["features"].(map[string]any)["circuit_breakers"])
	})
	t.Run("test_metrics_endpoint", func(t *testing.T) {
		r := f.as(t).Get("/metrics")
		require.Equal(t, http.StatusOK, r.Status, "open without a key")
		assert.Contains(t, string(r.Raw), "# HELP")
		assert.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain"), r.Header.Get("Content-Type"))
	})
	t.Run("test_stats_endpoint", func(t *testing.T) {
		r := f.as(t).Get("/stats")
		require.Equal(t, http.StatusOK, r.Status, "open without a key")
		shards := r.Body["shards"].(map[string]any)
		for _, name := range []string{"shard1", "shard2"} {
			s := shards[name].(map[string]any)
			assert.Equal(t, 2.0, s["pool_min"], name)
			assert.Equal(t, 20.0, s["pool_max"], name)
			for _, field := range []string{"pool_size", "pool_available", "requests_waiting"} {
				assert.Contains(t, s, field, name)
			}
		}
		c := r.Body["cache"].(map[string]any)
		assert.Equal(t, 1000.0, c["l1_maxsize"])
		assert.Contains(t, c, "l1_size")
		assert.Contains(t, c, "l2_keys")
		features := r.Body["features"].(map[string]any)
		assert.Equal(t, true, features["multi_tier_cache"])
		assert.Equal(t, true, features["database_sharding"])
		assert.Equal(t, true, features["authentication"])
		assert.Equal(t, true, features["metrics"])
	})
	t.Run("test_write_and_read_flow", func(t *testing.T) {
		c := f.client(t)
		c.MustWrite("flow_test", "flow_value")
		r := c.Read("flow_test")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, true, r.Body["success"])
		assert.Equal(t, "flow_value", r.Body["value"])
		latency, ok := r.Body["latency_ms"].(float64)
		assert.True(t, ok, "latency_ms is a number: %s", r.Raw)
		assert.GreaterOrEqual(t, latency, 0.0)
	})
	t.Run("test_not_found", func(t *testing.T) {
		r := f.client(t).Read("nonexistent_key_12345")
		require.Equal(t, http.StatusOK, r.Status)
		assert.Equal(t, map[string]any{"success": false, "key": "nonexistent_key_12345", "value": nil,
			"created_at": nil, "updated_at": nil, "message": "Key not found", "cache_hit": false,
			"cache_level": nil, "shard": nil, "latency_ms": nil}, r.Body)
	})
}

// The original read "" back as "Key not found" (truthiness checks); here an empty value
// is a value, from the shard, L2 and L1 alike.
func TestEmptyValueIsReadable(t *testing.T) {
	f := start(t)
	c := f.client(t)
	r := c.MustWrite("empty", "")
	assert.Equal(t, true, r.Body["cached"])
	r = c.Read("empty")
	assert.Equal(t, true, r.Body["success"])
	assert.Equal(t, "", r.Body["value"])
	assert.Equal(t, "L1", r.Body["cache_level"])
	r = f.another(t).client(t).Read("empty")
	assert.Equal(t, "", r.Body["value"])
	assert.Equal(t, "L2", r.Body["cache_level"])
}

// The three read answers: a shard's, L2's and L1's.
func TestReadAnswers(t *testing.T) {
	f := start(t)
	key := keyOn(t, f.svc, "shard2", "answers-")
	f.client(t).MustWrite(key, "v")
	rdb, err := redisclient.New(f.l2URL)
	require.NoError(t, err)
	defer rdb.Close()
	require.NoError(t, rdb.Del(context.Background(), cache.CacheKey(key)).Err())

	g := f.another(t) // its own L1, and L2 emptied: the shard answers
	c := g.client(t)
	r := c.Read(key)
	assert.Equal(t, "v", r.Body["value"])
	assert.Equal(t, false, r.Body["cache_hit"])
	assert.Nil(t, r.Body["cache_level"])
	assert.Equal(t, "shard2", r.Body["shard"])

	r = f.another(t).client(t).Read(key) // a third instance: L2, filled by g's read
	assert.Equal(t, true, r.Body["cache_hit"])
	assert.Equal(t, "L2", r.Body["cache_level"])
	assert.Nil(t, r.Body["shard"])

	r = c.Read(key) // g's L1
	assert.Equal(t, true, r.Body["cache_hit"])
	assert.Equal(t, "L1", r.Body["cache_level"])
	assert.Nil(t, r.Body["shard"])
	assert.Equal(t, []string{"success", "key", "value", "created_at", "updated_at", "message", "cache_hit", "cache_level", "shard", "latency_ms"},
		fieldOrder(t, r.Raw), "an L1 answer is the same document")
	assert.Equal(t, byte('\n'), r.Raw[len(r.Raw)-1])
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	_, ok := r.Body["latency_ms"].(float64)
	assert.True(t, ok, string(r.Raw))
}

// fieldOrder returns the top-level field names of a JSON object, in order.
func fieldOrder(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	_, err := dec.Token() // {
	require.NoError(t, err)
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		names = append(names, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return names
}

// The original's order: body and path validation (422), then authentication (401), then
// the rate limit (429).
func TestProcessingOrder(t *testing.T) {
	f := start(t, func(c *l10.Config) { c.RateLimitRequests, c.RateLimitWindow = 1, time.Hour })
	anon := f.as(t)
	r := anon.Do(http.MethodPost, "/write", []byte(`{"key": "k"}`))
	assert.Equal(t, http.StatusUnprocessableEntity, r.Status, "422 before 401: %s", r.Raw)
	r = anon.Get("/read/" + strings.Repeat("k", 256))
	assert.Equal(t, http.StatusUnprocessableEntity, r.Status)

	c := f.client(t)
	c.MustWrite("order", "v")                                           // the whole limit
	assert.Equal(t, http.StatusTooManyRequests, c.Read("order").Status) // then 429
	assert.Equal(t, http.StatusUnauthorized, f.as(t, "X-API-Key", "wrong-key-0123456789").Read("order").Status, "401 before 429")
	assert.Equal(t, http.StatusUnauthorized, anon.Read("order").Status)
	r = c.Do(http.MethodPost, "/write", []byte(`{"key": 1, "value": "v"}`))
	assert.Equal(t, http.StatusUnprocessableEntity, r.Status, "422 before 429")
	for _, path := range []string{"/health", "/stats", "/cache-stats", "/metrics"} {
		assert.Equal(t, http.StatusOK, c.Get(path).Status, "%s is open and not limited", path)
	}
}

func TestCredentials(t *testing.T) {
	f := start(t, func(c *l10.Config) { c.Auth.JWTSecret = jwtSecret })
	token := func(sub string, exp time.Duration, secret string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
			Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp)),
		}).SignedString([]byte(secret))
		require.NoError(t, err)
		return s
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{
		Subject: "svc", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	tests := []struct {
		name    string
		headers []string
		detail  string // "" = accepted
	}{
		{"API key", []string{"X-API-Key", testKey}, ""},
		{"another API key", []string{"X-API-Key", otherKey}, ""},
		{"wrong API key", []string{"X-API-Key", testKey + "x"}, "Invalid API key"},
		{"the development key outside development mode", []string{"X-API-Key", auth.DevAPIKey}, "Invalid API key"},
		{"missing credentials", nil, "Invalid API key"},
		{"a client id is no credential", []string{"X-Client-ID", "tester"}, "Invalid API key"},
		{"JWT", []string{"Authorization", "Bearer " + token("svc", time.Hour, jwtSecret)}, ""},
		{"expired JWT", []string{"Authorization", "Bearer " + token("svc", -time.Minute, jwtSecret)}, "Token expired"},
		{"JWT with the wrong secret", []string{"Authorization", "Bearer " + token("svc", time.Hour, jwtSecret+"x")}, "Invalid token"},
		{"unsigned JWT (alg none)", []string{"Authorization", "Bearer " + none}, "Invalid token"},
		{"malformed JWT", []string{"Authorization", "Bearer abc.def"}, "Invalid token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.as(t, tc.headers...)
			key := "cred-" + strings.ReplaceAll(tc.name, " ", "-")
			w, r := c.Write(key, "v"), c.Read(key)
			if tc.detail == "" {
				assert.Equal(t, http.StatusOK, w.Status, string(w.Raw))
				assert.Equal(t, "v", r.Body["value"])
				return
			}
			for _, resp := range []layertest.Response{w, r} {
				assert.Equal(t, http.StatusUnauthorized, resp.Status)
				assert.Equal(t, map[string]any{"detail": tc.detail}, resp.Body)
			}
			assert.Equal(t, false, f.client(t).Read(key).Body["success"], "nothing stored")
		})
	}
}

func TestRateLimit(t *testing.T) {
	// 5 an hour: a request comes back every 12 minutes, so nothing below depends on how fast
	// the machine runs it. The limit coming back as time passes is the limiter's own test
	// (internal/ratelimit).
	const limit, window = 5, time.Hour
	const interval = window / limit
	f := start(t, func(c *l10.Config) { c.RateLimitRequests, c.RateLimitWindow = limit, window })
	f.as(t, "X-API-Key", otherKey).MustWrite("rl", "v") // another identity's limit
	c := f.client(t)
	for i := 1; i <= limit; i++ {
		r := c.Read("rl")
		require.Equal(t, http.StatusOK, r.Status, "request %d of %d", i, limit)
		assert.Equal(t, fmt.Sprint(limit), r.Header.Get("X-RateLimit-Limit"))
		assert.Equal(t, fmt.Sprint(limit-i), r.Header.Get("X-RateLimit-Remaining"))
		// i intervals to earn back, less the time the test has taken so far.
		assertCountdownHeader(t, time.Duration(i)*interval, r.Header.Get("X-RateLimit-Reset"), "reset after request %d", i)
	}
	r := c.Read("rl")
	require.Equal(t, http.StatusTooManyRequests, r.Status, "request %d in the window", limit+1)
	retry := r.Header.Get("Retry-After")
	assertCountdownHeader(t, interval, retry, "Retry-After")
	assert.Equal(t, map[string]any{"detail": "Rate limit exceeded. Try again in " + retry + " seconds"}, r.Body)
	assert.Equal(t, "0", r.Header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, http.StatusTooManyRequests, c.Write("rl", "v2").Status, "writes share the limit")

	// The limit is the authenticated caller's: a new X-Client-ID does not help, another
	// key has its own.
	assert.Equal(t, http.StatusTooManyRequests, f.as(t, "X-API-Key", testKey, "X-Client-ID", "fresh").Read("rl").Status)
	assert.Equal(t, http.StatusOK, f.as(t, "X-API-Key", otherKey).Read("rl").Status)

	// The three refused requests did not count: the limit is whole again one window after
	// the first request, not three intervals later.
	d := peek(t, f, limit, window, "tester")
	assert.Equal(t, 0, d.Remaining)
	testenv.AssertCountdown(t, window, d.ResetAfter, "until the limit is whole")
	assert.Equal(t, "v", f.as(t, "X-API-Key", otherKey).Read("rl").Body["value"], "the refused write changed nothing")
}

// assertCountdownHeader is testenv.AssertCountdown for a header in whole seconds (rounded
// up).
func assertCountdownHeader(t *testing.T, want time.Duration, header string, msgAndArgs ...any) {
	t.Helper()
	n, err := strconv.Atoi(header)
	if assert.NoError(t, err, msgAndArgs...) {
		testenv.AssertCountdown(t, want, time.Duration(n)*time.Second, msgAndArgs...)
	}
}

// peek reads what the API key id may do now, without making a request, from the
// service's limiter Redis.
func peek(t *testing.T, f *fixture, limit int, window time.Duration, id string) ratelimit.Decision {
	t.Helper()
	rdb, err := redisclient.New(f.limiterURL)
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	l, err := ratelimit.New(rdb, ratelimit.Config{Requests: limit, Window: window, Prefix: l10.RateLimitPrefix}, nil)
	require.NoError(t, err)
	d, err := l.Peek(context.Background(), auth.Identity{Method: auth.MethodAPIKey, ID: id}.Key())
	require.NoError(t, err)
	return d
}

// Two instances share one limit, and concurrent requests cannot overshoot it.
func TestRateLimitIsSharedAndAtomic(t *testing.T) {
	const limit = 10
	cfg := func(c *l10.Config) { c.RateLimitRequests, c.RateLimitWindow = limit, time.Hour }
	f := start(t, cfg)
	g := f.another(t, cfg)
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		wg       sync.WaitGroup
	)
	for i := range 40 {
		target := f
		if i%2 == 1 {
			target = g
		}
		wg.Go(func() {
			s := target.client(t).Read("shared").Status
			mu.Lock()
			statuses[s]++
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, map[int]int{http.StatusOK: limit, http.StatusTooManyRequests: 40 - limit}, statuses)
}

// The limiter's Redis down: requests pass (fail open, the default) or get 503 (fail
// closed), and /health says so either way.
func TestRateLimiterDown(t *testing.T) {
	limiter := testenv.StartRedis(t)
	f := start(t, func(c *l10.Config) { c.RateLimiterURL = limiter.URL(0) })
	closed := f.another(t, func(c *l10.Config) { c.RateLimiterURL = limiter.URL(0); c.RateLimitFailOpen = false })
	f.client(t).MustWrite("limiter-down", "v")

	limiter.Stop(t)
	r := f.client(t).Get("/health")
	require.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, "degraded", r.Body["status"])
	assert.Equal(t, false, r.Body["rate_limiter_healthy"])
	assert.Equal(t, false, f.client(t).Get("/stats").Body["rate_limiting"].(map[string]any)["healthy"])

	layertest.AssertFastUnavailable(t, "fail closed", func() layertest.Response { return closed.client(t).Read("limiter-down") })
	assert.Equal(t, "Rate limiter unavailable", closed.client(t).Read("limiter-down").Body["detail"])
	start := time.Now()
	r = f.client(t).Read("limiter-down")
	assert.Equal(t, http.StatusOK, r.Status, "fail open")
	assert.Equal(t, "v", r.Body["value"])
	assert.Less(t, time.Since(start), layertest.FastFail)
	assert.Empty(t, r.Header.Get("X-RateLimit-Limit"), "no limit was applied")
	assert.Equal(t, http.StatusUnauthorized, f.as(t).Read("limiter-down").Status, "authentication still applies")
	v, _ := metricstest.Scrape(t, f.tg.URL+"/metrics").Value("rate_limiter_errors_total", nil)
	assert.GreaterOrEqual(t, v, 1.0)

	limiter.Start(t)
	testenv.WaitFor(t, 10*time.Second, "health to be healthy again", func() bool {
		return f.client(t).Get("/health").Body["status"] == "healthy"
	})
	assert.Equal(t, http.StatusOK, closed.client(t).Read("limiter-down").Status)
}

// A shard stopped: after CIRCUIT_BREAKER_THRESHOLD failures its breaker opens and its
// keys fail at once (under 50 ms) with 503, while the other shard and the caches keep
// serving; once the shard is back, a half-open probe closes the breaker.
func TestShardOutageOpensAndClosesTheBreaker(t *testing.T) {
	pg1 := testenv.StartPostgres(t, testenv.PGOptions{})
	f := &fixture{
		shardURLs: []string{pg1.CreateDatabase(t), testenv.PostgresURL(t)},
		l2URL:     testenv.RedisURL(t), limiterURL: testenv.RedisURL(t),
	}
	// Open for 15 s: long enough for every check below to see it open on a loaded machine.
	f = f.another(t, func(c *l10.Config) { c.BreakerThreshold, c.BreakerTimeout = 5, 15*time.Second })
	c := f.client(t)
	cached := keyOn(t, f.svc, "shard1", "cached-")
	other := keyOn(t, f.svc, "shard2", "other-")
	c.MustWrite(cached, "kept")
	c.MustWrite(other, "v")

	pg1.Stop(t)
	for i := range 5 {
		r := c.Read(keyOn(t, f.svc, "shard1", fmt.Sprintf("miss-%d-", i)))
		assert.Equal(t, http.StatusServiceUnavailable, r.Status, "failure %d: %s", i+1, r.Raw)
		assert.Equal(t, "shard1 unavailable", r.Body["detail"])
		layertest.AssertNoLeak(t, r)
	}
	require.Equal(t, "open", string(f.svc.Breaker("shard1")), "open after the threshold")

	// The bound is on the fastest of three tries: a try that went to the stopped database
	// would wait out its connect timeout, and one scheduling hiccup of a loaded machine
	// should not fail the test.
	fast := func(what string, send func() layertest.Response) {
		t.Helper()
		fastest := time.Hour
		for range 3 {
			began := time.Now()
			r := send()
			fastest = min(fastest, time.Since(began))
			assert.Equal(t, http.StatusServiceUnavailable, r.Status, "%s: %s", what, r.Raw)
			assert.Equal(t, "Circuit breaker shard1 is open", r.Body["detail"], what)
			layertest.AssertNoLeak(t, r)
		}
		assert.Less(t, fastest, 50*time.Millisecond, "the fastest of three %ss", what)
	}
	fast("read", func() layertest.Response { return c.Read(keyOn(t, f.svc, "shard1", "open-")) })
	fast("write", func() layertest.Response { return c.Write(keyOn(t, f.svc, "shard1", "open-w-"), "v") })

	// The rest keeps working, and /health, /stats and /metrics tell the truth.
	assert.Equal(t, "kept", c.Read(cached).Body["value"], "a cached key of the dead shard")
	c.MustWrite(other, "v2")
	assert.Equal(t, "v2", c.Read(other).Body["value"])
	h := c.Get("/health")
	require.Equal(t, http.StatusOK, h.Status)
	assert.Equal(t, "degraded", h.Body["status"])
	assert.Equal(t, map[string]any{"shard1": false, "shard2": true}, h.Body["shards_healthy"])
	assert.Equal(t, map[string]any{"shard1": "open", "shard2": "closed", "redis_cache": "closed", "redis_rate_limiter": "closed"}, h.Body["circuit_breakers"])
	assert.Equal(t, "open", c.Get("/stats").Body["circuit_breakers"].(map[string]any)["shard1"])
	fams := metricstest.Scrape(t, f.tg.URL+"/metrics")
	v, _ := fams.Value("circuit_breaker_state", map[string]string{"breaker": "shard1"})
	assert.Equal(t, 2.0, v)
	v, _ = fams.Value("circuit_breaker_state", map[string]string{"breaker": "shard2"})
	assert.Equal(t, 0.0, v)
	v, _ = fams.Value("db_queries_total", map[string]string{"shard": "shard1", "result": "rejected"})
	assert.GreaterOrEqual(t, v, 2.0)
	v, _ = fams.Value("db_queries_total", map[string]string{"shard": "shard1", "result": "unavailable"})
	assert.Equal(t, 5.0, v)

	pg1.Start(t)
	probe := keyOn(t, f.svc, "shard1", "probe-")
	testenv.WaitFor(t, 45*time.Second, "a half-open probe to close the breaker", func() bool {
		return c.Read(probe).Status == http.StatusOK && f.svc.Breaker("shard1") == "closed"
	})
	c.MustWrite(probe, "back")
	assert.Equal(t, "back", c.Read(probe).Body["value"])
	assert.Equal(t, "healthy", c.Get("/health").Body["status"])
	v, _ = metricstest.Scrape(t, f.tg.URL+"/metrics").Value("circuit_breaker_state", map[string]string{"breaker": "shard1"})
	assert.Equal(t, 0.0, v)
}

// /metrics, parsed as Prometheus parses it, has the series of the issue.
func TestMetrics(t *testing.T) {
	f := start(t, func(c *l10.Config) { c.RateLimitRequests, c.RateLimitWindow = 8, time.Hour })
	c := f.client(t)
	c.MustWrite("m1", "v")                               // request 1 of the limit
	c.Read("m1")                                         // 2: L1
	c.Read("m1")                                         // 3: L1
	c.Read("m-missing")                                  // 4: a miss, still 200
	f.another(t).as(t, "X-API-Key", otherKey).Read("m1") // another instance: L2 there
	f.as(t).Read("m1")                                   // 401, missing
	f.as(t, "X-API-Key", "nope-nope-nope-nope").Write("m1", "x")
	for range 5 {
		c.Read("m1") // 5..8, then 429
	}
	c.Get("/no-such-route")

	fams := metricstest.Scrape(t, f.tg.URL+"/metrics")
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := fams.Value(name, labels)
		assert.True(t, ok, "%s%v: series %v", name, labels, fams.Series(name))
		return v
	}
	assert.Equal(t, 7.0, value("http_requests_total", map[string]string{"method": "GET", "route": "/read/{key}", "status": "200"}))
	assert.Equal(t, 1.0, value("http_requests_total", map[string]string{"method": "POST", "route": "/write", "status": "200"}))
	assert.Equal(t, 1.0, value("http_requests_total", map[string]string{"route": "/read/{key}", "status": "401"}))
	assert.Equal(t, 1.0, value("http_requests_total", map[string]string{"route": "/write", "status": "401"}))
	assert.Equal(t, 1.0, value("http_requests_total", map[string]string{"route": "/read/{key}", "status": "429"}))
	assert.Equal(t, 1.0, value("http_requests_total", map[string]string{"route": "unmatched", "status": "404"}))
	assert.Equal(t, 7.0, value("http_request_duration_seconds", map[string]string{"route": "/read/{key}", "status": "200"}))
	for _, s := range fams.Series("http_requests_total") {
		assert.NotContains(t, s["route"], "m1", "routes are patterns, never raw paths")
	}
	assert.Equal(t, 6.0, value("cache_hits_total", map[string]string{"cache_level": "L1"}))
	assert.Equal(t, 0.0, value("cache_hits_total", map[string]string{"cache_level": "L2"}))
	assert.Equal(t, 1.0, value("cache_misses_total", nil))
	assert.Equal(t, 1.0, value("rate_limit_exceeded_total", nil))
	assert.Equal(t, 1.0, value("auth_failures_total", map[string]string{"reason": "missing"}))
	assert.Equal(t, 1.0, value("auth_failures_total", map[string]string{"reason": "invalid_key"}))
	assert.Equal(t, 0.0, value("circuit_breaker_state", map[string]string{"breaker": "shard1"}))
	assert.Equal(t, 0.0, value("circuit_breaker_state", map[string]string{"breaker": "shard2"}))
	owner := f.svc.Owner("m1")
	assert.Equal(t, 1.0, value("db_queries_total", map[string]string{"shard": owner, "operation": "put", "result": "ok"}))
	assert.Equal(t, 1.0, value("db_queries_total", map[string]string{"shard": owner, "operation": "get", "result": "ok"}), "the write-through read")
	assert.Equal(t, 1.0, value("db_queries_total", map[string]string{"shard": f.svc.Owner("m-missing"), "operation": "get", "result": "not_found"}))
	assert.Equal(t, 1.0, value("db_query_duration_seconds", map[string]string{"shard": owner, "operation": "put"}))
	for _, shard := range []string{"shard1", "shard2"} {
		assert.Equal(t, 20.0, value("db_pool_max_connections", map[string]string{"shard": shard}))
		assert.GreaterOrEqual(t, value("db_pool_connections", map[string]string{"shard": shard, "state": "total"}), 1.0)
		value("active_connections", map[string]string{"shard": shard})
		value("db_pool_acquires_total", map[string]string{"shard": shard})
	}
	value("go_goroutines", nil)

	// The L2 hit was the other instance's.
	g := f.another(t)
	g.as(t, "X-API-Key", otherKey).Read("m1") // "tester" has used its limit
	v, _ := metricstest.Scrape(t, g.tg.URL+"/metrics").Value("cache_hits_total", map[string]string{"cache_level": "L2"})
	assert.Equal(t, 1.0, v)

	off := f.another(t, func(c *l10.Config) { c.EnableMetrics = false })
	r := off.client(t).Get("/metrics")
	assert.Equal(t, http.StatusNotFound, r.Status)
	assert.Equal(t, map[string]any{"detail": "Metrics disabled"}, r.Body)
}

func TestAuthConfiguration(t *testing.T) {
	f := &fixture{
		shardURLs: []string{testenv.PostgresURL(t), testenv.PostgresURL(t)},
		l2URL:     testenv.RedisURL(t), limiterURL: testenv.RedisURL(t),
	}
	// production is auth on, no key, outside development, then o.
	production := func(o func(*l10.Config)) func(*l10.Config) {
		return func(c *l10.Config) {
			c.Auth, c.Environment = auth.Config{Enabled: true}, "production"
			o(c)
		}
	}
	var cfg l10.Config
	require.NoError(t, config.LoadFrom(&cfg, config.Defaults))
	f.configure(production(func(*l10.Config) {}))(&cfg)
	_, err := l10.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.Error(t, err, "no key, no development mode: refuses to start")
	assert.Contains(t, err.Error(), "API_KEYS")

	dev := func(o func(*l10.Config)) {
		c := f.another(t, production(o)).as(t, "X-API-Key", auth.DevAPIKey)
		c.MustWrite("dev", "v")
		assert.Equal(t, "v", c.Read("dev").Body["value"])
	}
	dev(func(c *l10.Config) { c.Environment = "development" })
	dev(func(c *l10.Config) { c.Auth.DevMode = true })
	assert.Equal(t, http.StatusUnauthorized, f.another(t, production(func(c *l10.Config) { c.Auth.APIKey = testKey })).
		as(t, "X-API-Key", auth.DevAPIKey).Read("dev").Status, "no development key in production")

	open := f.another(t, production(func(c *l10.Config) { c.Auth.Enabled = false })).as(t)
	assert.Equal(t, http.StatusOK, open.Do(http.MethodGet, "/read/x", nil).Status, "AUTH_ENABLED=false")
	assert.Equal(t, false, open.Get("/stats").Body["features"].(map[string]any)["authentication"])
}
