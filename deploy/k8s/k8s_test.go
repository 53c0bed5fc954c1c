// Package k8s_test checks the Kubernetes manifests of deploy/k8s without a cluster: every
// YAML document of every file parses; every overlay renders (a small kustomize of our own:
// resources, components, generators, JSON 6902 patches, namespace) into objects whose
// selectors match their pods, whose probes hit /health on the API's port 8000+N, whose
// references (ConfigMaps, Secrets, CloudNativePG Secrets, hosts in URLs, $(VAR)s) resolve,
// and whose settings are ones the layer reads. When kubectl is on PATH, the same checks run
// on `kubectl kustomize`'s own rendering too.
//
// A new overlay adds one row to the layers table below.
package k8s_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// layer is what overlays/lN must hold besides what every overlay keeps.
type layer struct {
	n        int
	clusters map[string]int // CloudNativePG Clusters: name → instances
	workers  []string       // binaries of Deployments besides the API (no HTTP port)
	stateful []string       // StatefulSets (servers that keep data on a volume)
	services []string       // Services besides "api" and the Clusters' own
	secrets  []string       // Secrets generated from an env file the user provides
}

var layers = []layer{
	{n: 0, clusters: map[string]int{"db": 1}},
	{n: 1, clusters: map[string]int{"db": 1}},
	{n: 2, clusters: map[string]int{"db": 1}, services: []string{"redis"}},
	{n: 3, clusters: map[string]int{"db": 3}, services: []string{"redis"}},
	{n: 4, clusters: map[string]int{"shard-0": 1, "shard-1": 1, "shard-2": 1}, services: []string{"redis"}},
	{n: 5, clusters: map[string]int{"db": 1}, services: []string{"redis"}},
	{n: 6, clusters: map[string]int{"db": 1}, workers: []string{"l6-worker"}, stateful: []string{"redis"},
		services: []string{"redis"}},
	{n: 7, clusters: map[string]int{"write-db": 1, "read-db": 1}, workers: []string{"l7-projector"}},
	{n: 8, clusters: map[string]int{"db": 1}, stateful: []string{"mongodb"}, services: []string{"redis", "mongodb"},
		secrets: []string{"mongodb"}},
	{n: 9, clusters: map[string]int{"db-us-east": 1, "db-eu-west": 1, "db-asia-pac": 1},
		services: []string{"cache-us-east", "cache-eu-west", "cache-asia-pac"}},
	{n: 10, clusters: map[string]int{"db-shard1": 1, "db-shard2": 1}, services: []string{"cache-l2", "rate-limiter"},
		secrets: []string{"api-key"}},
}

// cnpgSecretKeys are the keys of the Secret CloudNativePG creates for a Cluster's database
// owner, <cluster>-app.
var cnpgSecretKeys = []string{"username", "password", "dbname", "host", "port", "uri", "jdbc-uri", "pgpass"}

// Kinds the manifests may hold; anything else is a mistake (or needs a row here).
var knownKinds = map[string]string{
	"Namespace": "v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
	"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Cluster": "postgresql.cnpg.io/v1",
}

const repoRoot = "../.."

type object = map[string]any

// ---------------------------------------------------------------------------------------------
// Every file

func TestEveryYAMLFileParses(t *testing.T) {
	files := yamlFiles(t)
	require.NotEmpty(t, files)
	for _, f := range files {
		docs := readDocs(t, f)
		assert.NotEmpty(t, docs, "%s holds no YAML document", f)
	}
}

func TestEveryManifestIsUsedByAKustomization(t *testing.T) {
	used := map[string]bool{}
	for _, dir := range kustomizationDirs(t) {
		k := readKustomization(t, dir)
		used[filepath.Join(dir, "kustomization.yaml")] = true
		for _, r := range k.Resources {
			used[filepath.Clean(filepath.Join(dir, r))] = true
		}
		for _, p := range k.Patches {
			if p.Path != "" {
				used[filepath.Clean(filepath.Join(dir, p.Path))] = true
			}
		}
	}
	for _, f := range yamlFiles(t) {
		assert.True(t, used[f], "%s is not a resource or patch of any kustomization", f)
	}
}

