package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type inner struct {
	Size int32 `env:"SIZE" default:"10"`
}

type sample struct {
	URL     string        `env:"URL" default:"postgres://u:pw@h/db"`
	TTL     time.Duration `env:"TTL" default:"300"`
	Enabled bool          `env:"ENABLED" default:"true"`
	Ratio   float64       `env:"RATIO" default:"0.5"`
	List    []string      `env:"LIST" default:"a, b,,c"`
	Key     string        `env:"KEY" default:"dev-key" secret:"true"`
	NoDef   int           `env:"NODEF"`
	More    []string      `env:"MORE_{n}_URL" from:"2"`
	Inner   inner
}

func loadFrom(t *testing.T, env map[string]string) (sample, error) {
	t.Helper()
	var s sample
	err := load(reflectValue(&s), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	return s, err
}

func TestDefaults(t *testing.T) {
	s, err := loadFrom(t, nil)
	require.NoError(t, err)
	assert.Equal(t, sample{URL: "postgres://u:pw@h/db", TTL: 300 * time.Second, Enabled: true, Ratio: 0.5,
		List: []string{"a", "b", "c"}, Key: "dev-key", Inner: inner{Size: 10}}, s)
}

// A struct that holds a shared block can change the block's defaults; the environment
// still wins over them.
func TestDefaultsOfANestedBlock(t *testing.T) {
	var s struct {
		Inner inner `defaults:"SIZE=20"`
	}
	lookup := func(env map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	require.NoError(t, load(reflectValue(&s), lookup(nil), nil))
	assert.Equal(t, int32(20), s.Inner.Size)
	require.NoError(t, load(reflectValue(&s), lookup(map[string]string{"SIZE": "3"}), nil))
	assert.Equal(t, int32(3), s.Inner.Size)
}

func TestEnvironmentWins(t *testing.T) {
	s, err := loadFrom(t, map[string]string{"TTL": "250ms", "ENABLED": "off", "SIZE": "3", "NODEF": "7", "URL": "x"})
	require.NoError(t, err)
	assert.Equal(t, 250*time.Millisecond, s.TTL)
	assert.False(t, s.Enabled)
	assert.Equal(t, int32(3), s.Inner.Size)
	assert.Equal(t, 7, s.NoDef)
	assert.Equal(t, "x", s.URL)
}

func TestBadValuesNameTheVariable(t *testing.T) {
	for env, want := range map[string]string{"TTL": "config TTL", "ENABLED": "config ENABLED", "SIZE": "config SIZE", "RATIO": "config RATIO"} {
		_, err := loadFrom(t, map[string]string{env: "zzz"})
		assert.ErrorContains(t, err, want)
	}
}

func TestNumberedSequence(t *testing.T) {
	s, err := loadFrom(t, map[string]string{"MORE_1_URL": "skipped", "MORE_2_URL": "a", "MORE_3_URL": " b ", "MORE_4_URL": "", "MORE_5_URL": "after a gap"})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, s.More, "from MORE_2_URL to the first unset or empty one")
	assert.Equal(t, "MORE_7_URL", sequenceName("MORE_{n}_URL", 7))

	var bad struct {
		N int `env:"N_{n}"`
	}
	assert.ErrorContains(t, load(reflectValue(&bad), func(string) (string, bool) { return "", false }, nil), "must be a []string")
}

func TestLogValueMasksSecrets(t *testing.T) {
	s, err := loadFrom(t, nil)
	require.NoError(t, err)
	out := LogValue(s).String()
	assert.NotContains(t, out, "pw")
	assert.NotContains(t, out, "dev-key")
	assert.Contains(t, out, "postgres://u:xxxxx@h/db")
	s.More = []string{"postgres://u:pw@h/more"}
	out = LogValue(s).String()
	assert.NotContains(t, out, "pw", "a sequence's URLs are masked too")
	assert.Contains(t, out, "MORE_{n}_URL")
	assert.Equal(t, "redis://h:6379", MaskURL("redis://h:6379"))
}
