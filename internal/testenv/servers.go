package testenv

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// PGServer is a private PostgreSQL cluster that a test can stop and start: native
// binaries' (bin) or a container's (ctr).
type PGServer struct {
	Port int
	Dir  string // data directory of a native cluster
	bin  string
	ctr  *privateContainer
}

// PGOptions tune StartPostgres.
type PGOptions struct {
	// Settings are extra postgresql.conf lines, e.g. "wal_level = replica".
	Settings []string
}

// StartPostgres initialises and starts a PostgreSQL cluster on a free port in a temporary
// directory, with superuser "dbuser" trusted on 127.0.0.1 and the settings of every test
// server (postgresql.conf). It is stopped and removed when t ends. Without PostgreSQL's
// binaries (postgresBin) the cluster is a container of POSTGRES_IMAGE when a Docker engine
// answers, its port published on the same free port; its superuser "dbuser" has the password
// "dbpassword".
func StartPostgres(t testing.TB, opts PGOptions) *PGServer {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		if dockerEngine() != nil {
			Missing(t, "%v, and no Docker engine answers", err)
		}
		return startPostgresContainer(t, opts)
	}
	dir, err := watchedDir("dbl-pg-", pgPid)
	if err != nil {
		t.Fatal(err)
	}
	s := &PGServer{Port: FreePort(t), Dir: filepath.Join(dir, "data"), bin: bin}
	t.Cleanup(func() {
		_ = s.pgctl("stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	if err := s.create("trust", opts.Settings); err != nil {
		t.Fatal(err)
	}
	s.Start(t)
	return s
}

// create creates the cluster in s.Dir, inside the empty directory made for it: superuser
// dbuser (password dbpassword), trusted on the Unix socket and checked by hostAuth (a
// pg_hba.conf method) over TCP, listening on 127.0.0.1:s.Port with the settings of every test
// server and then settings.
func (s *PGServer) create(hostAuth string, settings []string) error {
	dir := filepath.Dir(s.Dir)
	if err := asPostgres(dir); err != nil {
		return err
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(pgPassword+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	out, err := s.command("initdb", "-D", s.Dir, "-U", pgUser, "--pwfile", pwfile, "--auth-local", "trust",
		"--auth-host", hostAuth, "-E", "UTF8", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n", s.Port, s.Dir)
	for _, line := range append(pgSettings(), settings...) {
		conf += line + "\n"
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// postgresConf is postgresql.conf: the settings of every test server, which scripts/test.sh
// reads too.
//
//go:embed postgresql.conf
var postgresConf string

// pgSettings are postgresql.conf's settings (name = value), without its comments.
func pgSettings() []string {
	var lines []string
	for line := range strings.Lines(postgresConf) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return lines
}

// pgSetting is the value of setting name in postgresql.conf, "" if it has none.
func pgSetting(name string) string {
	for _, line := range pgSettings() {
		if n, v, _ := strings.Cut(line, "="); strings.TrimSpace(n) == name {
			return strings.Trim(strings.TrimSpace(v), "'")
		}
	}
	return ""
}

// postgresFlags turns postgresql.conf lines (name = value) into the server's -c flags.
func postgresFlags(lines []string) []string {
	var flags []string
	for _, line := range lines {
		name, value, _ := strings.Cut(line, "=")
		flags = append(flags, "-c", strings.TrimSpace(name)+"="+strings.Trim(strings.TrimSpace(value), "'"))
	}
	return flags
}

// startPostgresContainer is StartPostgres with a container: opts.Settings become the
// server's -c flags.
func startPostgresContainer(t testing.TB, opts PGOptions) *PGServer {
	t.Helper()
	cmd := append([]string{"postgres"}, postgresFlags(append(pgSettings(), opts.Settings...))...)
	s := &PGServer{Port: FreePort(t)}
	// Ready when the server itself answers on TCP: pg_isready also fails while the image's
	// init runs its socket-only server, and while a restarted server recovers.
	s.ctr = startPrivateContainer(t, "PostgreSQL", EnvPostgresImage, "postgres:15-alpine", postgresPort, s.Port,
		wait.ForExec([]string{"pg_isready", "-h", "127.0.0.1", "-U", pgUser}),
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_USER": pgUser, "POSTGRES_PASSWORD": pgPassword, "POSTGRES_DB": "postgres",
		}),
		testcontainers.WithCmd(cmd...))
	return s
}

// URL is the URL of database db on this server. A native cluster trusts its superuser and
// ignores the password; a container's checks it.
func (s *PGServer) URL(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, pgPassword, s.Port, db)
}

// CreateDatabase makes a database named after t and returns its URL.
func (s *PGServer) CreateDatabase(t testing.TB) string {
	t.Helper()
	return createDatabase(t, s.URL("postgres"))
}

// Start starts the server and waits until it accepts connections.
func (s *PGServer) Start(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.start(t)
		return
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// start starts a native server and waits until it accepts connections.
func (s *PGServer) start() error {
	if err := s.pgctl("start", "-l", filepath.Join(s.Dir, "server.log"), "-t", "60"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		return fmt.Errorf("start postgres: %w\n%s", err, log)
	}
	return nil
}

// Stop stops the server the way an operator would (fast shutdown: connections are cut).
func (s *PGServer) Stop(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.stop(t, 30*time.Second) // the image's stop signal is SIGINT: fast shutdown
		return
	}
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
func asPostgres(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// postgresBin is the directory of PostgreSQL's binaries: DBLAYERS_TEST_PG_BIN, else the
// newest in /usr/lib/postgresql. It returns an error when there are none, and when running
// as root without the postgres user they must run as.
func postgresBin() (string, error) {
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return "", fmt.Errorf("running as root without a postgres user to run PostgreSQL as: %w", err)
		}
	}
	if bin := os.Getenv(EnvPostgresBin); bin != "" {
		return bin, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("no PostgreSQL binaries (%s unset, none in /usr/lib/postgresql)", EnvPostgresBin)
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

// RedisServer is a private redis-server that a test can stop and start: a native
// binary's (bin) or a container's (ctr).
type RedisServer struct {
	Port int
	Dir  string
	bin  string
	args []string
	cmd  *exec.Cmd
	ctr  *privateContainer
}

// StartRedis starts redis-server on a free port with no persistence unless args say
// otherwise (e.g. "--appendonly", "yes"). It is stopped when t ends. Without a redis-server
// (redisServerBin) it is a container of REDIS_IMAGE when a Docker engine answers, its port
// published on the same free port.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	s := &RedisServer{Port: FreePort(t), Dir: t.TempDir(), args: args}
	var err error
	if s.bin, err = redisServerBin(); err != nil {
		if dockerEngine() != nil {
			Missing(t, "%v, and no Docker engine answers", err)
		}
		s.ctr = startPrivateContainer(t, "Redis", EnvRedisImage, "redis:7-alpine", redisPort, s.Port,
			wait.ForListeningPort(redisPort),
			testcontainers.WithCmd(append([]string{"redis-server", "--save", "", "--appendonly", "no", "--databases", "16"}, args...)...))
		return s
	}
	if err := watch(s.Dir, redisPid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.kill(syscall.SIGKILL) })
	s.Start(t)
	return s
}

// redisServerBin is the redis-server binary: DBLAYERS_TEST_REDIS_SERVER, else redis-server on
// PATH.
func redisServerBin() (string, error) {
	if bin := os.Getenv(EnvRedisServer); bin != "" {
		return bin, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("no redis-server (%s unset, none on PATH)", EnvRedisServer)
	}
	return bin, nil
}

// URL is the server's URL for database db.
func (s *RedisServer) URL(db int) string { return fmt.Sprintf("redis://127.0.0.1:%d/%d", s.Port, db) }

// Start starts the server on its port and waits until it accepts connections.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.start(t)
		return
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// start starts a native server and waits until it accepts connections.
func (s *RedisServer) start() error {
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--databases", "16", "--logfile", filepath.Join(s.Dir, "redis.log"),
		"--pidfile", filepath.Join(s.Dir, redisPid.file)}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	if err := waitPort(s.Port, 10*time.Second); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	return nil
}

// Stop stops the server with SIGTERM and waits for it to exit.
func (s *RedisServer) Stop(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.stop(t, 10*time.Second)
		return
	}
	s.kill(syscall.SIGTERM)
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *RedisServer) Kill(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.stop(t, 0)
		return
	}
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
