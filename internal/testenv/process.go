package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// builds are the binaries Build made for this test binary, in one temporary directory that
// Main removes (and a watcher, if Main does not run).
var builds struct {
	mu   sync.Mutex
	dir  string
	done map[string]*built // import path → its build
}

type built struct {
	once sync.Once
	path string
	err  error
}

// Build compiles the main package pkg (an import path, e.g.
// github.com/dblayers/dblayers/cmd/l5) once per test binary and returns the executable.
// It is built without the race detector: the tests that run binaries are about processes.
// A package whose tests call Build runs them through Main, which removes the binaries.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		Missing(t, "no go command on PATH to build %s", pkg)
	}
	builds.mu.Lock()
	if builds.done == nil {
		builds.done = map[string]*built{}
	}
	b := builds.done[pkg]
	if b == nil {
		b = &built{}
		builds.done[pkg] = b
	}
	if builds.dir == "" {
		if builds.dir, err = watchedDir("dblayers-test-bin-", noPid); err != nil {
			builds.mu.Unlock()
			t.Fatalf("build %s: %v", pkg, err)
		}
	}
	dir := builds.dir
	builds.mu.Unlock()
	b.once.Do(func() {
		b.path = filepath.Join(dir, filepath.Base(pkg))
		if out, err := exec.Command(goBin, "build", "-o", b.path, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Main runs a package's tests, then removes the binaries Build made for them:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	builds.mu.Lock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.mu.Unlock()
	os.Exit(code)
}

// Process is a running binary. Its output is kept, and logged if the test fails.
type Process struct {
	Cmd    *exec.Cmd
	out    Buffer
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

// StartProcess runs bin with env (a later entry wins) and, of the test process's
// environment, only what any program needs (PATH, HOME, TMPDIR, LANG): a developer's
// DATABASE_URL or CACHE_TTL never reaches a binary under test, whose settings are its
// defaults and env. When t ends the process is sent SIGTERM, and killed if it has not
// exited 10 s later.
func StartProcess(t testing.TB, bin string, env ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(bin), exited: make(chan struct{})}
	for _, name := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(name); ok {
			p.Cmd.Env = append(p.Cmd.Env, name+"="+v)
		}
	}
	p.Cmd.Env = append(p.Cmd.Env, env...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", filepath.Base(bin), p.Cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// Output is what the process has written to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Stop sends sig and waits up to grace for the process to exit, then kills it. It reports
// whether the process exited by itself (or had already).
func (p *Process) Stop(sig os.Signal, grace time.Duration) bool {
	select {
	case <-p.exited:
		return true
	default:
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.exited
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its error (nil for exit
// status 0); it fails t if the process is still running then.
func (p *Process) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", p.Cmd.Path, timeout)
		return nil
	}
}

// AwaitHealthy polls url/health until it answers 200 and fails t if the process exits first
// or timeout passes.
func (p *Process) AwaitHealthy(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	WaitFor(t, timeout, filepath.Base(p.Cmd.Path)+" at "+url+" to answer /health", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v):\n%s", p.Cmd.Path, p.err, p.out.String())
		default:
		}
		resp, err := hc.Get(url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