func TestEveryOverlayHasARow(t *testing.T) {
	dirs, err := filepath.Glob("overlays/l*")
	require.NoError(t, err)
	var got, want []string
	for _, d := range dirs {
		got = append(got, filepath.Base(d))
	}
	for _, l := range layers {
		want = append(want, fmt.Sprintf("l%d", l.n))
	}
	assert.ElementsMatch(t, want, got, "overlays/ and the layers table disagree")
}

// ---------------------------------------------------------------------------------------------
// Every overlay, rendered

func TestOverlays(t *testing.T) {
	for _, l := range layers {
		t.Run(fmt.Sprintf("l%d", l.n), func(t *testing.T) {
			dir := fmt.Sprintf("overlays/l%d", l.n)
			checkReferencedFilesExist(t, dir)
			checkRendered(t, l, render(t, dir))
		})
	}
}

// TestOverlaysRenderedByKubectl runs the same checks on kubectl's own kustomize (hash
// suffixes on generated names, its patch and namespace rules), when kubectl is installed.
func TestOverlaysRenderedByKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the overlays are checked by TestOverlays' own renderer only")
	}
	// A copy of the tree with the env files users provide, made from their examples.
	tmp := t.TempDir()
	require.NoError(t, os.CopyFS(tmp, os.DirFS(".")))
	examples, err := filepath.Glob(filepath.Join(tmp, "overlays/*/*.env.example"))
	require.NoError(t, err)
	for _, ex := range examples {
		keys := envFileKeys(t, ex)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=test-%s\n", k, strings.ToLower(k))
		}
		require.NoError(t, os.WriteFile(strings.TrimSuffix(ex, ".example"), []byte(b.String()), 0o600))
	}
	for _, l := range layers {
		t.Run(fmt.Sprintf("l%d", l.n), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(kubectl, "kustomize", filepath.Join(tmp, fmt.Sprintf("overlays/l%d", l.n)))
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), "kubectl kustomize: %s", stderr.String())
			objs := parseDocs(t, "kubectl kustomize", stdout.Bytes())
			checkRendered(t, l, objs)
		})
	}
}

