package redisclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/testenv"
)

// go-redis's lines go to the service's JSON log, throttled, instead of plain text on stderr;
// and a client of New dials once, without go-redis's retries, when Redis is down.
func TestRedisDownIsLoggedOnceAndDialedOnce(t *testing.T) {
	var out testenv.Buffer
	redisclient.LogTo(slog.New(slog.NewJSONHandler(&out, nil)))
	t.Cleanup(func() { redisclient.LogTo(slog.Default()) })

	rdb, err := redisclient.New(fmt.Sprintf("redis://127.0.0.1:%d", testenv.FreePort(t))) // nothing listens
	require.NoError(t, err)
	defer rdb.Close()
	for range 3 {
		require.Error(t, rdb.Ping(context.Background()).Err())
	}

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 1, "one line for three failed dials: %s", out.String())
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &line), lines[0])
	assert.Equal(t, "WARN", line["level"])
	assert.Equal(t, "go-redis", line["component"])
	assert.Contains(t, line["msg"], "failed to dial after 1 attempts", "one dial, no retries")
	assert.Equal(t, 0.0, line["repeats_held_back"])
}
