package loadgen

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func expand(t *testing.T, s *TemplateSet, seq uint64, run uint64, r *rand.Rand) []string {
	t.Helper()
	v := Values{Run: run}
	s.Draw(&v, seq, r)
	out := make([]string, len(s.Templates))
	for i, tpl := range s.Templates {
		out[i] = string(tpl.Append(nil, &v))
	}
	return out
}

func TestTemplateExpansion(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name, text, want string
		static           bool
	}{
		{"plain", "/read/hot", "/read/hot", true},
		{"empty", "", "", true},
		{"sequence", "/read/k{n}", "/read/k41", false},
		{"run", "lg-{run}-{n}", "lg-7-41", false},
		{"sequence twice", `{"key":"k{n}","value":"v{n}"}`, `{"key":"k41","value":"v41"}`, false},
		{"json braces stay", `{"a":{"b":1}}`, `{"a":{"b":1}}`, true},
		{"unknown placeholder stays", "{x}{n", "{x}{n", true},
		{"key space of one", "k{key:1}", "k0", false},
		{"brace before placeholder", "{{n}}", "{41}", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseTemplates(tc.text)
			require.NoError(t, err)
			assert.Equal(t, tc.static, s.Templates[0].Static())
			assert.Equal(t, tc.want, expand(t, s, 41, 7, r)[0])
		})
	}
}

func TestTemplateValuesSharedWithinRequest(t *testing.T) {
	s, err := ParseTemplates("/read/k{key:1000}/{rand}", `{"key":"k{key:1000}","r":"{rand}","o":"{key:5}"}`)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		out := expand(t, s, 0, 0, r)
		path := strings.Split(strings.TrimPrefix(out[0], "/read/k"), "/")
		require.Len(t, path, 2)
		assert.Contains(t, out[1], `"key":"k`+path[0]+`"`, "one {key:1000} per request")
		assert.Contains(t, out[1], `"r":"`+path[1]+`"`, "one {rand} per request")
	}
}

func TestTemplateRanges(t *testing.T) {
	s, err := ParseTemplates("{key:10}", "{rand}")
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(5, 6))
	seen := map[string]int{}
	for range 2000 {
		out := expand(t, s, 0, 0, r)
		k, err := strconv.ParseUint(out[0], 10, 64)
		require.NoError(t, err)
		require.Less(t, k, uint64(10))
		seen[out[0]]++
		rnd, err := strconv.ParseUint(out[1], 10, 64)
		require.NoError(t, err)
		require.Less(t, rnd, uint64(1)<<63)
	}
	assert.Len(t, seen, 10, "every key of the space is drawn")
	for k, c := range seen {
		assert.Greater(t, c, 100, "key %s drawn about 200 times in 2000, uniformly", k)
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, text := range []string{"{key:0}", "{key:}", "{key:-3}", "{key:x}", "{key:99999999999999999999999}"} {
		_, err := ParseTemplates(text)
		assert.Error(t, err, text)
	}
}

func TestTemplateString(t *testing.T) {
	s, err := ParseTemplates("/r/{n}/{run}/{rand}/{key:7}")
	require.NoError(t, err)
	assert.Equal(t, "/r/{n}/{run}/{rand}/{key:7}", s.Templates[0].String())
}