// checkRendered holds the rules for a rendered overlay.
func checkRendered(t *testing.T, l layer, objs []object) {
	t.Helper()
	ns := fmt.Sprintf("dblayers-l%d", l.n)
	port := 8000 + l.n
	byKind := map[string][]object{}
	seen := map[string]bool{}
	for _, o := range objs {
		kind, name := str(o, "kind"), str(o, "metadata", "name")
		require.NotEmpty(t, name, "an object of kind %s has no name", kind)
		api, known := knownKinds[kind]
		if assert.True(t, known, "unexpected kind %s (%s)", kind, name) {
			assert.Equal(t, api, str(o, "apiVersion"), "%s %s", kind, name)
		}
		assert.False(t, seen[kind+"/"+name], "two objects %s %s", kind, name)
		seen[kind+"/"+name] = true
		if kind == "Namespace" {
			assert.Equal(t, ns, name)
		} else {
			assert.Equal(t, ns, str(o, "metadata", "namespace"), "namespace of %s %s", kind, name)
		}
		byKind[kind] = append(byKind[kind], o)
	}
	require.Len(t, byKind["Namespace"], 1, "one Namespace %s", ns)

	// CloudNativePG Clusters: the ones the layer needs, with a database and its owner.
	clusters := map[string]int{}
	for _, c := range byKind["Cluster"] {
		name := str(c, "metadata", "name")
		clusters[name] = num(c, "spec", "instances")
		assert.NotEmpty(t, str(c, "spec", "bootstrap", "initdb", "database"), "Cluster %s: database", name)
		assert.NotEmpty(t, str(c, "spec", "bootstrap", "initdb", "owner"), "Cluster %s: owner", name)
		assert.NotEmpty(t, str(c, "spec", "storage", "size"), "Cluster %s: storage size", name)
		assert.Contains(t, str(c, "spec", "imageName"), "postgresql:15", "Cluster %s: PostgreSQL 15 like the compose files", name)
	}
	assert.Equal(t, l.clusters, clusters, "CloudNativePG Clusters (name → instances)")

	// Generated ConfigMaps and Secrets, by name (with kustomize's hash suffix, if any).
	configMaps := map[string]map[string]string{}
	for _, c := range byKind["ConfigMap"] {
		data := map[string]string{}
		for k, v := range mapAt(c, "data") {
			data[k] = fmt.Sprint(v)
		}
		configMaps[str(c, "metadata", "name")] = data
	}
	secrets := map[string][]string{}
	var generated []string
	for _, s := range byKind["Secret"] {
		name := str(s, "metadata", "name")
		secrets[name] = slices.Collect(maps.Keys(mapAt(s, "data")))
		generated = append(generated, unhash(name))
	}
	assert.ElementsMatch(t, l.secrets, generated, "generated Secrets")
	for c := range clusters {
		secrets[c+"-app"] = cnpgSecretKeys
	}

	// Services: each selects pods of this overlay, on ports those pods have.
	workloads := append(slices.Clone(byKind["Deployment"]), byKind["StatefulSet"]...)
	services := map[string]int{} // name → first port
	for c := range clusters {
		for _, suffix := range []string{"-rw", "-ro", "-r"} {
			services[c+suffix] = 5432
		}
	}
	var serviceNames []string
	for _, s := range byKind["Service"] {
		name := str(s, "metadata", "name")
		serviceNames = append(serviceNames, name)
		sel := stringMap(mapAt(s, "spec", "selector"))
		require.NotEmpty(t, sel, "Service %s has no selector", name)
		var pods []object
		for _, w := range workloads {
			if subset(sel, stringMap(mapAt(w, "spec", "template", "metadata", "labels"))) {
				pods = append(pods, w)
			}
		}
		require.NotEmpty(t, pods, "Service %s selects no pod of this overlay (selector %v)", name, sel)
		for i, p := range list(s, "spec", "ports") {
			target := anyAt(p.(object), "targetPort")
			for _, w := range pods {
				assert.True(t, hasPort(w, target), "Service %s: targetPort %v is not a port of %s",
					name, target, str(w, "metadata", "name"))
			}
			if i == 0 {
				services[name] = num(p.(object), "port")
			}
		}
	}
	assert.ElementsMatch(t, append([]string{"api"}, l.services...), serviceNames, "Services")
	assert.Equal(t, port, services["api"], "Service api port")

	var stateful []string
	for _, s := range byKind["StatefulSet"] {
		name := str(s, "metadata", "name")
		stateful = append(stateful, name)
		assert.Contains(t, serviceNames, str(s, "spec", "serviceName"), "StatefulSet %s: serviceName", name)
		assert.NotEmpty(t, list(s, "spec", "volumeClaimTemplates"), "StatefulSet %s keeps its data on a volume", name)
	}
	assert.ElementsMatch(t, l.stateful, stateful, "StatefulSets")

	// Workloads: selectors, probes, references; the API and the workers of the layer.
	var workers []string
	apis := 0
	for _, w := range workloads {
		name := str(w, "metadata", "name")
		sel := stringMap(mapAt(w, "spec", "selector", "matchLabels"))
		labels := stringMap(mapAt(w, "spec", "template", "metadata", "labels"))
		require.NotEmpty(t, sel, "%s: no selector", name)
		assert.True(t, subset(sel, labels), "%s: selector %v does not match its pod labels %v", name, sel, labels)
		assert.Equal(t, name, labels["app.kubernetes.io/name"], "%s: pod label app.kubernetes.io/name", name)
		assert.Equal(t, "dblayers", labels["app.kubernetes.io/part-of"], "%s: pod label app.kubernetes.io/part-of", name)
		for _, c := range list(w, "spec", "template", "spec", "containers") {
			c := c.(object)
			where := name + "/" + str(c, "name")
			checkContainer(t, where, c, configMaps, secrets, services)
			binary := ""
			if cmd := list(c, "command"); len(cmd) > 0 {
				binary = fmt.Sprint(cmd[0])
			}
			if str(c, "image") != "dblayers:latest" {
				continue
			}
			checkSettings(t, where, binary, c, configMaps)
			if name == "api" {
				apis++
				assert.Equal(t, []any{fmt.Sprintf("l%d", l.n)}, list(c, "command"), "%s: command", where)
				assert.Equal(t, port, portNamed(c, "http"), "%s: containerPort of port http", where)
				assert.Equal(t, strconv.Itoa(port), envValue(c, "PORT", configMaps), "%s: PORT", where)
			} else {
				workers = append(workers, binary)
			}
		}
	}
	assert.Equal(t, 1, apis, "one API container")
	assert.ElementsMatch(t, l.workers, workers, "worker Deployments (by binary)")
}

