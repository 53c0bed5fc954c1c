package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// PGServer is a private PostgreSQL cluster that a test can stop and start.
type PGServer struct {
	Port int
	Dir  string // data directory
	bin  string
}

// PGOptions tune StartPostgres.
type PGOptions struct {
	// Settings are extra postgresql.conf lines, e.g. "wal_level = replica".
	Settings []string
}

// StartPostgres initialises and starts a PostgreSQL cluster on a free port in a temporary
// directory, with superuser "dbuser" trusted on 127.0.0.1. It is stopped and removed when
// t ends.
func StartPostgres(t testing.TB, opts PGOptions) *PGServer {
	t.Helper()
	bin := postgresBin(t)
	dir, err := os.MkdirTemp("", "dbl-pg-") // short path: the socket path limit is 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	s := &PGServer{Port: FreePort(t), Dir: filepath.Join(dir, "data"), bin: bin}
	t.Cleanup(func() {
		_ = s.pgctl("stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	asPostgres(t, dir)
	if out, err := s.command("initdb", "-D", s.Dir, "-U", "dbuser", "-A", "trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
		s.Port, s.Dir)
	for _, line := range opts.Settings {
		conf += line + "\n"
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	s.Start(t)
	return s
}

// URL is the URL of database db on this server.
func (s *PGServer) URL(db string) string {
	return fmt.Sprintf("postgres://dbuser@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// CreateDatabase makes a database named after t and returns its URL.
func (s *PGServer) CreateDatabase(t testing.TB) string {
	t.Helper()
	return createDatabase(t, s.URL("postgres"))
}

// Start starts the server and waits until it accepts connections.
func (s *PGServer) Start(t testing.TB) {
	t.Helper()
	if err := s.pgctl("start", "-l", filepath.Join(s.Dir, "server.log"), "-t", "60"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		t.Fatalf("start postgres: %v\n%s", err, log)
	}
}

// Stop stops the server the way an operator would (fast shutdown: connections are cut).
func (s *PGServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.pgctl("stop", "-m", "fast"); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
}

func (s *PGServer) pgctl(args ...string) error {
	args = append([]string{"-D", s.Dir, "-w"}, args...)
	out, err := s.command("pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %w: %s", args, err, bytes.TrimSpace(out))
	}
	return nil
}

// command runs a PostgreSQL binary, as the postgres user when we are root (PostgreSQL
// refuses to run as root).
func (s *PGServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(s.bin, name)}, args...)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// asPostgres hands dir to the postgres user when running as root.
func asPostgres(t testing.TB, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		Missing(t, "running as root without a postgres user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func postgresBin(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(EnvPostgresBin); bin != "" {
		return bin
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		Missing(t, "no PostgreSQL binaries (%s unset, none in /usr/lib/postgresql)", EnvPostgresBin)
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1])
}

// RedisServer is a private redis-server that a test can stop and start.
type RedisServer struct {
	Port int
	Dir  string
	bin  string
	args []string
	cmd  *exec.Cmd
}

// StartRedis starts redis-server on a free port with no persistence unless args say
// otherwise (e.g. "--appendonly", "yes"). It is stopped when t ends.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin := os.Getenv(EnvRedisServer)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			Missing(t, "no redis-server (%s unset, none on PATH)", EnvRedisServer)
		}
	}
	s := &RedisServer{Port: FreePort(t), Dir: t.TempDir(), bin: bin, args: args}
	t.Cleanup(func() { s.kill(syscall.SIGKILL) })
	s.Start(t)
	return s
}

// URL is the server's URL for database db.
func (s *RedisServer) URL(db int) string { return fmt.Sprintf("redis://127.0.0.1:%d/%d", s.Port, db) }

// Start starts the server on its port and waits until it accepts connections.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--databases", "16", "--logfile", filepath.Join(s.Dir, "redis.log")}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis: %v", err)
	}
	if err := waitPort(s.Port, 10*time.Second); err != nil {
		t.Fatalf("start redis: %v", err)
	}
}

// Stop stops the server with SIGTERM and waits for it to exit.
func (s *RedisServer) Stop(t testing.TB) {
	t.Helper()
	s.kill(syscall.SIGTERM)
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *RedisServer) Kill(t testing.TB) {
	t.Helper()
	s.kill(syscall.SIGKILL)
}

func (s *RedisServer) kill(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	_ = s.cmd.Wait()
	s.cmd = nil
}
