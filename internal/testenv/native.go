package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// When a shared server's variable is unset, the first test of a binary that needs the server
// starts it, for every test of that binary: from this machine's binaries when there are any
// (native), else in a container (containers.go). A native shared server runs on a free port
// of 127.0.0.1 in a directory of its own under os.TempDir() (dbl-shared-KIND-*), with the
// settings of scripts/test.sh's (postgresql.conf; Redis with 4096 databases and no
// persistence), and a detached watcher stops it and removes its directory once the test
// binary has exited (watch).
//
// EnvContainers set to 1 makes the shared servers testenv starts containers even where
// native binaries are (scripts/test.sh's Docker part checks the containers so). Private
// servers still take binaries first.
const EnvContainers = "DBLAYERS_TEST_CONTAINERS"

// sharedContainers reports whether the shared servers must be containers.
func sharedContainers() bool { return os.Getenv(EnvContainers) == "1" }

// sharedServer is a server the tests of one binary share, native or in a container.
type sharedServer struct {
	kind string // PostgreSQL, Redis, MongoDB
	once sync.Once
	url  string
	err  error
}

var shared = struct{ postgres, redis, mongo sharedServer }{
	postgres: sharedServer{kind: "PostgreSQL"},
	redis:    sharedServer{kind: "Redis"},
	mongo:    sharedServer{kind: "MongoDB"},
}

// start runs start once and returns the URL it gave. The first success logs one line to
// stderr that says where the server came from: start's from.
func (s *sharedServer) start(start func() (url, from string, err error)) (string, error) {
	s.once.Do(func() {
		var from string
		if s.url, from, s.err = start(); s.err == nil {
			fmt.Fprintf(os.Stderr, "testenv: %s from %s\n", s.kind, from)
		}
	})
	return s.url, s.err
}

// get is start that fails t on error.
func (s *sharedServer) get(t testing.TB, start func() (url, from string, err error)) string {
	t.Helper()
	url, err := s.start(start)
	if err != nil {
		t.Fatalf("start the shared %s: %v", s.kind, err)
	}
	return url
}

// sharedPostgres is the superuser URL of the shared PostgreSQL server testenv starts: native
// from postgresBin, else (or under DBLAYERS_TEST_CONTAINERS=1) a container.
func sharedPostgres(t testing.TB) string {
	t.Helper()
	bin, err := postgresBin()
	if err != nil || sharedContainers() {
		return containerPostgres(t)
	}
	return shared.postgres.get(t, func() (string, string, error) { return startNativePostgres(bin) })
}

// startNativePostgres starts the shared native PostgreSQL from the binaries in bin: md5 (or
// what postgresql.conf's password_encryption says) checks the password over TCP, as on
// scripts/test.sh's server.
func startNativePostgres(bin string) (url, from string, err error) {
	dir, err := watchedDir("dbl-shared-pg-", pgPid)
	if err != nil {
		return "", "", err
	}
	s := &PGServer{Dir: filepath.Join(dir, "data"), bin: bin}
	if s.Port, err = freePort(); err != nil {
		return "", "", err
	}
	if err := s.create(pgSetting("password_encryption"), nil); err != nil {
		return "", "", err
	}
	if err := s.start(); err != nil {
		return "", "", err
	}
	// initdb stored the password with its built-in method; store it again with the server's.
	if err := execSQL(s.URL("postgres"), `ALTER ROLE `+pgUser+` PASSWORD '`+pgPassword+`'`); err != nil {
		return "", "", fmt.Errorf("set the superuser's password: %w", err)
	}
	return s.URL("postgres"), fmt.Sprintf("%s on 127.0.0.1:%d (%s)", bin, s.Port, dir), nil
}

// sharedRedis is the URL of the shared Redis server testenv starts (redisDatabases
// databases): native from redisServerBin, else (or under DBLAYERS_TEST_CONTAINERS=1) a
// container.
func sharedRedis(t testing.TB) string {
	t.Helper()
	bin, err := redisServerBin()
	if err != nil || sharedContainers() {
		return containerRedis(t)
	}
	return shared.redis.get(t, func() (string, string, error) {
		dir, err := watchedDir("dbl-shared-redis-", redisPid)
		if err != nil {
			return "", "", err
		}
		s := &RedisServer{Dir: dir, bin: bin, args: []string{"--databases", strconv.Itoa(redisDatabases)}}
		if s.Port, err = freePort(); err != nil {
			return "", "", err
		}
		if err := s.start(); err != nil {
			return "", "", err
		}
		return fmt.Sprintf("redis://127.0.0.1:%d", s.Port), fmt.Sprintf("%s on 127.0.0.1:%d (%s)", bin, s.Port, dir), nil
	})
}