// checkContainer: resources, probes (/health on the named http port for HTTP servers, an
// exec or TCP probe for the others), and references that resolve.
func checkContainer(t *testing.T, where string, c object, configMaps map[string]map[string]string,
	secrets map[string][]string, services map[string]int) {
	t.Helper()
	assert.NotEmpty(t, str(c, "image"), "%s: image", where)
	assert.NotEmpty(t, mapAt(c, "resources", "requests"), "%s: resource requests", where)
	assert.NotEmpty(t, str(c, "resources", "limits", "memory"), "%s: memory limit", where)
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		p := mapAt(c, probe)
		require.NotEmpty(t, p, "%s: no %s", where, probe)
		if portNamed(c, "http") != 0 {
			assert.Equal(t, "/health", str(p, "httpGet", "path"), "%s: %s path", where, probe)
			hp := anyAt(p, "httpGet", "port")
			assert.True(t, hp == "http" || hp == portNamed(c, "http"), "%s: %s on port %v, not the http port", where, probe, hp)
		} else {
			assert.True(t, mapAt(p, "exec") != nil || mapAt(p, "tcpSocket") != nil || mapAt(p, "httpGet") != nil,
				"%s: %s has no handler", where, probe)
		}
		if tp := anyAt(p, "tcpSocket", "port"); tp != nil {
			assert.True(t, hasPort(object{"spec": object{"template": object{"spec": object{"containers": []any{c}}}}}, tp),
				"%s: %s on a port the container does not have", where, probe)
		}
	}

	for _, ef := range list(c, "envFrom") {
		ef := ef.(object)
		if n := str(ef, "configMapRef", "name"); n != "" {
			assert.Contains(t, configMaps, n, "%s: envFrom ConfigMap %s", where, n)
		}
		if n := str(ef, "secretRef", "name"); n != "" {
			assert.Contains(t, secrets, n, "%s: envFrom Secret %s", where, n)
		}
	}
	defined := map[string]bool{}
	for _, e := range list(c, "env") {
		e := e.(object)
		name := str(e, "name")
		if ref := mapAt(e, "valueFrom", "secretKeyRef"); ref != nil {
			keys, ok := secrets[str(ref, "name")]
			if assert.True(t, ok, "%s: %s from unknown Secret %s", where, name, str(ref, "name")) {
				assert.Contains(t, keys, str(ref, "key"), "%s: %s: key of Secret %s", where, name, str(ref, "name"))
			}
		}
		if ref := mapAt(e, "valueFrom", "configMapKeyRef"); ref != nil {
			data, ok := configMaps[str(ref, "name")]
			if assert.True(t, ok, "%s: %s from unknown ConfigMap %s", where, name, str(ref, "name")) {
				assert.Contains(t, data, str(ref, "key"), "%s: %s: key", where, name)
			}
		}
		value := str(e, "value")
		for _, m := range varRef.FindAllStringSubmatch(value, -1) {
			assert.True(t, defined[m[1]], "%s: %s uses $(%s), which is not defined above it", where, name, m[1])
		}
		checkURL(t, where+" "+name, value, services)
		defined[name] = true
	}
	for _, ef := range list(c, "envFrom") {
		for k, v := range configMaps[str(ef.(object), "configMapRef", "name")] {
			checkURL(t, where+" "+k, v, services)
		}
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkURL: a postgresql://, redis:// or mongodb:// URL names a Service of this overlay (or a
// Cluster's) on that Service's port.
func checkURL(t *testing.T, where, value string, services map[string]int) {
	t.Helper()
	scheme, _, ok := strings.Cut(value, "://")
	if !ok || !slices.Contains([]string{"postgresql", "postgres", "redis", "mongodb"}, scheme) {
		return
	}
	u, err := url.Parse(varRef.ReplaceAllString(value, "x"))
	if !assert.NoError(t, err, "%s: %q", where, value) {
		return
	}
	port, ok := services[u.Hostname()]
	if assert.True(t, ok, "%s: host %s of %q is no Service of this overlay", where, u.Hostname(), value) {
		assert.Equal(t, strconv.Itoa(port), u.Port(), "%s: port of %q", where, value)
	}
}

// checkSettings: the variables a container of one of our binaries gets (its env and its
// ConfigMaps, minus helpers only used inside other values) are settings that binary reads.
func checkSettings(t *testing.T, where, binary string, c object, configMaps map[string]map[string]string) {
	t.Helper()
	known, err := settingsOf(binary)
	if err != nil {
		t.Logf("%s: settings not checked: %v", where, err)
		return
	}
	helpers := map[string]bool{}
	var names []string
	for _, e := range list(c, "env") {
		names = append(names, str(e.(object), "name"))
		for _, m := range varRef.FindAllStringSubmatch(str(e.(object), "value"), -1) {
			helpers[m[1]] = true
		}
	}
	for _, ef := range list(c, "envFrom") {
		names = append(names, slices.Collect(maps.Keys(configMaps[str(ef.(object), "configMapRef", "name")]))...)
	}
	for _, n := range names {
		if !helpers[n] {
			assert.True(t, known[n], "%s: %s is not a setting of %s (no env:%q tag in its code)", where, n, binary, n)
		}
	}
}

// settingsOf reads the env:"NAME" tags a binary's configuration can hold: those of its layer
// package, its cmd package and the shared internal packages.
func settingsOf(binary string) (map[string]bool, error) {
	m := regexp.MustCompile(`^(l\d+)`).FindString(binary)
	dirs := []string{filepath.Join(repoRoot, "layers", m), filepath.Join(repoRoot, "cmd", binary)}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("%s does not exist yet", d)
		}
	}
	tag := regexp.MustCompile(`env:"([A-Z][A-Z0-9_]*)"`)
	known := map[string]bool{}
	scan := func(root string) error {
		return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			for _, m := range tag.FindAllSubmatch(b, -1) {
				known[string(m[1])] = true
			}
			return err
		})
	}
	for _, d := range append(dirs, filepath.Join(repoRoot, "internal")) {
		if err := scan(d); err != nil {
			return nil, err
		}
	}
	return known, nil
}

