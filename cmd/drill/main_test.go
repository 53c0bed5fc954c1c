package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	toxiserver "github.com/Shopify/toxiproxy/v2"
	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // error text; "" = valid
	}{
		{"process fault", []string{"-layer", "2", "-fault", "kill", "-server", "l2-redis"}, ""},
		{"network fault, two servers", []string{"-layer", "9", "-fault", "hang", "-server", "l9-db-us-east, l9-cache-us-east"}, ""},
		{"baseline", []string{"-layer", "0", "-fault", "none"}, ""},
		{"no layer", []string{"-fault", "kill", "-server", "x"}, "-layer"},
		{"layer 11", []string{"-layer", "11", "-fault", "none"}, "-layer"},
		{"unknown fault", []string{"-layer", "2", "-fault", "melt", "-server", "x"}, "one of cut, hang, kill, latency, none, partition, reset, restart, stop"},
		{"fault without server", []string{"-layer", "2", "-fault", "hang"}, "needs -server"},
		{"none with a server", []string{"-layer", "2", "-fault", "none", "-server", "x"}, "takes no -server"},
		{"other target", []string{"-layer", "2", "-fault", "none", "-target", "k8s"}, "local or compose"},
		{"too long", []string{"-layer", "2", "-fault", "none", "-duration", "11m"}, "between 3s and 10m"},
		{"no settling", []string{"-layer", "2", "-fault", "none", "-settle", "0s"}, "-settle"},
		{"bad header", []string{"-layer", "2", "-fault", "none", "-H", "no colon"}, "want 'Name: value'"},
		{"argument", []string{"-layer", "2", "-fault", "none", "extra"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			if tc.want == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.want)
			}
		})
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	c, err := parseFlags([]string{"-layer", "10", "-fault", "stop", "-server", "l10-cache-l2,l10-rate-limiter", "-H", "X-Trace: 1"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8010", c.baseURL)
	assert.Equal(t, "dblayers-l10", c.project)
	assert.Equal(t, []string{"l10-cache-l2", "l10-rate-limiter"}, c.servers)
	assert.Equal(t, l10DevKey, c.header.Get("X-API-Key"), "L10 gets the development key")
	assert.Equal(t, "1", c.header.Get("X-Trace"))
	assert.NoError(t, c.workload().Validate())

	c, err = parseFlags([]string{"-layer", "10", "-fault", "none"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, l10DevKey, c.header.Get("X-API-Key"), "without -H too")

	c, err = parseFlags([]string{"-layer", "10", "-fault", "none", "-H", "X-API-Key: mine"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []string{"mine"}, c.header.Values("X-API-Key"), "a key given is kept")
}

// toxiproxyAPI serves Toxiproxy's API in the test, with one proxy per name (to an upstream
// that nothing reads), and returns its URL.
func toxiproxyAPI(t *testing.T, names ...string) string {
	t.Helper()
	srv := toxiserver.NewServer(toxiserver.NewMetricsContainer(nil), zerolog.Nop())
	api := httptest.NewServer(srv.Routes())
	t.Cleanup(api.Close)
	upstream, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { upstream.Close() })
	client := toxiproxy.NewClient(api.URL)
	for _, name := range names {
		p, err := client.CreateProxy(name, "127.0.0.1:0", upstream.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Delete() })
	}
	return api.URL
}

// toxicsOn lists the toxics on each proxy, as "type/stream attributes".
func toxicsOn(t *testing.T, api string, names ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, name := range names {
		p, err := toxiproxy.NewClient(api).Proxy(name)
		require.NoError(t, err)
		toxics, err := p.Toxics()
		require.NoError(t, err)
		out[name] = []string{}
		for _, tx := range toxics {
			attrs, _ := json.Marshal(tx.Attributes)
			out[name] = append(out[name], tx.Type+"/"+tx.Stream+" "+string(attrs))
		}
	}
	return out
}

func TestNetworkFaultsPutAndRemoveTheirToxics(t *testing.T) {
	api := toxiproxyAPI(t, "l2-redis", "l2-db")
	for _, tc := range []struct {
		fault string
		want  []string
	}{
		{"latency", []string{`latency/upstream {"jitter":0,"latency":250}`, `latency/downstream {"jitter":0,"latency":250}`}},
		{"hang", []string{`timeout/upstream {"timeout":0}`, `timeout/downstream {"timeout":0}`}},
		{"reset", []string{`reset_peer/upstream {"timeout":0}`, `reset_peer/downstream {"timeout":0}`}},
		{"cut", []string{`limit_data/downstream {"bytes":100}`}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			c, err := parseFlags([]string{"-layer", "2", "-fault", tc.fault, "-server", "l2-redis",
				"-toxiproxy", api, "-latency", "250ms", "-cut-bytes", "100"}, io.Discard)
			require.NoError(t, err)
			f, err := newFault(c)
			require.NoError(t, err)
			ctx := t.Context()
			require.NoError(t, f.check(ctx))
			require.NoError(t, f.inject(ctx))
			got := toxicsOn(t, api, "l2-redis", "l2-db")
			assert.ElementsMatch(t, tc.want, got["l2-redis"])
			assert.Empty(t, got["l2-db"], "only the server named")
			require.NoError(t, f.heal(ctx))
			assert.Empty(t, toxicsOn(t, api, "l2-redis")["l2-redis"], "healed")
			assert.NoError(t, f.heal(ctx), "healing twice is harmless")
		})
	}
}

