package compose_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodriver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/auth"
	"github.com/dblayers/dblayers/internal/layertest"
	"github.com/dblayers/dblayers/internal/testenv"
	"github.com/dblayers/dblayers/layers/l0"
	"github.com/dblayers/dblayers/layers/l1"
	"github.com/dblayers/dblayers/layers/l10"
	"github.com/dblayers/dblayers/layers/l2"
	"github.com/dblayers/dblayers/layers/l3"
	"github.com/dblayers/dblayers/layers/l4"
	"github.com/dblayers/dblayers/layers/l5"
	"github.com/dblayers/dblayers/layers/l6"
	"github.com/dblayers/dblayers/layers/l7"
	"github.com/dblayers/dblayers/layers/l8"
	"github.com/dblayers/dblayers/layers/l9"
)

// EnvCompose turns on TestComposeUp: scripts/test.sh sets it in its Docker part, with the
// image variables of scripts/images.sh where no registry is reachable.
const EnvCompose = "DBLAYERS_TEST_COMPOSE"

// buildTimeout bounds the one build of the api image; a cold build on a busy 2-core machine
// takes minutes.
const buildTimeout = 15 * time.Minute

// upTimeout bounds `up --wait` of one file.
const upTimeout = 5 * time.Minute

// healthInterval is how often the projects' health checks run here: the files' 5 s intervals
// make every `up --wait` wait seconds past a server's readiness per dependency level. Each
// check keeps its command, timeout and start period, and as many retries as cover the file's
// own window (interval × retries), so a slow server is given as long as the file gives it.
const healthInterval = time.Second

// contract is what layertest.Target needs to know of layer n besides its URL.
var contract = map[int]layertest.Target{
	0:  {Layer: l0.Layer, WriteMessage: "Data written successfully"},
	1:  {Layer: l1.Layer, WriteMessage: "Data written successfully"},
	2:  {Layer: l2.Layer, WriteMessage: "Data written successfully"},
	3:  {Layer: l3.Layer, WriteMessage: l3.WriteMessage},
	4:  {Layer: l4.Layer}, // its message names the shard
	5:  {Layer: l5.Layer, WriteMessage: "Data written successfully"},
	6:  {Layer: l6.Layer, WriteMessage: l6.WriteMessage},
	7:  {Layer: l7.Layer, WriteMessage: l7.MsgCreated},
	8:  {Layer: l8.Layer, WriteMessage: l8.MsgDocumentWritten},
	9:  {Layer: l9.Layer, WriteMessage: "Written to US-EAST and replicating to 2 regions", NoTimestamps: true},
	10: {Layer: l10.Layer, Headers: http.Header{"X-Api-Key": {auth.DevAPIKey}}},
}

// topology checks what layer n's compose file promises beyond the contract.
var topology = map[int]func(t *testing.T, s *stack){
	3:  checkL3,
	4:  checkL4,
	6:  checkL6,
	7:  checkL7,
	8:  checkL8,
	9:  checkL9,
	10: checkL10,
}

// TestComposeUp builds the api image once (every file builds it the same way: checkBuild),
// then brings up every docker-compose/lN.yml as a project of its own (dblayers-test-lN) with
// every published port remapped to a free one on 127.0.0.1, so a running local stack or
// compose project is never touched; runs the layer's black-box contract suite against the
// api's port, then the checks of its topology; and removes the project's containers,
// networks and volumes whatever happened.
func TestComposeUp(t *testing.T) {
	if os.Getenv(EnvCompose) == "" {
		t.Skipf("%s is not set: the Docker part of scripts/test.sh runs this", EnvCompose)
	}
	build := &composeProject{name: "dblayers-test-build", file: filepath.Join(repoRoot(t), "docker-compose", "l0.yml")}
	started := time.Now()
	out, err := build.compose(buildTimeout, "build", apiService)
	require.NoError(t, err, "build %s:\n%s", apiImage, out)
	t.Logf("api image: built %s", time.Since(started).Round(time.Second))

	for _, l := range layers {
		t.Run(fmt.Sprintf("l%d", l.n), func(t *testing.T) {
			s := up(t, l)
			tg := contract[l.n]
			tg.URL = s.apiURL
			switch l.n {
			case 6:
				tg.Settle = func(t testing.TB) { s.waitStat(t, "queue_length", 0) }
			case 7:
				tg.Settle = func(t testing.TB) { s.waitStat(t, "projection_lag_events", 0) }
			}
			s.tg = tg
			started := time.Now()
			t.Run("contract", func(t *testing.T) { layertest.Run(t, tg) })
			t.Run("api docs", func(t *testing.T) { checkAPIDocs(t, s.apiURL) })
			if check := topology[l.n]; check != nil {
				t.Run("topology", func(t *testing.T) { check(t, s) })
			}
			t.Logf("l%d: up %s, checks %s", l.n, s.upTook.Round(time.Second), time.Since(started).Round(time.Second))
		})
	}
}

