package architecture_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the table in LAYERS.md")

const module = "github.com/dblayers/dblayers/"

// pkg is what `go list -json` says of one package of the module (tests left out).
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list returns the module's packages by path relative to the module ("layers/l2").
func list(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	require.NoError(t, err, "go list")
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		require.NoError(t, dec.Decode(&p))
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	return pkgs
}

// own is the module's packages among paths, relative to the module.
func own(paths []string) []string {
	var out []string
	for _, p := range paths {
		if rel, ok := strings.CutPrefix(p, module); ok {
			out = append(out, rel)
		}
	}
	return out
}

var (
	layerPkg  = regexp.MustCompile(`^layers/(l[0-9]+)$`)
	layerBin  = regexp.MustCompile(`^cmd/(l[0-9]+)(-[a-z0-9-]+)?$`)
	startUp   = []string{"internal/service", "internal/config"}
	toolNames = []string{"cmd/loadgen", "cmd/loadreport", "cmd/drill"}
)

func TestImportFloors(t *testing.T) {
	pkgs := list(t)
	require.Contains(t, pkgs, "layers/l2", "the listing has the layers")
	for path, p := range pkgs {
		imports := own(p.Imports)
		switch {
		case layerPkg.MatchString(path):
			for _, imp := range imports {
				assert.False(t, strings.HasPrefix(imp, "layers/"), "layer %s imports layer %s", path, imp)
			}
		case strings.HasPrefix(path, "internal/"):
			for _, imp := range imports {
				assert.False(t, strings.HasPrefix(imp, "layers/"), "internal package %s imports layer %s", path, imp)
			}
		case layerBin.MatchString(path):
			layer := "layers/" + layerBin.FindStringSubmatch(path)[1]
			allowed := append(slices.Clone(startUp), layer)
			allowed = append(allowed, own(pkgs[layer].Imports)...)
			for _, imp := range imports {
				assert.Contains(t, allowed, imp, "%s only wires: it imports %s", path, imp)
			}
		case slices.Contains(toolNames, path):
			for _, imp := range imports {
				assert.False(t, strings.HasPrefix(imp, "layers/"), "tool %s imports layer %s", path, imp)
			}
		}
	}
}

// The markers around the generated table in LAYERS.md.
const (
	tableBegin = "<!-- internal-packages:begin (go test ./internal/architecture -run TestLayersTable -update) -->\n"
	tableEnd   = "<!-- internal-packages:end -->\n"
)

// table is LAYERS.md's table of the internal packages each layer uses, directly or through
// another, as `go list -deps` finds them.
func table(pkgs map[string]pkg) string {
	var layers []string
	for path := range pkgs {
		if layerPkg.MatchString(path) {
			layers = append(layers, path)
		}
	}
	number := func(path string) int {
		var n int
		_, _ = fmt.Sscanf(layerPkg.FindStringSubmatch(path)[1], "l%d", &n)
		return n
	}
	slices.SortFunc(layers, func(a, b string) int { return number(a) - number(b) })
	var b strings.Builder
	b.WriteString("| layer | internal packages it uses (directly or through another) |\n|---|---|\n")
	for _, l := range layers {
		var used []string
		for _, d := range own(pkgs[l].Deps) {
			if name, ok := strings.CutPrefix(d, "internal/"); ok {
				used = append(used, "`"+name+"`")
			}
		}
		slices.Sort(used)
		fmt.Fprintf(&b, "| [L%d](%s/README.md) | %s |\n", number(l), l, strings.Join(used, ", "))
	}
	return b.String()
}

func TestLayersTable(t *testing.T) {
	const file = "../../LAYERS.md"
	doc, err := os.ReadFile(file)
	require.NoError(t, err)
	text := string(doc)
	begin, end := strings.Index(text, tableBegin), strings.Index(text, tableEnd)
	require.True(t, begin >= 0 && end > begin, "LAYERS.md has the table's markers:\n%s%s", tableBegin, tableEnd)
	want := table(list(t))
	got := text[begin+len(tableBegin) : end]
	if *update {
		require.NoError(t, os.WriteFile(file, []byte(text[:begin+len(tableBegin)]+want+text[end:]), 0o644))
		return
	}
	assert.Equal(t, want, got, "LAYERS.md's table is stale: go test ./internal/architecture -run TestLayersTable -update")
}
