// Package compose_test checks that every docker-compose/lN.yml, read by the Compose
// specification's own loader, keeps the topology its layer promises: the original project's
// services and host ports, with these fixes (images pinned to a major version, a
// health check on every service, an api that starts only once its backing services are healthy,
// backing ports published on 127.0.0.1 only, one api image built from deploy/Dockerfile).
//
// A new layer adds its compose file, its scripts/stack/lN.sh, and one row to the layers table.
package compose_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backing is one server the api of a layer depends on.
type backing struct {
	service  string // compose service name, also its hostname in the api's URLs
	image    string
	hostPort uint32 // the original's host port, published on 127.0.0.1 only
	target   uint32 // the port the image listens on
}

func postgres(service string, hostPort uint32) backing {
	return backing{service: service, image: "postgres:15-alpine", hostPort: hostPort, target: 5432}
}

func redis(service string, hostPort uint32) backing {
	return backing{service: service, image: "redis:7-alpine", hostPort: hostPort, target: 6379}
}

func mongo(service string, hostPort uint32) backing {
	return backing{service: service, image: "mongo:7", hostPort: hostPort, target: 27017}
}

// layer is what docker-compose/lN.yml must declare besides the rules every file keeps.
type layer struct {
	n       int
	backing []backing
	// apiEnv lists the environment the api needs: variable → the backing service its URL must
	// name, or "" for a plain setting.
	apiEnv map[string]string
	// workers are the layer's background processes besides the api (L7's projector).
	workers []worker
	// monitoring are servers that watch the api rather than serve it (L10's Prometheus and
	// Grafana): checked like backing servers, but the api does not wait for them, and the
	// local stack does not run them (their ports are not in scripts/stack/lN.sh).
	monitoring []backing
}

// worker is a background service of a layer: the api image running another binary, waiting
// for the backing services like the api, restarted unless stopped, health-checked by its
// binary's own -healthcheck.
type worker struct {
	service string
	binary  string
	env     map[string]string // as layer.apiEnv
}