// stack is one compose project brought up by up.
type stack struct {
	t       *testing.T
	project *composeProject
	apiURL  string
	tg      layertest.Target
	upTook  time.Duration
}

type composeProject struct{ name, file, override string }

// up brings up l's compose file and registers its removal.
func up(t *testing.T, l layer) *stack {
	root := repoRoot(t)
	file := filepath.Join(root, "docker-compose", fmt.Sprintf("l%d.yml", l.n))
	p, err := loadProject(file)
	require.NoError(t, err)

	cp := &composeProject{name: fmt.Sprintf("dblayers-test-l%d", l.n), file: file,
		override: filepath.Join(t.TempDir(), "override.yml")}
	// The override: every port remapped, health checked every healthInterval, plus settings
	// of the test's own (by service).
	extra := map[string][]string{}
	if l.n == 10 {
		// The contract suite sends hundreds of requests a minute; the file's limit is 100.
		extra["api"] = append(extra["api"], "    environment:", `      RATE_LIMIT_REQUESTS: "1000000"`)
	}
	var ov strings.Builder
	ov.WriteString("services:\n")
	var services []string
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		if s.Image == grafanaImage() && !imagePresent(s.Image) {
			t.Logf("%s: image %s is not on this machine and no registry is assumed: not started (the dashboard's queries are run against Prometheus below)", name, s.Image)
			continue
		}
		services = append(services, name)
		lines := extra[name]
		if len(s.Ports) > 0 {
			lines = append(lines, "    ports: !override")
		}
		for _, port := range s.Ports {
			lines = append(lines, fmt.Sprintf("      - \"127.0.0.1::%d\"", port.Target))
		}
		if retries, ok := healthRetries(s.HealthCheck); ok {
			lines = append(lines, "    healthcheck:", "      interval: "+healthInterval.String(), fmt.Sprintf("      retries: %d", retries))
		}
		if len(lines) > 0 {
			fmt.Fprintf(&ov, "  %s:\n%s\n", name, strings.Join(lines, "\n"))
		}
	}
	require.NoError(t, os.WriteFile(cp.override, []byte(ov.String()), 0o644))

	s := &stack{t: t, project: cp}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := cp.compose(2*time.Minute, "logs", "--no-color", "--tail", "60")
			t.Logf("logs of %s:\n%s", cp.name, out)
		}
		if out, err := cp.compose(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Errorf("down %s: %v\n%s", cp.name, err, out)
		}
	})
	started := time.Now()
	args := append([]string{"up", "--detach", "--no-build", "--wait", "--wait-timeout", fmt.Sprint(int(upTimeout.Seconds()))}, services...)
	out, err := cp.compose(upTimeout+time.Minute, args...)
	require.NoError(t, err, "up %s:\n%s", cp.name, out)
	s.upTook = time.Since(started)
	s.apiURL = "http://" + s.addr("api", uint32(8000+l.n))
	return s
}

// healthRetries is how many retries every healthInterval cover the window of hc (its
// interval × retries, Docker's defaults 30 s and 3 where unset); false when hc runs no check.
func healthRetries(hc *types.HealthCheckConfig) (uint64, bool) {
	if hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return 0, false
	}
	interval, retries := 30*time.Second, uint64(3)
	if hc.Interval != nil {
		interval = time.Duration(*hc.Interval)
	}
	if hc.Retries != nil {
		retries = *hc.Retries
	}
	window := interval * time.Duration(retries)
	return uint64((window + healthInterval - 1) / healthInterval), true
}

