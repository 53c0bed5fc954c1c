package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/testenv"
)

// margin is how much later than its deadline a call through a faulty proxy may end.
const margin = 2 * time.Second

// proxiedRedis is a proxy to the shared test Redis, the URL of t's own database through it,
// and a client of that URL.
func proxiedRedis(t *testing.T) (*testenv.FaultProxy, string, *redis.Client) {
	t.Helper()
	u := testenv.RedisURL(t)
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	p := testenv.Proxy(t, parsed.Host)
	return p, p.URL(u), redisClient(t, p.URL(u))
}

// redisClient is a client of u with one connection, no retries and deadlines from the
// context.
func redisClient(t *testing.T, u string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(u)
	require.NoError(t, err)
	opt.PoolSize, opt.MaxRetries, opt.ContextTimeoutEnabled = 1, -1, true
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// ping pings within timeout and returns the error and how long it took.
func ping(c *redis.Client, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := c.Ping(ctx).Err()
	return time.Since(start), err
}

func TestToxiproxy(t *testing.T) {
	t.Run("URL", func(t *testing.T) {
		p := testenv.Proxy(t, "127.0.0.1:5432")
		assert.Equal(t, "postgres://u:pw@"+p.Addr()+"/db?sslmode=disable",
			p.URL("postgres://u:pw@127.0.0.1:5432/db?sslmode=disable"))
		assert.Equal(t, "redis://"+p.Addr()+"/3", p.URL("redis://127.0.0.1:6379/3"))
		assert.True(t, strings.HasPrefix(p.Addr(), "127.0.0.1:"), p.Addr())
	})

	t.Run("latency", func(t *testing.T) {
		p, u, c := proxiedRedis(t)
		_, err := ping(c, 5*time.Second)
		require.NoError(t, err, "before the toxic")

		const d = 100 * time.Millisecond
		p.Latency(t, d)
		took, err := ping(c, 5*time.Second)
		require.NoError(t, err, "an open connection is slow, not broken")
		assert.GreaterOrEqual(t, took, 2*d, "a round trip on an open connection")
		t.Logf("open connection: ping in %s", took)
		took, err = ping(redisClient(t, u), 5*time.Second)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, took, 4*d, "a new connection: its handshake and the ping")
		t.Logf("new connection: handshake and ping in %s", took)
	})

	t.Run("hang", func(t *testing.T) {
		p, u, c := proxiedRedis(t)
		_, err := ping(c, 5*time.Second)
		require.NoError(t, err, "before the toxic")

		p.Hang(t)
		const deadline = 300 * time.Millisecond
		for name, c := range map[string]*redis.Client{"open": c, "new": redisClient(t, u)} {
			took, err := ping(c, deadline)
			assert.True(t, isTimeout(err), "%s connection: %v", name, err)
			assert.GreaterOrEqual(t, took, deadline, "%s connection", name)
			assert.Less(t, took, deadline+margin, "%s connection", name)
			t.Logf("%s connection: %v after %s", name, err, took)
		}

		p.Heal(t)
		_, err = ping(redisClient(t, u), 5*time.Second)
		assert.NoError(t, err, "a new connection after Heal")
		// The held connection was closed; the client's pool replaces it.
		testenv.WaitFor(t, 5*time.Second, "the first client answered again", func() bool {
			_, err := ping(c, time.Second)
			return err == nil
		})
	})

	t.Run("reset peer", func(t *testing.T) {
		p, u, c := proxiedRedis(t)
		_, err := ping(c, 5*time.Second)
		require.NoError(t, err, "before the toxic")

		p.ResetPeer(t)
		took, err := ping(c, 5*time.Second)
		assert.True(t, isClosed(err), "open connection: %v", err)
		assert.Less(t, took, margin, "a reset is no timeout")
		took, err = ping(redisClient(t, u), 5*time.Second)
		assert.True(t, isClosed(err), "new connection: %v", err)
		assert.Less(t, took, margin, "a reset is no timeout")
		assert.ErrorIs(t, rawPing(t, p.Addr()), syscall.ECONNRESET, "a new connection is reset")

		p.Heal(t)
		_, err = ping(redisClient(t, u), 5*time.Second)
		assert.NoError(t, err, "a new connection after Heal")
	})

	t.Run("limit data", func(t *testing.T) {
		p, u, c := proxiedRedis(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		big := strings.Repeat("x", 1<<20)
		require.NoError(t, c.Set(ctx, "big", big, 0).Err(), "before the toxic")

		p.LimitData(t, 64<<10)
		took := time.Now()
		_, err := c.Get(ctx, "big").Result()
		assert.True(t, isClosed(err), "a 1 MiB answer cut after 64 KiB: %v", err)
		assert.Less(t, time.Since(took), margin, "a cut is no timeout")

		p.Heal(t)
		got, err := redisClient(t, u).Get(ctx, "big").Result()
		require.NoError(t, err, "a new connection after Heal")
		assert.Equal(t, len(big), len(got))
	})

	t.Run("upstream off loopback", func(t *testing.T) {
		ft := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() { // Fatal ends the goroutine it runs in
			defer close(done)
			testenv.Proxy(ft, "192.0.2.1:5432")
		}()
		<-done
		assert.Contains(t, ft.fatal, "not a loopback address")
	})
}

// rawPing sends PING on a new TCP connection to addr and returns the error of reading the
// answer.
func rawPing(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Write([]byte("PING\r\n"))
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 16))
	return err
}

// isTimeout is whether err says a deadline passed.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}

// isClosed is whether err says the server closed or reset the connection.
func isClosed(err error) bool {
	return !isTimeout(err) && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))
}

// fatalRecorder is a testing.TB whose Fatal records the message and ends the goroutine.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