// layers has one row per compose file.
var layers = []layer{
	{
		n:       0,
		backing: []backing{postgres("db", 5432)},
		apiEnv:  map[string]string{"DATABASE_URL": "db"},
	},
	{
		n:       1,
		backing: []backing{postgres("db", 5433)},
		apiEnv:  map[string]string{"DATABASE_URL": "db", "DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": ""},
	},
	{
		n:       2,
		backing: []backing{postgres("db", 5434), redis("redis", 6379)},
		apiEnv:  map[string]string{"DATABASE_URL": "db", "REDIS_URL": "redis", "CACHE_TTL": ""},
	},
	{
		n:       3,
		backing: []backing{postgres("db-primary", 5435), postgres("db-replica-1", 5436), postgres("db-replica-2", 5437), redis("redis", 6380)},
		apiEnv: map[string]string{"PRIMARY_DATABASE_URL": "db-primary", "REPLICA_DATABASE_URLS": "db-replica-1", "REDIS_URL": "redis",
			"DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": "", "CACHE_TTL": "", "REPLICA_MAX_LAG": "", "REPLICA_MAX_LAG_BYTES": ""},
	},
	{
		n:       4,
		backing: []backing{postgres("db-shard-0", 5440), postgres("db-shard-1", 5441), postgres("db-shard-2", 5442), redis("redis", 6381)},
		apiEnv: map[string]string{"SHARD_0_URL": "db-shard-0", "SHARD_1_URL": "db-shard-1", "SHARD_2_URL": "db-shard-2",
			"NUM_SHARDS": "", "SHARD_STRATEGY": "", "REDIS_URL": "redis", "DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": "", "CACHE_TTL": ""},
	},
	{
		n:       5,
		backing: []backing{postgres("db", 5445), redis("redis", 6382)},
		apiEnv: map[string]string{"DATABASE_URL": "db", "REDIS_URL": "redis", "DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": "",
			"L1_CACHE_SIZE": "", "L1_CACHE_TTL": "", "L2_CACHE_TTL": ""},
	},
	{
		n:       6,
		backing: []backing{postgres("db", 5446), redis("redis", 6383)},
		apiEnv: map[string]string{"DATABASE_URL": "db", "REDIS_URL": "redis", "DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": "",
			"CACHE_TTL": "", "WRITE_QUEUE_NAME": "", "WRITE_QUEUE_MAX_BACKLOG": "", "WORKER_ENABLED": ""},
		workers: []worker{{service: "worker", binary: "l6-worker", env: map[string]string{
			"DATABASE_URL": "db", "REDIS_URL": "redis", "WRITE_QUEUE_NAME": "", "WORKER_BATCH_SIZE": "",
			"WORKER_POLL_INTERVAL": "", "WORKER_CLAIM_MIN_IDLE": "", "WORKER_MAX_ATTEMPTS": "",
		}}},
	},
	{
		n:       7,
		backing: []backing{postgres("write-db", 5447), postgres("read-db", 5448)},
		apiEnv:  map[string]string{"WRITE_DB_URL": "write-db", "READ_DB_URL": "read-db", "DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": ""},
		workers: []worker{{service: "projector", binary: "l7-projector", env: map[string]string{
			"WRITE_DB_URL": "write-db", "READ_DB_URL": "read-db", "PROJECTOR_BATCH_SIZE": "", "PROJECTOR_POLL_INTERVAL": "",
		}}},
	},
	{
		n:       8,
		backing: []backing{postgres("postgres", 5449), mongo("mongodb", 27017), redis("redis", 6386)},
		apiEnv: map[string]string{"POSTGRES_URL": "postgres", "MONGODB_URL": "mongodb", "REDIS_URL": "redis",
			"DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": "", "CACHE_TTL": ""},
	},
	{
		n: 9,
		backing: []backing{postgres("db-us-east", 5450), postgres("db-eu-west", 5451), postgres("db-asia-pac", 5452),
			redis("cache-us-east", 6387), redis("cache-eu-west", 6388), redis("cache-asia-pac", 6389)},
		apiEnv: map[string]string{"DB_US_EAST_URL": "db-us-east", "DB_EU_WEST_URL": "db-eu-west", "DB_ASIA_PAC_URL": "db-asia-pac",
			"CACHE_US_EAST_URL": "cache-us-east", "CACHE_EU_WEST_URL": "cache-eu-west", "CACHE_ASIA_PAC_URL": "cache-asia-pac",
			"DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": "", "REPLICATION_ENABLED": "", "CACHE_TTL": "", "INTER_REGION_LATENCY": ""},
	},
	{
		n: 10,
		backing: []backing{postgres("db-shard1", 5453), postgres("db-shard2", 5454),
			redis("cache-l2", 6391), redis("rate-limiter", 6392)},
		apiEnv: map[string]string{"DB_SHARD1_URL": "db-shard1", "DB_SHARD2_URL": "db-shard2",
			"CACHE_L2_URL": "cache-l2", "RATE_LIMITER_URL": "rate-limiter", "DB_POOL_MIN_SIZE": "", "DB_POOL_MAX_SIZE": "",
			"CACHE_TTL": "", "RATE_LIMIT_REQUESTS": "", "RATE_LIMIT_WINDOW": "", "CIRCUIT_BREAKER_THRESHOLD": "",
			"CIRCUIT_BREAKER_TIMEOUT": "", "AUTH_ENABLED": "", "ENVIRONMENT": "", "ENABLE_METRICS": ""},
		monitoring: []backing{
			{service: "prometheus", image: "prom/prometheus:v2.55.1", hostPort: 9090, target: 9090},
			{service: "grafana", image: "grafana/grafana:11.4.0", hostPort: 3000, target: 3000},
		},
	},
}

const (
	apiService = "api"
	apiImage   = "dblayers:latest"
	dockerfile = "deploy/Dockerfile"
)

// devDefaults are the only secret-looking values a compose file may carry: the original
// project's documented development credentials.
var devDefaults = []string{"dbpassword", "mongopassword"}