// checkReferencedFilesExist: every path a kustomization names exists; an env file of a
// secretGenerator exists or is documented by an example next to it (the user provides it).
func checkReferencedFilesExist(t *testing.T, dir string) {
	t.Helper()
	k := readKustomization(t, dir)
	var paths []string
	paths = append(append(paths, k.Resources...), k.Components...)
	for _, p := range k.Patches {
		if p.Path != "" {
			paths = append(paths, p.Path)
		}
	}
	for _, g := range k.ConfigMapGenerator {
		paths = append(paths, g.Envs...)
	}
	for _, p := range paths {
		_, err := os.Stat(filepath.Join(dir, p))
		assert.NoError(t, err, "%s/kustomization.yaml names %s", dir, p)
	}
	for _, g := range k.SecretGenerator {
		assert.Empty(t, g.Literals, "%s: Secret %s from literals would put a secret in the repository", dir, g.Name)
		for _, e := range g.Envs {
			_, err := os.Stat(filepath.Join(dir, e+".example"))
			assert.NoError(t, err, "%s: Secret %s: no %s.example documents the env file users provide", dir, g.Name, e)
		}
	}
	for _, c := range k.Components {
		checkReferencedFilesExist(t, filepath.Join(dir, c))
	}
	for _, r := range k.Resources {
		if st, err := os.Stat(filepath.Join(dir, r)); err == nil && st.IsDir() {
			checkReferencedFilesExist(t, filepath.Join(dir, r))
		}
	}
}

// ---------------------------------------------------------------------------------------------
// A small kustomize: what these manifests use, and nothing else (anything else fails).

type kustomization struct {
	APIVersion         string      `yaml:"apiVersion"`
	Kind               string      `yaml:"kind"`
	Namespace          string      `yaml:"namespace"`
	Resources          []string    `yaml:"resources"`
	Components         []string    `yaml:"components"`
	ConfigMapGenerator []generator `yaml:"configMapGenerator"`
	SecretGenerator    []generator `yaml:"secretGenerator"`
	Patches            []patch     `yaml:"patches"`
	Images             []any       `yaml:"images"` // a user's image override: not needed by the checks
}

