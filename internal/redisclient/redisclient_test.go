package redisclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/record"
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

// A Redis that hangs with its connections open costs SkipAfter timeouts; then every command
// and pipeline is refused without reaching it, /health says "skipped", and once Redis
// answers again a probe closes the guard. Misses and error replies are answers, not
// failures.
func TestHangingRedisIsSkippedThenProbed(t *testing.T) {
	url := testenv.RedisURL(t)
	proxy := testenv.Proxy(t, testenv.HostPort(t, url))
	rdb, err := redisclient.New(proxy.URL(url))
	require.NoError(t, err)
	defer rdb.Close()
	reached := testenv.CountRedis(rdb.Client) // added after the guard: sees only what it let through
	ctx := context.Background()
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	for range 2 * redisclient.SkipAfter {
		require.ErrorIs(t, rdb.Get(ctx, "missing").Err(), redis.Nil)
		require.Error(t, rdb.Do(ctx, "NO-SUCH-COMMAND").Err())
	}
	require.Equal(t, breaker.Closed, rdb.State(), "misses and error replies are answers")

	proxy.Hang(t)
	timeout := rdb.Options().ReadTimeout
	for i := range redisclient.SkipAfter {
		start := time.Now()
		err := rdb.Get(ctx, "k").Err()
		elapsed := time.Since(start)
		t.Logf("command %d: %s: %v", i, elapsed, err)
		require.Error(t, err, "command %d", i)
		assert.True(t, redisclient.IsFailure(err), "%v", err)
		assert.Less(t, elapsed, timeout+time.Second, "command %d waited past its timeout", i)
	}
	require.Equal(t, breaker.Open, rdb.State())
	assert.Equal(t, "skipped", rdb.Health(ctx))

	before := reached.Commands()
	for range 100 {
		err := rdb.Get(ctx, "k").Err()
		require.ErrorIs(t, err, breaker.ErrOpen)
		require.True(t, record.IsUnavailable(err))
	}
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "k")
		p.Incr(ctx, "n")
		return nil
	})
	require.ErrorIs(t, err, breaker.ErrOpen)
	for _, cmd := range cmds {
		assert.ErrorIs(t, cmd.Err(), breaker.ErrOpen, "every command of a refused pipeline carries the refusal")
	}
	assert.Equal(t, before, reached.Commands(), "refused commands never reach Redis")

	proxy.Heal(t)
	testenv.WaitFor(t, 10*time.Second, "a probe to find Redis back", func() bool {
		return rdb.Get(ctx, "k").Val() == "v"
	})
	assert.Equal(t, breaker.Closed, rdb.State())
	assert.Equal(t, "healthy", rdb.Health(ctx))
}