var secretName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL)`)

func TestComposeFiles(t *testing.T) {
	root := repoRoot(t)
	for _, want := range layers {
		t.Run(fmt.Sprintf("l%d", want.n), func(t *testing.T) {
			p, err := loadProject(filepath.Join(root, "docker-compose", fmt.Sprintf("l%d.yml", want.n)))
			require.NoError(t, err)
			assert.Empty(t, validate(root, p, want))
		})
	}
}

func TestEveryComposeFileHasARow(t *testing.T) {
	root := repoRoot(t)
	var rows []string
	for _, l := range layers {
		rows = append(rows, fmt.Sprintf("l%d", l.n))
	}
	assert.ElementsMatch(t, rows, layerNames(t, filepath.Join(root, "docker-compose", "*.yml")),
		"docker-compose/*.yml and the layers table must name the same layers")
}

// TestStackFilesMatchComposeFiles keeps the local stack (scripts/stack/lN.sh) and the compose
// files in step: the same layers, and the same host ports.
func TestStackFilesMatchComposeFiles(t *testing.T) {
	root := repoRoot(t)
	composeLayers := layerNames(t, filepath.Join(root, "docker-compose", "l*.yml"))
	stackLayers := layerNames(t, filepath.Join(root, "scripts", "stack", "l*.sh"))
	require.ElementsMatch(t, composeLayers, stackLayers,
		"every scripts/stack/lN.sh needs a docker-compose/lN.yml and vice versa")

	for _, name := range composeLayers {
		t.Run(name, func(t *testing.T) {
			p, err := loadProject(filepath.Join(root, "docker-compose", name+".yml"))
			require.NoError(t, err)
			var composePorts []uint32
			for _, s := range p.Services {
				if isMonitoring(name, s.Name) {
					continue // not run by the local stack
				}
				for _, port := range s.Ports {
					published, err := strconv.ParseUint(port.Published, 10, 32)
					require.NoError(t, err, "service %s publishes %q", s.Name, port.Published)
					composePorts = append(composePorts, uint32(published))
				}
			}
			assert.ElementsMatch(t, composePorts, stackPorts(t, filepath.Join(root, "scripts", "stack", name+".sh")),
				"host ports of docker-compose/%s.yml and scripts/stack/%s.sh", name, name)
		})
	}
}

// TestValidatorCatchesBrokenFiles proves that the checks above can fail: each case breaks one
// promise in a copy of l2.yml and expects the validator to name it.
func TestValidatorCatchesBrokenFiles(t *testing.T) {
	root := repoRoot(t)
	original, err := os.ReadFile(filepath.Join(root, "docker-compose", "l2.yml"))
	require.NoError(t, err)
	want := layers[slices.IndexFunc(layers, func(l layer) bool { return l.n == 2 })]

	tests := []struct {
		name     string
		old, new string // replaced once in l2.yml; "" keeps the file as it is
		problem  string // expected in one reported problem (or the load error)
	}{
		{name: "unchanged copy passes"},
		{
			name:    "api without health check",
			old:     "      test: [\"CMD\", \"/usr/local/bin/l2\", \"-healthcheck\"]\n      interval: 5s\n      timeout: 3s\n      retries: 5\n      start_period: 10s\n",
			new:     "      disable: true\n",
			problem: "api: no health check",
		},
		{
			name:    "backing port on every interface",
			old:     `"127.0.0.1:6379:6379"`,
			new:     `"6379:6379"`,
			problem: "redis: publishes",
		},
		{
			name:    "dependency only started",
			old:     "      redis:\n        condition: service_healthy",
			new:     "      redis:\n        condition: service_started",
			problem: "depends on redis with condition service_started",
		},
		{
			name:    "api on another host port",
			old:     `"8002:8002"`,
			new:     `"8012:8002"`,
			problem: "api: publishes",
		},
		{
			name:    "URL names a host that is no service",
			old:     "@db:5432/appdb",
			new:     "@database:5432/appdb",
			problem: `DATABASE_URL names host "database"`,
		},
		{
			name:    "required variable missing",
			old:     "      CACHE_TTL: \"300\"\n",
			new:     "",
			problem: "api: no CACHE_TTL",
		},
		{
			name:    "unpinned image",
			old:     "image: ${REDIS_IMAGE:-redis:7-alpine}",
			new:     "image: ${REDIS_IMAGE:-redis:latest}",
			problem: `image "redis:latest"`,
		},
		{
			name:    "secret that is no development default",
			old:     "      CACHE_TTL: \"300\"\n",
			new:     "      CACHE_TTL: \"300\"\n      AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI\n",
			problem: "AWS_SECRET_ACCESS_KEY",
		},
		{
			name:    "password in a URL",
			old:     "REDIS_URL: redis://redis:6379",
			new:     "REDIS_URL: redis://admin:s3cr3t@redis:6379",
			problem: "REDIS_URL carries a password",
		},
		{
			name:    "no restart policy",
			old:     "    restart: unless-stopped\n",
			new:     "",
			problem: "restart policy",
		},
		{
			name:    "api image built elsewhere",
			old:     "dockerfile: deploy/Dockerfile",
			new:     "dockerfile: Dockerfile",
			problem: "built from",
		},
		{
			name:    "a key the Compose specification does not know",
			old:     "    restart: unless-stopped\n",
			new:     "    restart: unless-stopped\n    restart_policy: always\n",
			problem: "restart_policy",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := string(original)
			if tc.old != "" {
				require.Contains(t, text, tc.old, "the case no longer matches l2.yml: update it")
				text = strings.Replace(text, tc.old, tc.new, 1)
			}
			tmp := t.TempDir()
			writeFile(t, filepath.Join(tmp, "docker-compose", "l2.yml"), text)
			writeFile(t, filepath.Join(tmp, dockerfile), "FROM scratch\n")

			var problems []string
			p, err := loadProject(filepath.Join(tmp, "docker-compose", "l2.yml"))
			if err != nil {
				problems = []string{err.Error()}
			} else {
				problems = validate(tmp, p, want)
			}
			if tc.problem == "" {
				assert.Empty(t, problems)
				return
			}
			assert.True(t, slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.problem) }),
				"want a problem containing %q, got %q", tc.problem, problems)
		})
	}
}

// TestValidatorCatchesBrokenWorkers does the same for the rules of a worker service, on a
// copy of l7.yml and its projector.
func TestValidatorCatchesBrokenWorkers(t *testing.T) {
	root := repoRoot(t)
	original, err := os.ReadFile(filepath.Join(root, "docker-compose", "l7.yml"))
	require.NoError(t, err)
	want := layers[slices.IndexFunc(layers, func(l layer) bool { return l.n == 7 })]
	projector := "  projector:\n"
	tests := []struct {
		name, old, new, problem string // old is replaced once after the projector's header
	}{
		{name: "unchanged copy passes"},
		{"another binary", `command: ["l7-projector"]`, `command: ["l7"]`, "projector: command"},
		{"no restart policy", "    restart: unless-stopped\n", "", "projector: restart policy"},
		{"URL names another host", "@read-db:5432/read_db", "@db:5432/read_db", `projector: READ_DB_URL names host "db"`},
		{"required variable missing", "      PROJECTOR_BATCH_SIZE: \"100\"\n", "", "projector: no PROJECTOR_BATCH_SIZE"},
		{"not waiting for a database", "      read-db:\n        condition: service_healthy\n    restart", "    restart", "projector: does not depend on read-db"},
		{"a port", "    restart: unless-stopped\n", "    restart: unless-stopped\n    ports:\n      - \"9000:9000\"\n", "projector: publishes"},
		{"built with other arguments", "args: [GOLANG_IMAGE, RUNTIME_IMAGE]", "args: [GOLANG_IMAGE, RUNTIME_IMAGE, VERSION=2]", "projector: built from"},
		{"built for another stage", "dockerfile: deploy/Dockerfile\n", "dockerfile: deploy/Dockerfile\n      target: build\n", "projector: built from"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := string(original)
			i := strings.Index(text, projector)
			require.Positive(t, i, "l7.yml has no projector service")
			if tc.old != "" {
				require.Contains(t, text[i:], tc.old, "the case no longer matches l7.yml: update it")
				text = text[:i] + strings.Replace(text[i:], tc.old, tc.new, 1)
			}
			tmp := t.TempDir()
			writeFile(t, filepath.Join(tmp, "docker-compose", "l7.yml"), text)
			writeFile(t, filepath.Join(tmp, dockerfile), "FROM scratch\n")
			p, err := loadProject(filepath.Join(tmp, "docker-compose", "l7.yml"))
			require.NoError(t, err)
			problems := validate(tmp, p, want)
			if tc.problem == "" {
				assert.Empty(t, problems)
				return
			}
			assert.True(t, slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.problem) }),
				"want a problem containing %q, got %q", tc.problem, problems)
		})
	}
}

// validate returns every way project p (loaded from root/docker-compose) breaks the rules of
// every compose file or the row want of its layer.
func validate(root string, p *types.Project, want layer) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Rules for every compose file.
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Test[0] == "NONE" {
			add("%s: no health check", name)
		}
		if s.Image != apiImage && !pinned(s.Image) {
			add("%s: image %q is not pinned to a version (only %s may be latest)", name, s.Image, apiImage)
		}
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				add("%s: depends on %s with condition %s, want %s", name, dep, d.Condition, types.ServiceConditionHealthy)
			}
		}
		if s.Build == nil {
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					add("%s: publishes %s:%s, want it on 127.0.0.1 only", name, port.HostIP, port.Published)
				}
			}
		}
		for _, key := range sortedKeys(s.Environment) {
			value := ""
			if v := s.Environment[key]; v != nil {
				value = *v
			}
			if secretName.MatchString(key) && !slices.Contains(devDefaults, value) {
				add("%s: %s looks like a secret and is no documented development default", name, key)
			}
			if u, err := url.Parse(value); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && !slices.Contains(devDefaults, pw) {
					add("%s: %s carries a password that is no documented development default", name, key)
				}
			}
		}
	}

	// Rules of this layer.
	if wantName := fmt.Sprintf("dblayers-l%d", want.n); p.Name != wantName {
		add("project name %q, want %q (volumes of different layers must not mix)", p.Name, wantName)
	}
	wantServices := []string{apiService}
	for _, b := range want.backing {
		wantServices = append(wantServices, b.service)
	}
	for _, w := range want.workers {
		wantServices = append(wantServices, w.service)
	}
	for _, m := range want.monitoring {
		wantServices = append(wantServices, m.service)
	}
	sort.Strings(wantServices)
	if got := sortedNames(p); !slices.Equal(got, wantServices) {
		add("services %v, want %v", got, wantServices)
	}
	for _, b := range append(slices.Clone(want.backing), want.monitoring...) {
		s, ok := p.Services[b.service]
		if !ok {
			continue
		}
		if s.Image != b.image {
			add("%s: image %q, want %q", b.service, s.Image, b.image)
		}
		if !publishes(s, "127.0.0.1", b.hostPort, b.target) {
			add("%s: publishes %v, want 127.0.0.1:%d → %d", b.service, portList(s), b.hostPort, b.target)
		}
	}

	for _, w := range want.workers {
		s, ok := p.Services[w.service]
		if !ok {
			continue
		}
		if s.Image != apiImage {
			add("%s: image %q, want %q", w.service, s.Image, apiImage)
		}
		checkBuild(root, s, add)
		if !slices.Equal(s.Command, types.ShellCommand{w.binary}) {
			add("%s: command %q, want [%q]", w.service, s.Command, w.binary)
		}
		if len(s.Ports) > 0 {
			add("%s: publishes %v, want no port", w.service, portList(s))
		}
		if s.Restart != types.RestartPolicyUnlessStopped {
			add("%s: restart policy %q, want %q", w.service, s.Restart, types.RestartPolicyUnlessStopped)
		}
		if s.HealthCheck != nil && !slices.Equal(s.HealthCheck.Test, types.HealthCheckTest{"CMD", "/usr/local/bin/" + w.binary, "-healthcheck"}) {
			add("%s: health check %q, want the binary's own -healthcheck", w.service, s.HealthCheck.Test)
		}
		for _, b := range want.backing {
			if _, ok := s.DependsOn[b.service]; !ok {
				add("%s: does not depend on %s", w.service, b.service)
			}
		}
		checkEnv(p, want.backing, s, w.env, add)
	}

	api, ok := p.Services[apiService]
	if !ok {
		return problems
	}
	if api.Image != apiImage {
		add("api: image %q, want %q", api.Image, apiImage)
	}
	checkBuild(root, api, add)
	binary := fmt.Sprintf("l%d", want.n)
	if !slices.Equal(api.Command, types.ShellCommand{binary}) {
		add("api: command %q, want [%q]", api.Command, binary)
	}
	if apiPort := uint32(8000 + want.n); !publishes(api, "", apiPort, apiPort) {
		add("api: publishes %v, want %d → %d", portList(api), apiPort, apiPort)
	}
	if api.Restart != types.RestartPolicyUnlessStopped {
		add("api: restart policy %q, want %q", api.Restart, types.RestartPolicyUnlessStopped)
	}
	if api.HealthCheck != nil && !slices.Equal(api.HealthCheck.Test, types.HealthCheckTest{"CMD", "/usr/local/bin/" + binary, "-healthcheck"}) {
		add("api: health check %q, want the binary's own -healthcheck", api.HealthCheck.Test)
	}
	for _, b := range want.backing {
		if _, ok := api.DependsOn[b.service]; !ok {
			add("api: does not depend on %s", b.service)
		}
	}
	checkEnv(p, want.backing, api, want.apiEnv, add)
	return problems
}

// buildArgs are the api image's only build arguments: its base images (scripts/images.sh
// points them at local stand-ins).
var buildArgs = []string{"GOLANG_IMAGE", "RUNTIME_IMAGE"}

// checkBuild reports a service of the api image that is not built exactly as every other:
// from the repository root with deploy/Dockerfile, passing buildArgs and nothing else. One
// build for every file is what lets TestComposeUp build the image once.
func checkBuild(root string, s types.ServiceConfig, add func(string, ...any)) {
	want := types.BuildConfig{Context: filepath.Clean(root), Dockerfile: dockerfile, Args: types.MappingWithEquals{}}
	for _, arg := range buildArgs {
		want.Args[arg] = &arg // as loadProject sets them
	}
	if s.Build == nil {
		add("%s: built from nothing, want %s", s.Name, buildJSON(want))
		return
	}
	got := *s.Build
	got.Context = filepath.Clean(got.Context)
	if buildJSON(got) != buildJSON(want) {
		add("%s: built from %s, want %s", s.Name, buildJSON(got), buildJSON(want))
	} else if _, err := os.Stat(filepath.Join(root, dockerfile)); err != nil {
		add("%s: %v", s.Name, err)
	}
}

// buildJSON is b as compose writes it: set fields only, map keys sorted.
func buildJSON(b types.BuildConfig) string {
	out, err := json.Marshal(b)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

// checkEnv reports the variables of env that service s lacks, and URLs that name another host
// or port than the backing service env wants.
func checkEnv(p *types.Project, backing []backing, s types.ServiceConfig, env map[string]string, add func(string, ...any)) {
	for _, key := range sortedKeys(env) {
		v, ok := s.Environment[key]
		if !ok || v == nil {
			add("%s: no %s in its environment", s.Name, key)
			continue
		}
		host := env[key]
		if host == "" {
			continue
		}
		u, err := url.Parse(*v)
		if err != nil {
			add("%s: %s: %v", s.Name, key, err)
			continue
		}
		if _, ok := p.Services[u.Hostname()]; !ok || u.Hostname() != host {
			add("%s: %s names host %q, want service %q", s.Name, key, u.Hostname(), host)
			continue
		}
		for _, b := range backing {
			if b.service == host && u.Port() != strconv.Itoa(int(b.target)) {
				add("%s: %s names port %q, want %d", s.Name, key, u.Port(), b.target)
			}
		}
	}
}

// loadProject reads a compose file the way `docker compose` does (schema validation,
// normalisation, consistency checks), without the caller's environment. Its environment has
// only the build arguments, each set to its own name, so that a build argument named without
// a value is kept (the loader drops one the environment does not set).
func loadProject(path string) (*types.Project, error) {
	var env []string
	for _, arg := range buildArgs {
		env = append(env, arg+"="+arg)
	}
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithWorkingDirectory(filepath.Dir(path)), cli.WithEnv(env))
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// publishes reports whether s publishes exactly one port, hostPort → target, on hostIP ("" for
// every interface).
func publishes(s types.ServiceConfig, hostIP string, hostPort, target uint32) bool {
	return len(s.Ports) == 1 && s.Ports[0].HostIP == hostIP &&
		s.Ports[0].Published == strconv.Itoa(int(hostPort)) && s.Ports[0].Target == target
}

func portList(s types.ServiceConfig) []string {
	var out []string
	for _, p := range s.Ports {
		out = append(out, fmt.Sprintf("%s:%s→%d", p.HostIP, p.Published, p.Target))
	}
	return out
}

// pinned reports whether image names an explicit tag other than latest (or a digest).
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	return i > strings.LastIndex(image, "/") && image[i+1:] != "latest"
}

func sortedNames(p *types.Project) []string {
	names := make([]string, 0, len(p.Services))
	for name := range p.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// layerNames returns "lN" for every file matching pattern.
func layerNames(tb testing.TB, pattern string) []string {
	tb.Helper()
	files, err := filepath.Glob(pattern)
	require.NoError(tb, err)
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)))
	}
	return names
}

// stackPorts returns the ports a scripts/stack/lN.sh declares: the PORT of its pg, replica,
// redis, ferretdb and service lines (see scripts/stack.sh), less the PostgreSQL a ferretdb line
// stores its documents in.
func stackPorts(tb testing.TB, path string) []uint32 {
	tb.Helper()
	f, err := os.Open(path)
	require.NoError(tb, err)
	defer f.Close()

	// The PostgreSQL that a ferretdb line keeps its documents in belongs to the local mongo
	// stand-in: compose's mongo service has no such server of its own.
	var ports []uint32
	mongoStore := map[uint32]bool{}
	var line string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line += sc.Text()
		if strings.HasSuffix(line, `\`) {
			line = strings.TrimSuffix(line, `\`) + " "
			continue
		}
		fields := strings.Fields(line)
		line = ""
		if len(fields) < 3 || !slices.Contains([]string{"pg", "replica", "redis", "ferretdb", "service"}, fields[0]) {
			continue
		}
		port, err := strconv.ParseUint(fields[2], 10, 32)
		require.NoError(tb, err, "%s: %s", path, strings.Join(fields, " "))
		ports = append(ports, uint32(port))
		if fields[0] == "ferretdb" && len(fields) > 3 {
			u, err := url.Parse(fields[3])
			require.NoError(tb, err, "%s: %s", path, strings.Join(fields, " "))
			store, err := strconv.ParseUint(u.Port(), 10, 32)
			require.NoError(tb, err, "%s: %s", path, strings.Join(fields, " "))
			mongoStore[uint32(store)] = true
		}
	}
	require.NoError(tb, sc.Err())
	return slices.DeleteFunc(ports, func(p uint32) bool { return mongoStore[p] })
}

// isMonitoring reports whether service is one of the monitoring servers of layer name ("lN").
func isMonitoring(name, service string) bool {
	for _, l := range layers {
		if fmt.Sprintf("l%d", l.n) == name {
			return slices.ContainsFunc(l.monitoring, func(m backing) bool { return m.service == service })
		}
	}
	return false
}

func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs("..")
	require.NoError(tb, err)
	return root
}

func writeFile(tb testing.TB, path, text string) {
	tb.Helper()
	require.NoError(tb, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(tb, os.WriteFile(path, []byte(text), 0o644))
}