type generator struct {
	Name     string   `yaml:"name"`
	Literals []string `yaml:"literals"`
	Envs     []string `yaml:"envs"`
}

type patch struct {
	Path   string `yaml:"path"`
	Patch  string `yaml:"patch"`
	Target struct {
		Kind string `yaml:"kind"`
		Name string `yaml:"name"`
	} `yaml:"target"`
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	require.NoError(t, err)
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a field this renderer does not know would be silently ignored
	require.NoError(t, dec.Decode(&k), "%s/kustomization.yaml", dir)
	require.Contains(t, []string{"Kustomization", "Component"}, k.Kind, "%s: kind", dir)
	return k
}

// render builds the objects of the kustomization in dir.
func render(t *testing.T, dir string) []object {
	t.Helper()
	k := readKustomization(t, dir)
	var objs []object
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		st, err := os.Stat(path)
		require.NoError(t, err)
		if st.IsDir() {
			objs = append(objs, render(t, path)...)
		} else {
			objs = append(objs, readDocs(t, path)...)
		}
	}
	for _, c := range k.Components {
		objs = append(objs, render(t, filepath.Join(dir, c))...)
	}
	for _, g := range k.ConfigMapGenerator {
		objs = append(objs, object{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": object{"name": g.Name}, "data": generatorData(t, dir, g, false)})
	}
	for _, g := range k.SecretGenerator {
		objs = append(objs, object{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
			"metadata": object{"name": g.Name}, "data": generatorData(t, dir, g, true)})
	}
	for _, p := range k.Patches {
		body := []byte(p.Patch)
		if p.Path != "" {
			var err error
			body, err = os.ReadFile(filepath.Join(dir, p.Path))
			require.NoError(t, err)
		}
		var ops []struct {
			Op    string `yaml:"op"`
			Path  string `yaml:"path"`
			Value any    `yaml:"value"`
		}
		require.NoError(t, yaml.Unmarshal(body, &ops), "%s: patch %s: only JSON 6902 patches are supported", dir, p.Path)
		require.NotEmpty(t, ops, "%s: empty patch", dir)
		matched := 0
		for _, o := range objs {
			if str(o, "kind") != p.Target.Kind || str(o, "metadata", "name") != p.Target.Name {
				continue
			}
			matched++
			for _, op := range ops {
				require.NoError(t, applyOp(o, op.Op, op.Path, op.Value), "%s: patch %s%s on %s %s",
					dir, p.Path, op.Path, p.Target.Kind, p.Target.Name)
			}
		}
		require.Equal(t, 1, matched, "%s: patch target %s %s", dir, p.Target.Kind, p.Target.Name)
	}
	if k.Namespace != "" {
		for _, o := range objs {
			if str(o, "kind") != "Namespace" {
				o["metadata"].(object)["namespace"] = k.Namespace
			}
		}
	}
	return objs
}

// generatorData is the data of a generated ConfigMap or Secret. A Secret's env file that the
// user provides is read from its .example when absent (keys only matter here).
func generatorData(t *testing.T, dir string, g generator, secret bool) object {
	t.Helper()
	data := object{}
	for _, l := range g.Literals {
		k, v, ok := strings.Cut(l, "=")
		require.True(t, ok, "%s: literal %q of %s is not KEY=VALUE", dir, l, g.Name)
		data[k] = v
	}
	for _, e := range g.Envs {
		path := filepath.Join(dir, e)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && secret {
			path += ".example"
		}
		for _, k := range envFileKeys(t, path) {
			data[k] = "value"
		}
	}
	require.NotEmpty(t, data, "%s: %s generates no data", dir, g.Name)
	return data
}

func envFileKeys(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		require.True(t, ok, "%s: %q is not KEY=VALUE", path, line)
		keys = append(keys, k)
	}
	require.NotEmpty(t, keys, "%s has no KEY=VALUE line", path)
	return keys
}