// sharedMongo is the URL of the shared MongoDB-wire server testenv starts: a native FerretDB
// (ferretdbBin) keeping its documents in the database "ferretdb" of the shared native
// PostgreSQL, as scripts/test.sh's does, else (or under DBLAYERS_TEST_CONTAINERS=1) a
// container.
func sharedMongo(t testing.TB) string {
	t.Helper()
	pgBin, err := postgresBin()
	if err != nil || sharedContainers() {
		return containerMongo(t)
	}
	bin := ferretdbBin(t)
	if bin == "" {
		return containerMongo(t)
	}
	return shared.mongo.get(t, func() (string, string, error) {
		admin, err := shared.postgres.start(func() (string, string, error) { return startNativePostgres(pgBin) })
		if err != nil {
			return "", "", err
		}
		if err := execSQL(admin, `CREATE DATABASE ferretdb`); err != nil {
			return "", "", fmt.Errorf("create FerretDB's database: %w", err)
		}
		pgURL, err := databaseURL(admin, "ferretdb")
		if err != nil {
			return "", "", err
		}
		dir, err := watchedDir("dbl-shared-mongo-", mongoPid)
		if err != nil {
			return "", "", err
		}
		s := &MongoServer{Dir: dir, pgURL: pgURL, bin: bin}
		if s.Port, err = freePort(); err != nil {
			return "", "", err
		}
		if err := s.start(); err != nil {
			return "", "", err
		}
		return s.URL(), fmt.Sprintf("%s on 127.0.0.1:%d (%s)", bin, s.Port, dir), nil
	})
}

// serverPid is where a native server writes its pid, in its directory, and the signal (a
// name) a watcher stops it with.
type serverPid struct{ file, sig string }

var (
	pgPid    = serverPid{"data/postmaster.pid", "QUIT"} // immediate shutdown
	redisPid = serverPid{"redis.pid", "TERM"}           // no persistence: it exits at once
	mongoPid = serverPid{"ferretdb.pid", "KILL"}
	noPid    = serverPid{} // a directory without a server
)

// watchedDir makes a temporary directory (prefix, then random digits, in os.TempDir()) for a
// server that writes its pid as p says, and watches it (watch).
func watchedDir(prefix string, p serverPid) (string, error) {
	dir, err := os.MkdirTemp("", prefix) // short: a PostgreSQL socket path is at most 107 bytes
	if err != nil {
		return "", err
	}
	if err := watch(dir, p); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// watch starts a watcher that removes dir once this test binary has exited, however it
// exits; the server whose pid is in dir as p says first gets p's signal. A test's Cleanup
// stops its private servers, and the watcher finds them gone; a binary that never ran its
// Cleanups (an interrupt, a -timeout panic) leaves nothing either. The shared servers are
// only ever stopped this way.
func watch(dir string, p serverPid) error {
	pidfile := ""
	if p.file != "" {
		pidfile = filepath.Join(dir, p.file)
	}
	if err := removeAfterExit(os.Getpid(), p.sig, pidfile, dir); err != nil {
		return fmt.Errorf("start the watcher of %s: %w", dir, err)
	}
	return nil
}

// removeAfterExit starts a watcher that waits for process pid to exit, then sends sig to the
// pid in pidfile (if there is one), waits up to 30 s for that process to exit and removes dir.
func removeAfterExit(pid int, sig, pidfile, dir string) error {
	return afterExit(pid, `p=$(head -n 1 "$2" 2>/dev/null)
if [ -n "$p" ] && kill -"$1" "$p" 2>/dev/null; then
	i=0
	while kill -0 "$p" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
fi
rm -rf "$3"`, sig, pidfile, dir)
}

// afterExit starts a detached shell that waits for process pid (this test binary) to exit,
// polling every second, and then runs script with args as $1, $2 …
func afterExit(pid int, script string, args ...string) error {
	cmd := exec.Command("sh", append([]string{"-c", `pid=$1
shift
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
` + script, "testenv-watcher", strconv.Itoa(pid)}, args...)...)
	// Its own session and no inherited output: go test waits for the test binary's output to
	// close, and an interrupt of the test's process group must not take the watcher with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
