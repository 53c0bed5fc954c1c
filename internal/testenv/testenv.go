// Package testenv gives tests real PostgreSQL, Redis and MongoDB-wire servers, isolated per
// test.
//
// The shared servers (PostgresURL, RedisURL, MongoURL) come from the environment when it names
// them, as scripts/test.sh does after it started a throw-away stack for all the test binaries
// of its run:
//
//	DBLAYERS_TEST_PG_URL        superuser URL of a PostgreSQL server; each test gets a new database
//	DBLAYERS_TEST_REDIS_URL     a Redis server with many databases; each test gets its own DB number
//	DBLAYERS_TEST_MONGO_URL     a MongoDB-wire server (mongo.go); each test gets a database
//	DBLAYERS_TEST_PG_BIN        PostgreSQL's bin directory, else the newest in /usr/lib/postgresql
//	DBLAYERS_TEST_REDIS_SERVER  the redis-server binary, else redis-server on PATH
//	DBLAYERS_TEST_FERRETDB      the FerretDB binary, else tools/ferretdb built into the user's cache
//
// Where a URL is unset, the test binary starts that server itself, once, for all its tests:
// from this machine's binaries (native.go), else in a container when a Docker engine answers
// (containers.go), and removes it after it has exited. So `go test ./layers/l2/` needs no
// setup where PostgreSQL, Redis and Go are installed.
//
// Fault tests stop and restart real processes, so they start private servers of their own
// (StartPostgres, StartRedis, StartMongo, StartReplica): from native binaries when there are
// any, else as containers (StartReplica: native only). Nothing here touches a developer's
// running stack.
//
// When a backend is missing the test is skipped, except under CI=true, where it fails:
// CI must never pass by skipping.
//
// # Proxy
//
// Fault tests of a network that misbehaves, rather than a process that dies, put a Toxiproxy
// proxy (github.com/Shopify/toxiproxy/v2, run inside the test binary) between the code under
// test and a server, and give it toxics:
//
//	p := testenv.Proxy(t, "127.0.0.1:5432") // on a free port of 127.0.0.1, stopped when t ends
//	url := p.URL(pgURL)                      // pgURL with its host:port replaced by p.Addr()
//	p.Latency(t, d)                          // each direction d late: a round trip 2·d
//	p.Hang(t)                                // data dropped both ways, connections held open
//	p.ResetPeer(t)                           // a connection closed (new ones reset) at its next data
//	p.LimitData(t, n)                        // connections closed after n bytes to the client
//	p.Heal(t)                                // every toxic removed; connections a Hang held are closed
//
// A toxic applies to the open connections and to new ones. The upstream must be a loopback
// address, like every server a test talks to.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
)

// Environment variable names.
const (
	EnvPostgresURL = "DBLAYERS_TEST_PG_URL"
	EnvRedisURL    = "DBLAYERS_TEST_REDIS_URL"
	EnvPostgresBin = "DBLAYERS_TEST_PG_BIN"
	EnvRedisServer = "DBLAYERS_TEST_REDIS_SERVER"
)

// redisDatabases is how many databases the test Redis is started with (databases 4096).
const redisDatabases = 4096

// Missing skips t, or fails it under CI=true.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (scripts/test.sh installs the servers)"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true and a test backend is missing: " + msg)
	}
	t.Skip(msg)
}

// PostgresURL creates an empty database for t on the shared test server and returns its
// URL. The database is dropped when t ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgresURL)
	if admin == "" {
		admin = sharedPostgres(t)
	}
	return createDatabase(t, admin)
}

// createDatabase makes a database named after t on the server of adminURL.
func createDatabase(t testing.TB, adminURL string) string {
	t.Helper()
	name := DatabaseName(t)
	if err := execSQL(adminURL, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := execSQL(adminURL, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := databaseURL(adminURL, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// databaseURL is the PostgreSQL URL serverURL with database db.
func databaseURL(serverURL, db string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse PostgreSQL URL: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// DatabaseName is a unique, readable database name for t (at most 63 bytes).
func DatabaseName(t testing.TB) string {
	base := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(base) > 40 {
		base = base[len(base)-40:]
	}
	return "t_" + strings.Trim(base, "_") + "_" + randomHex(4)
}

// RedisURL returns the URL of a Redis database of t's own on the shared test server. The
// database is flushed when t ends.
func RedisURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvRedisURL)
	if base == "" {
		base = sharedRedis(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opt, err := redis.ParseURL(base)
	if err != nil {
		t.Fatalf("parse Redis URL: %v", err)
	}
	admin := redis.NewClient(opt)
	defer admin.Close()
	n, err := admin.Incr(ctx, "dblayers:testenv:next-db").Result()
	if err != nil {
		t.Fatalf("allocate a Redis database: %v", err)
	}
	db := 1 + int(n-1)%(redisDatabases-1)
	u, _ := url.Parse(base)
	u.Path = "/" + strconv.Itoa(db)
	t.Cleanup(func() {
		o := *opt
		o.DB = db
		c := redis.NewClient(&o)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.FlushDB(ctx).Err()
	})
	return u.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// WaitFor polls cond every 20 ms until it returns true or timeout passes, and fails t then.
// It is how tests wait for something asynchronous: never a bare sleep.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AssertCountdown asserts that a countdown that stood at full when the test began (time
// until a rate limit is whole, say) now reads got: at most full, and less by no more than
// the minute a test may take. Tests built on it use long windows, so that what they check
// does not depend on how fast the machine runs them.
func AssertCountdown(t testing.TB, full, got time.Duration, msgAndArgs ...any) {
	t.Helper()
	assert.LessOrEqual(t, got, full, msgAndArgs...)
	assert.Greater(t, got, full-time.Minute, msgAndArgs...)
}

func waitPort(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d not open after %s: %w", port, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
