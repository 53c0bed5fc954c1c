package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The watcher of a shared native server: once the process it watches (here a stand-in for
// the test binary) has exited, the server gets its signal and its directory goes.
func TestRemoveAfterExit(t *testing.T) {
	binary := exec.Command("sleep", "60")
	require.NoError(t, binary.Start())
	t.Cleanup(func() { _ = binary.Process.Kill(); _ = binary.Wait() })

	dir, err := os.MkdirTemp("", "dbl-watch-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	server := exec.Command("sleep", "60")
	require.NoError(t, server.Start())
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	t.Cleanup(func() { _ = server.Process.Kill() })
	pidfile := filepath.Join(dir, "server.pid")
	require.NoError(t, os.WriteFile(pidfile, []byte(strconv.Itoa(server.Process.Pid)+"\n"), 0o644))

	require.NoError(t, removeAfterExit(binary.Process.Pid, "TERM", pidfile, dir))
	select {
	case <-exited:
		t.Fatal("the server was stopped while the binary still ran")
	case <-time.After(1500 * time.Millisecond): // more than one poll of the watcher
	}
	assert.DirExists(t, dir)

	require.NoError(t, binary.Process.Kill())
	_ = binary.Wait()
	select {
	case err := <-exited:
		assert.ErrorContains(t, err, "signal: terminated")
	case <-time.After(15 * time.Second):
		t.Fatal("the server still runs 15 s after the binary exited")
	}
	WaitFor(t, 15*time.Second, "the server's directory to be removed", func() bool {
		_, err := os.Stat(dir)
		return os.IsNotExist(err)
	})
}

// Every shared PostgreSQL, scripts/test.sh's and testenv's own, runs with postgresql.conf.
func TestPostgresSettings(t *testing.T) {
	url := PostgresURL(t)
	settings := pgSettings()
	require.NotEmpty(t, settings)
	for _, line := range settings {
		name, _, _ := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		var got string
		require.NoError(t, QueryRow(url, "SELECT current_setting($1)", []any{name}, &got))
		assert.Equal(t, pgSetting(name), got, name)
	}
}

// Every shared Redis has redisDatabases databases, which RedisURL hands out.
func TestRedisDatabases(t *testing.T) {
	opt, err := redis.ParseURL(RedisURL(t))
	require.NoError(t, err)
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.ConfigGet(ctx, "databases").Result()
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(redisDatabases), got["databases"])
}