func TestPartitionHangsEveryProxyOfTheRegion(t *testing.T) {
	api := toxiproxyAPI(t, "l9-db-eu-west", "l9-cache-eu-west", "l9-db-us-east")
	c, err := parseFlags([]string{"-layer", "9", "-fault", "partition", "-server", "eu-west", "-toxiproxy", api}, io.Discard)
	require.NoError(t, err)
	f, err := newFault(c)
	require.NoError(t, err)
	require.NoError(t, f.check(t.Context()))
	require.NoError(t, f.inject(t.Context()))
	got := toxicsOn(t, api, "l9-db-eu-west", "l9-cache-eu-west", "l9-db-us-east")
	assert.Len(t, got["l9-db-eu-west"], 2)
	assert.Len(t, got["l9-cache-eu-west"], 2)
	assert.Empty(t, got["l9-db-us-east"])
	require.NoError(t, f.heal(t.Context()))
	assert.Empty(t, toxicsOn(t, api, "l9-db-eu-west")["l9-db-eu-west"])
}

func TestNetworkFaultNeedsItsProxy(t *testing.T) {
	api := toxiproxyAPI(t, "l2-db")
	c, err := parseFlags([]string{"-layer", "2", "-fault", "hang", "-server", "l2-redis", "-toxiproxy", api}, io.Discard)
	require.NoError(t, err)
	f, err := newFault(c)
	require.NoError(t, err)
	assert.ErrorContains(t, f.check(t.Context()), "no such proxy (it has: l2-db)")

	c.toxiproxy = "http://192.0.2.1:8474"
	_, err = newFault(c)
	assert.ErrorContains(t, err, "only loopback")
}

// fakeStack writes a stand-in for scripts/stack.sh that logs its arguments to a file and
// answers status with a table naming l2-db, l2-redis and l2.
func fakeStack(t *testing.T) (script, log string) {
	dir := t.TempDir()
	script, log = filepath.Join(dir, "stack.sh"), filepath.Join(dir, "calls")
	body := `#!/bin/sh
echo "$*" >>` + log + `
if [ "$1" = status ]; then
	printf 'LAYER NAME KIND\nL2 l2-db pg\nL2 l2-redis redis\nL2 l2 service\n'
fi
`
	require.NoError(t, os.WriteFile(script, []byte(body), 0o755))
	return script, log
}

func calls(t *testing.T, log string) []string {
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestProcessFaultsRunTheStackScript(t *testing.T) {
	for _, tc := range []struct {
		fault string
		want  []string
	}{
		{"stop", []string{"status all", "stop l2-redis", "start l2-redis"}},
		{"kill", []string{"status all", "kill l2-redis", "start l2-redis"}},
		{"restart", []string{"status all", "restart l2-redis"}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			script, log := fakeStack(t)
			c, err := parseFlags([]string{"-layer", "2", "-fault", tc.fault, "-server", "l2-redis", "-stack", script}, io.Discard)
			require.NoError(t, err)
			f, err := newFault(c)
			require.NoError(t, err)
			require.NoError(t, f.check(t.Context()))
			require.NoError(t, f.inject(t.Context()))
			require.NoError(t, f.heal(t.Context()))
			assert.Equal(t, tc.want, calls(t, log))
		})
	}

	script, _ := fakeStack(t)
	c, err := parseFlags([]string{"-layer", "2", "-fault", "kill", "-server", "l3-redis", "-stack", script}, io.Discard)
	require.NoError(t, err)
	f, err := newFault(c)
	require.NoError(t, err)
	assert.ErrorContains(t, f.check(t.Context()), "no such server (it has: NAME l2-db l2-redis l2)")
}

// recordingFault counts its calls and makes the fake layer fail while injected.
type recordingFault struct {
	mu     sync.Mutex
	calls  []string
	broken *bool
}

func (f *recordingFault) String() string { return "test fault" }
func (f *recordingFault) check(context.Context) error {
	return nil
}
func (f *recordingFault) inject(context.Context) error { return f.set("inject", true) }
func (f *recordingFault) heal(context.Context) error   { return f.set("heal", false) }
func (f *recordingFault) set(call string, broken bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	*f.broken = broken
	return nil
}

func TestDrillRunsThreePhasesAndHeals(t *testing.T) {
	var mu sync.Mutex
	records := map[string]string{}
	broken := false
	f := &recordingFault{broken: &broken}
	layer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		down := broken
		f.mu.Unlock()
		if down {
			http.Error(w, `{"detail":"Service unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if key, ok := strings.CutPrefix(r.URL.Path, "/read/"); ok {
			v, found := records[key]
			_ = json.NewEncoder(w).Encode(map[string]any{"success": found, "value": v})
			return
		}
		var req struct{ Key, Value string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		records[req.Key] = req.Value
		_ = json.NewEncoder(w).Encode(map[string]any{"success": true})
	}))
	t.Cleanup(layer.Close)

	c, err := parseFlags([]string{"-layer", "2", "-fault", "none", "-duration", "3s", "-writers", "2", "-readers", "2",
		"-recover-run", "1", "-url", layer.URL}, io.Discard)
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, drillLayer(t.Context(), c, c.workload(), f, &out))
	assert.Equal(t, []string{"inject", "heal"}, f.calls)
	text := out.String()
	for _, want := range []string{"test fault: injected", "test fault: healed", "\nbefore ", "\nfault ", "\nafter ",
		"503: ", ", lost: 0\n", "time to recover: "} {
		assert.Contains(t, text, want)
	}
}