// applyOp applies one JSON 6902 operation (add, replace) at a JSON pointer.
func applyOp(doc object, op, pointer string, value any) error {
	if op != "add" && op != "replace" {
		return fmt.Errorf("op %q is not supported here", op)
	}
	parts := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	for i := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(parts[i], "~1", "/"), "~0", "~")
	}
	var parent any = doc
	for _, p := range parts[:len(parts)-1] {
		next, err := child(parent, p)
		if err != nil {
			return err
		}
		parent = next
	}
	last := parts[len(parts)-1]
	switch node := parent.(type) {
	case object:
		if _, exists := node[last]; op == "replace" && !exists {
			return fmt.Errorf("replace: %s does not exist", pointer)
		}
		node[last] = value
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(node) || op != "replace" {
			return fmt.Errorf("%s %s: only replacing an existing list element is supported", op, pointer)
		}
		node[i] = value
	default:
		return fmt.Errorf("%s: parent is not an object or a list", pointer)
	}
	return nil
}

func child(node any, key string) (any, error) {
	switch n := node.(type) {
	case object:
		c, ok := n[key]
		if !ok {
			return nil, fmt.Errorf("no %q", key)
		}
		return c, nil
	case []any:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(n) {
			return nil, fmt.Errorf("no element %q", key)
		}
		return n[i], nil
	}
	return nil, fmt.Errorf("cannot descend into %T at %q", node, key)
}

// ---------------------------------------------------------------------------------------------
// Reading YAML and walking objects

func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	require.NoError(t, filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	}))
	return files
}

func kustomizationDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	for _, f := range yamlFiles(t) {
		if filepath.Base(f) == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	return dirs
}

func readDocs(t *testing.T, path string) []object {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return parseDocs(t, path, b)
}

func parseDocs(t *testing.T, name string, b []byte) []object {
	t.Helper()
	var docs []object
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for i := 1; ; i++ {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err, "%s: document %d", name, i)
		switch d := v.(type) {
		case nil: // an empty document
		case object:
			docs = append(docs, d)
		case []any: // a JSON 6902 patch file: a list of operations
			docs = append(docs, object{"patch": d})
		default:
			t.Fatalf("%s: document %d is a %T", name, i, v)
		}
	}
}

func anyAt(o object, path ...string) any {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(object)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func str(o object, path ...string) string {
	if s, ok := anyAt(o, path...).(string); ok {
		return s
	}
	return ""
}

func num(o object, path ...string) int {
	if n, ok := anyAt(o, path...).(int); ok {
		return n
	}
	return 0
}

func mapAt(o object, path ...string) object {
	m, _ := anyAt(o, path...).(object)
	return m
}

func list(o object, path ...string) []any {
	l, _ := anyAt(o, path...).([]any)
	return l
}

func stringMap(o object) map[string]string {
	out := map[string]string{}
	for k, v := range o {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func subset(small, big map[string]string) bool {
	for k, v := range small {
		if big[k] != v {
			return false
		}
	}
	return len(small) > 0
}

// portNamed is the containerPort of the container's port called name, or 0.
func portNamed(c object, name string) int {
	for _, p := range list(c, "ports") {
		if str(p.(object), "name") == name {
			return num(p.(object), "containerPort")
		}
	}
	return 0
}

// hasPort: a container of workload w has port target (a name or a number).
func hasPort(w object, target any) bool {
	for _, c := range list(w, "spec", "template", "spec", "containers") {
		for _, p := range list(c.(object), "ports") {
			p := p.(object)
			if target == p["name"] || target == p["containerPort"] {
				return true
			}
		}
	}
	return false
}

// envValue is the value of variable name in container c, from its env or its ConfigMaps.
func envValue(c object, name string, configMaps map[string]map[string]string) string {
	for _, e := range list(c, "env") {
		if str(e.(object), "name") == name {
			return str(e.(object), "value")
		}
	}
	for _, ef := range list(c, "envFrom") {
		if v, ok := configMaps[str(ef.(object), "configMapRef", "name")][name]; ok {
			return v
		}
	}
	return ""
}

// unhash strips kustomize's hash suffix from a generated name: api-key-tt5m6d9mgt → api-key.
func unhash(name string) string {
	if i := strings.LastIndex(name, "-"); i > 0 && len(name)-i-1 == 10 {
		return name[:i]
	}
	return name
}
