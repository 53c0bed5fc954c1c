package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The MongoDB servers of the tests, set by scripts/test.sh:
//
//	DBLAYERS_TEST_MONGO_URL   a MongoDB-compatible server (FerretDB locally); each test gets a database
//	DBLAYERS_TEST_FERRETDB    a built tools/ferretdb binary, for the FerretDBs testenv starts
//	                          itself (ferretdbBin)
const (
	EnvMongoURL = "DBLAYERS_TEST_MONGO_URL"
	EnvFerretDB = "DBLAYERS_TEST_FERRETDB"
)

// MongoURL returns the URL of the shared test MongoDB server and a database name of t's
// own on it (see DatabaseName). The database is dropped when t ends.
func MongoURL(t testing.TB) (url, database string) {
	t.Helper()
	url = os.Getenv(EnvMongoURL)
	if url == "" {
		url = sharedMongo(t)
	}
	database = DatabaseName(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := dropMongoDatabase(ctx, url, database); err != nil {
			t.Logf("drop test database %s: %v", database, err)
		}
	})
	return url, database
}

func dropMongoDatabase(ctx context.Context, url, database string) error {
	client, err := mongo.Connect(options.Client().ApplyURI(url).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	return client.Database(database).Drop(ctx)
}

// MongoServer is a private FerretDB (tools/ferretdb: the MongoDB wire protocol over a
// PostgreSQL database) that a test can stop and start; its data survives a restart. Stopping it
// stops the document store alone: its PostgreSQL database stays up.
type MongoServer struct {
	Port  int
	Dir   string // the server's log
	pgURL string // the PostgreSQL database holding its documents
	bin   string
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	ctr   *privateContainer
}

// StartMongo starts a FerretDB (ferretdbBin) on a free port, keeping its documents in a
// database of its own on the shared test PostgreSQL server (PostgresURL). It is killed, and
// its log and database removed, when t ends. Without a FerretDB it is a container of
// MONGO_IMAGE when a Docker engine answers, its port published on the same free port; its
// data (the image's volume) survives Stop and Start.
func StartMongo(t testing.TB) *MongoServer {
	t.Helper()
	bin := ferretdbBin(t)
	if bin == "" {
		if err := dockerEngine(); err != nil {
			Missing(t, "no FerretDB to run (%s unset, no tools/ferretdb to build), and no Docker engine answers (%v)",
				EnvFerretDB, err)
		}
		s := &MongoServer{Port: FreePort(t)}
		s.ctr = startPrivateContainer(t, "MongoDB", EnvMongoImage, "mongo:7", mongoPort, s.Port,
			wait.ForListeningPort(mongoPort))
		return s
	}
	pgURL := PostgresURL(t)
	dir := t.TempDir()
	if err := watch(dir, mongoPid); err != nil {
		t.Fatal(err)
	}
	s := &MongoServer{Port: FreePort(t), Dir: dir, pgURL: pgURL, bin: bin}
	// Registered after PostgresURL's cleanup, so it runs before the database is dropped.
	t.Cleanup(func() { s.kill(syscall.SIGKILL, 0) })
	s.Start(t)
	return s
}

// URL is the server's connection URL.
func (s *MongoServer) URL() string { return fmt.Sprintf("mongodb://127.0.0.1:%d/", s.Port) }

// Start starts the server on its port and waits until it accepts connections.
func (s *MongoServer) Start(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.start(t)
		return
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// start starts a native server, writes its pid to Dir/ferretdb.pid (mongoPid) and waits
// until it accepts connections.
func (s *MongoServer) start() error {
	if s.cmd != nil {
		return errors.New("start ferretdb: already running")
	}
	logFile, err := os.OpenFile(filepath.Join(s.Dir, "ferretdb.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, "-listen-addr", "127.0.0.1:"+strconv.Itoa(s.Port), "-postgresql-url", s.pgURL)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ferretdb: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, mongoPid.file), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ferretdb ready: ") && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case ok := <-ready:
		if ok {
			return nil
		}
	case <-time.After(30 * time.Second):
	}
	s.kill(syscall.SIGKILL, 0)
	log, _ := os.ReadFile(filepath.Join(s.Dir, "ferretdb.log"))
	return fmt.Errorf("start ferretdb on port %d: not ready\n%s", s.Port, log)
}

// ferretdbBuildTimeout bounds building tools/ferretdb: minutes from nothing on a busy 2-core
// machine, seconds once the build cache has it.
const ferretdbBuildTimeout = 10 * time.Minute

// ferretdbBuild is the build of tools/ferretdb that ferretdbBin made for this test binary.
var ferretdbBuild struct {
	once sync.Once
	path string
	err  error
}

// ferretdbBin is the FerretDB of the servers testenv starts: DBLAYERS_TEST_FERRETDB, else
// tools/ferretdb of this repository built (once per test binary, by buildFerretDB) into the
// user's cache directory. It is "" when there is none to have here (no go command, no
// tools/ferretdb above the working directory, no cache directory); it fails t when the
// build fails.
func ferretdbBin(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(EnvFerretDB); bin != "" {
		return bin
	}
	ferretdbBuild.once.Do(func() { ferretdbBuild.path, ferretdbBuild.err = buildFerretDB() })
	if ferretdbBuild.err != nil {
		t.Fatal(ferretdbBuild.err)
	}
	return ferretdbBuild.path
}

// buildFerretDB builds the tools/ferretdb found above the working directory (a test runs in
// its package's) into dblayers/ferretdb in the user's cache directory, as scripts/lib.sh's
// ferretdb_build does, and returns its path ("" when any of the three is missing). The go
// command leaves a binary that is up to date as it is (a second of checks); an flock on
// ferretdb.lock beside it keeps test binaries that build at once from writing it together
// (each waits for the others' builds, which ferretdbBuildTimeout bounds).
func buildFerretDB() (string, error) {
	goBin, err := exec.LookPath("go")
	src := aboveWorkDir(filepath.Join("tools", "ferretdb", "go.mod"))
	cache, cacheErr := os.UserCacheDir()
	if err != nil || src == "" || cacheErr != nil {
		return "", nil
	}
	dir := filepath.Join(cache, "dblayers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "ferretdb.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // releases the flock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "ferretdb")
	ctx, cancel := context.WithTimeout(context.Background(), ferretdbBuildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, "build", "-o", out, ".")
	build.Dir = filepath.Dir(src)
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build of %s: %w\n%s", build.Dir, err, b)
	}
	return out, nil
}

// Stop stops the server the way an operator would (SIGTERM), and waits until it has exited.
// FerretDB gives open connections up to 3 s to finish; after 5 s it is killed.
func (s *MongoServer) Stop(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.stop(t, 5*time.Second)
		return
	}
	s.kill(syscall.SIGTERM, 5*time.Second)
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *MongoServer) Kill(t testing.TB) {
	t.Helper()
	if s.ctr != nil {
		s.ctr.stop(t, 0)
		return
	}
	s.kill(syscall.SIGKILL, 0)
}

// kill sends sig and waits for the exit; after grace it sends SIGKILL.
func (s *MongoServer) kill(sig syscall.Signal, grace time.Duration) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-s.done:
		case <-time.After(grace):
			_ = s.cmd.Process.Kill()
		}
	}
	<-s.done
	s.cmd = nil
}

// aboveWorkDir is rel in the nearest directory at or above the working directory that has
// it, "" if none has.
func aboveWorkDir(rel string) string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, rel)); err == nil {
			return filepath.Join(dir, rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
