package compose_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// L6 keeps acknowledged writes in Redis until a worker applies them, so its Redis must run
// with AOF fsynced before every answer, in compose (on a named volume) and in the local
// stack alike.
func TestL6RedisKeepsAnAppendOnlyFile(t *testing.T) {
	root := repoRoot(t)
	p, err := loadProject(filepath.Join(root, "docker-compose", "l6.yml"))
	require.NoError(t, err)
	redis := p.Services["redis"]
	cmd := strings.Join(redis.Command, " ")
	assert.Contains(t, cmd, "--appendonly yes")
	assert.Contains(t, cmd, "--appendfsync always")
	assert.True(t, slices.ContainsFunc(redis.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/data" && v.Source != "" }),
		"the AOF lives on a named volume")

	stack, err := os.ReadFile(filepath.Join(root, "scripts", "stack", "l6.sh"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^redis\s+l6-redis\s+6383\s+--appendonly yes --appendfsync always$`, string(stack))
}