func TestHealthRetries(t *testing.T) {
	d := func(v time.Duration) *types.Duration { x := types.Duration(v); return &x }
	n := func(v uint64) *uint64 { return &v }
	cmd := types.HealthCheckTest{"CMD", "true"}
	tests := []struct {
		name    string
		hc      *types.HealthCheckConfig
		retries uint64
		checked bool
	}{
		{"the files' 5 s × 5", &types.HealthCheckConfig{Test: cmd, Interval: d(5 * time.Second), Retries: n(5)}, 25, true},
		{"a window rounded up", &types.HealthCheckConfig{Test: cmd, Interval: d(1500 * time.Millisecond), Retries: n(3)}, 5, true},
		{"Docker's defaults, 30 s × 3", &types.HealthCheckConfig{Test: cmd}, 90, true},
		{"no health check", nil, 0, false},
		{"disabled", &types.HealthCheckConfig{Disable: true}, 0, false},
		{"NONE", &types.HealthCheckConfig{Test: types.HealthCheckTest{"NONE"}}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			retries, checked := healthRetries(tc.hc)
			assert.Equal(t, tc.checked, checked)
			assert.Equal(t, tc.retries, retries)
		})
	}
}

// compose runs docker compose on the project (with its override file, if any) within timeout
// and returns its output.
func (p *composeProject) compose(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	files := []string{"-f", p.file}
	if p.override != "" {
		files = append(files, "-f", p.override)
	}
	cmd := exec.CommandContext(ctx, "docker", append(append([]string{"compose", "--project-name", p.name}, files...), args...)...)
	cmd.Dir = filepath.Dir(p.file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// addr is host:port of service's container port on 127.0.0.1.
func (s *stack) addr(service string, port uint32) string {
	s.t.Helper()
	out, err := s.project.compose(time.Minute, "port", service, fmt.Sprint(port))
	require.NoError(s.t, err, out)
	return strings.TrimSpace(out)
}

// pgURL is the URL of database db on service's published port.
func (s *stack) pgURL(service, db string) string {
	return fmt.Sprintf("postgres://dbuser:dbpassword@%s/%s?sslmode=disable", s.addr(service, 5432), db)
}

// stored returns the value key has in the records table of url, or "" when it has none.
func stored(url, key string) string {
	var v string
	if err := testenv.QueryRow(url, "SELECT value FROM records WHERE key = $1", []any{key}, &v); err != nil {
		return ""
	}
	return v
}

// waitStat waits until the api's /stats reports want for field.
func (s *stack) waitStat(t testing.TB, field string, want float64) {
	t.Helper()
	c := layertest.NewClient(t, s.tg)
	testenv.WaitFor(t, time.Minute, fmt.Sprintf("/stats %s to be %v", field, want), func() bool {
		r := c.Get("/stats")
		return r.Status == http.StatusOK && r.Body[field] == want
	})
}

func grafanaImage() string {
	if v := os.Getenv("GRAFANA_IMAGE"); v != "" {
		return v
	}
	return "grafana/grafana:11.4.0"
}

func imagePresent(image string) bool {
	return exec.Command("docker", "image", "inspect", image).Run() == nil
}

// checkL3: both replicas stream from the primary and serve a written key; a restarted
// replica streams again.
func checkL3(t *testing.T, s *stack) {
	primary := s.pgURL("db-primary", "appdb")
	streaming := func() int {
		var n int
		_ = testenv.QueryRow(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", nil, &n)
		return n
	}
	testenv.WaitFor(t, time.Minute, "two replicas streaming", func() bool { return streaming() == 2 })

	c := layertest.NewClient(t, s.tg)
	key := fmt.Sprintf("l3-replicated-%d", time.Now().UnixNano())
	c.MustWrite(key, "v1")
	for _, r := range []string{"db-replica-1", "db-replica-2"} {
		u := s.pgURL(r, "appdb")
		testenv.WaitFor(t, time.Minute, key+" on "+r, func() bool { return stored(u, key) == "v1" })
	}

	out, err := s.project.compose(2*time.Minute, "restart", "db-replica-1")
	require.NoError(t, err, out)
	testenv.WaitFor(t, 2*time.Minute, "db-replica-1 streaming again", func() bool { return streaming() == 2 })
	c.MustWrite(key, "v2")
	u := s.pgURL("db-replica-1", "appdb")
	testenv.WaitFor(t, time.Minute, key+" updated on the restarted replica", func() bool { return stored(u, key) == "v2" })
}

// checkL4: keys land on all three shard containers.
func checkL4(t *testing.T, s *stack) {
	c := layertest.NewClient(t, s.tg)
	prefix := fmt.Sprintf("l4-spread-%d-", time.Now().UnixNano())
	for i := range 30 {
		c.MustWrite(fmt.Sprintf("%s%d", prefix, i), "v")
	}
	for i := range 3 {
		u := s.pgURL(fmt.Sprintf("db-shard-%d", i), fmt.Sprintf("appdb_shard_%d", i))
		var n int
		require.NoError(t, testenv.QueryRow(u, "SELECT count(*) FROM records WHERE key LIKE $1", []any{prefix + "%"}, &n))
		assert.Positive(t, n, "keys on db-shard-%d", i)
	}
}

// checkL6: the worker drains the queue; killed (SIGKILL) and restarted in the middle of a
// burst, it loses no acknowledged write.
func checkL6(t *testing.T, s *stack) {
	c := layertest.NewClient(t, s.tg)
	prefix := fmt.Sprintf("l6-burst-%d-", time.Now().UnixNano())
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%s%d-%d", prefix, w, i)
				if r := c.Write(key, key); r.Status == http.StatusOK {
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testenv.WaitFor(t, time.Minute, "writes before the kill", func() bool { return count() >= 50 })
	out, err := s.project.compose(time.Minute, "kill", "--signal", "SIGKILL", "worker")
	require.NoError(t, err, out)
	before := count()
	testenv.WaitFor(t, time.Minute, "writes while the worker is down", func() bool { return count() >= before+50 })
	out, err = s.project.compose(2*time.Minute, "start", "worker")
	require.NoError(t, err, out)
	n := count()
	testenv.WaitFor(t, time.Minute, "writes after the restart", func() bool { return count() >= n+50 })
	close(stop)
	wg.Wait()

	s.waitStat(t, "queue_length", 0)
	db := s.pgURL("db", "appdb")
	var missing []string
	for _, key := range acked {
		if stored(db, key) != key {
			missing = append(missing, key)
		}
	}
	assert.Empty(t, missing, "acknowledged writes not stored (of %d)", len(acked))
}

// checkL7: the projector service projects commands into the read database.
func checkL7(t *testing.T, s *stack) {
	c := layertest.NewClient(t, s.tg)
	key := fmt.Sprintf("l7-projected-%d", time.Now().UnixNano())
	c.MustWrite(key, "v")
	read := s.pgURL("read-db", "read_db")
	testenv.WaitFor(t, time.Minute, key+" in the read database", func() bool {
		var n int
		return testenv.QueryRow(read, "SELECT count(*) FROM records WHERE key = $1", []any{key}, &n) == nil && n == 1
	})
}

// checkL8: the mongo service enforces the file's root user, and stores the documents the api
// (which connects as that user) writes and returns them.
func checkL8(t *testing.T, s *stack) {
	c := layertest.NewClient(t, s.tg)
	key := fmt.Sprintf("l8-document-%d", time.Now().UnixNano())
	c.MustWrite(key, "v")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for uri, why := range map[string]string{
		"mongodb://" + s.addr("mongodb", 27017) + "/":                 "without credentials",
		"mongodb://mongouser:wrong@" + s.addr("mongodb", 27017) + "/": "with a wrong password",
	} {
		anon, err := mongodriver.Connect(options.Client().ApplyURI(uri))
		require.NoError(t, err)
		_, err = anon.Database("polyglot_db").Collection("documents").InsertOne(ctx, bson.D{{Key: "key", Value: "intruder"}})
		assert.Error(t, err, "an insert %s was accepted", why)
		_ = anon.Disconnect(context.Background())
	}
	client, err := mongodriver.Connect(options.Client().ApplyURI("mongodb://mongouser:mongopassword@" + s.addr("mongodb", 27017) + "/"))
	require.NoError(t, err)
	defer client.Disconnect(context.Background())
	dbs, err := client.ListDatabaseNames(ctx, bson.D{})
	require.NoError(t, err)
	found := false
	for _, db := range dbs {
		cols, err := client.Database(db).ListCollectionNames(ctx, bson.D{})
		require.NoError(t, err)
		for _, col := range cols {
			n, err := client.Database(db).Collection(col).CountDocuments(ctx, bson.D{{Key: "key", Value: key}})
			require.NoError(t, err)
			found = found || n > 0
		}
	}
	assert.True(t, found, "no document with key %s in databases %v", key, dbs)
	r := c.Read(key)
	assert.Equal(t, http.StatusOK, r.Status, string(r.Raw))
	assert.Equal(t, "v", r.Body["value"])
}

// checkL9: a write in one region is readable in the others.
func checkL9(t *testing.T, s *stack) {
	c := layertest.NewClient(t, s.tg)
	key := fmt.Sprintf("l9-global-%d", time.Now().UnixNano())
	c.MustWrite(key, "v")
	for _, db := range []string{"db-eu-west", "db-asia-pac"} {
		u := s.pgURL(db, "global_db")
		testenv.WaitFor(t, time.Minute, key+" in "+db, func() bool { return stored(u, key) == "v" })
	}
	for _, region := range []string{"eu-west", "asia-pac"} {
		tg := s.tg
		tg.Headers = http.Header{l9.RegionHeader: {region}}
		r := layertest.NewClient(t, tg).Read(key)
		assert.Equal(t, http.StatusOK, r.Status, string(r.Raw))
		assert.Equal(t, "v", r.Body["value"], "read in %s", region)
	}
}

// checkL10: Prometheus scrapes the api (target up) and every query of the provisioned
// Grafana dashboard returns data from it.
func checkL10(t *testing.T, s *stack) {
	prom := "http://" + s.addr("prometheus", 9090)
	c := layertest.NewClient(t, s.tg)
	query := func(q string) (int, error) {
		resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var body struct {
			Status string
			Data   struct{ Result []json.RawMessage }
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return 0, err
		}
		if body.Status != "success" {
			return 0, fmt.Errorf("status %q", body.Status)
		}
		return len(body.Data.Result), nil
	}
	testenv.WaitFor(t, 2*time.Minute, "Prometheus to report the api up", func() bool {
		n, err := query(`up{job="enterprise-api"} == 1`)
		return err == nil && n == 1
	})

	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "dashboards", "l10.json"))
	require.NoError(t, err)
	exprs := regexp.MustCompile(`"expr":\s*"((?:[^"\\]|\\.)*)"`).FindAllSubmatch(raw, -1)
	require.NotEmpty(t, exprs)
	// Traffic for every panel: hits and misses, an auth failure, and enough requests for the
	// rate windows of two scrapes.
	key := fmt.Sprintf("l10-dashboard-%d", time.Now().UnixNano())
	anon := layertest.NewClient(t, layertest.Target{URL: s.apiURL})
	for _, e := range exprs {
		var expr string
		require.NoError(t, json.Unmarshal(append(append([]byte{'"'}, e[1]...), '"'), &expr))
		expr = strings.ReplaceAll(expr, "$__rate_interval", "1m")
		testenv.WaitFor(t, 3*time.Minute, "data for "+expr, func() bool {
			c.MustWrite(key, "v")
			c.Read(key)
			c.Read(key + "-missing")
			anon.Get("/read/" + key)
			n, err := query(expr)
			return err == nil && n > 0
		})
	}
}

// checkAPIDocs: the api's own description answers without a key (L10 included), is valid
// OpenAPI, lists the shared endpoints, and its docs pages are served from the image.
func checkAPIDocs(t *testing.T, apiURL string) {
	anon := layertest.NewClient(t, layertest.Target{URL: apiURL})
	doc := anon.Get(apidoc.DocumentPath)
	require.Equal(t, http.StatusOK, doc.Status, "GET %s: %s", apidoc.DocumentPath, doc.Raw)
	layertest.ValidDocument(t, doc.Raw)
	paths := layertest.Documented(t, doc.Raw)
	for _, want := range []string{"POST /write", "GET /read/{key}", "GET /health", "GET /cache-stats"} {
		assert.Contains(t, paths, want)
	}
	for _, page := range []string{"/docs", "/redoc"} {
		r := anon.Get(page)
		assert.Equal(t, http.StatusOK, r.Status, "GET %s", page)
	}
}
