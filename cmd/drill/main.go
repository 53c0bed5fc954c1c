// Command drill runs a fault drill against a running layer, on the local stack
// (scripts/stack.sh) or a compose project: writers and readers for a third of the time,
// a named fault on one of the layer's servers for a third, the fault healed for the last
// third, then a read-back of every acknowledged write. Run `drill -h` for usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dblayers/dblayers/internal/drill"
	"github.com/dblayers/dblayers/internal/service"
)

const usage = `drill: a fault drill against a running layer (loopback only).

Usage:
  drill -layer N -fault FAULT -server NAME [flags]
  drill -compose-faults docker-compose/lN.yml > faults.yml   the compose override for network faults

Runs writers of distinct keys and readers of one hot key against the layer for -duration:
the first third as it is ("before"), the second with FAULT on server NAME ("fault"), the
last with the fault healed ("after"); then reads back every acknowledged write and prints,
per phase: ok reads/s and writes/s, the slowest request, the p99 of failed requests, when
the first -recover-run successful answers in a row came, and the answers by outcome
(status code, "200 not found", "timeout", "connection refused" …); then the acknowledged
writes, the lost ones (read back missing or wrong) and the time to recover. Exits 1 if an
acknowledged write was lost or could not be read back.

Faults (NAME: a server or process of the layer, as 'scripts/stack.sh status' names it on
the local stack, or a compose service; several may be given, comma-separated):
  stop       stop NAME gracefully; heal: start it          } local: scripts/stack.sh stop|kill|
  kill       SIGKILL NAME; heal: start it                  } start|restart NAME; compose:
  restart    stop and start NAME at once; nothing to heal  } docker compose -p PROJECT …
  latency    add -latency each way on NAME's connections   } through Toxiproxy: the layer must
  hang       drop every byte, keep connections open        } run through it (local:
  reset      reset every connection as data crosses it     } scripts/stack.sh up N --faults;
  cut        close each connection after -cut-bytes of     } compose: -compose-faults). NAME is
             answer                                        } the proxy, named after the server
  partition  L9: hang every proxy of region NAME (us-east, eu-west, asia-pac): that region
             cut off from the layer
  none       no fault: a baseline to compare with

Flags:
  -layer N          0 … 10; the layer answers on http://127.0.0.1:800N unless -url is given
  -fault FAULT      see above
  -server NAME      see above (not for none)
  -target T         local (default) or compose
  -project P        compose project (default dblayers-lN, as docker-compose/lN.yml names it)
  -duration D       the whole run, a third per phase (default 30s, at most 10m)
  -writers N        writers, one request in flight each (default 8)
  -readers N        readers of the hot key (default 8)
  -timeout D        per request (default 10s): a request still unanswered then counts as "timeout"
  -latency D        the latency fault's delay each way (default 1s)
  -cut-bytes N      the cut fault's bytes per connection (default 64)
  -recover-run N    successful answers in a row that count as recovered (default 20)
  -settle D         how long the read-back retries a key that reads missing, wrong or fails
                    (default 10s): longer for a layer whose breaker stays open (L10: 30s)
  -url URL          the layer's base URL (default http://127.0.0.1:800N)
  -H 'Name: value'  a header for every request, repeatable; L10 gets its development key
                    (X-API-Key: enterprise-api-key-demo) unless one is given
  -toxiproxy URL    Toxiproxy's API (default http://127.0.0.1:8474)
  -stack PATH       the local stack's script (default scripts/stack.sh: run from the repository)

Compose and network faults: -compose-faults FILE prints an override for that compose file
that adds a toxiproxy service (profile faults; image $TOXIPROXY_IMAGE, default
ghcr.io/shopify/toxiproxy:2.12.0; API on 127.0.0.1:8474) with a proxy per backing server,
named after its service, and points the layer's binaries at the proxies:
  go run ./cmd/drill -compose-faults docker-compose/l2.yml > /tmp/l2-faults.yml
  docker compose -f docker-compose/l2.yml -f /tmp/l2-faults.yml --profile faults up -d --build
  go run ./cmd/drill -layer 2 -target compose -fault hang -server redis

Examples:
  scripts/stack.sh up 2 --faults
  go run ./cmd/drill -layer 2 -fault hang -server l2-redis
  go run ./cmd/drill -layer 2 -fault kill -server l2-redis
  go run ./cmd/drill -layer 6 -fault kill -server l6-redis -duration 60s
  go run ./cmd/drill -layer 2 -target compose -fault stop -server redis
`

func main() { service.Main("drill", run) }

// config is one drill as the flags give it.
type config struct {
	layer       int
	fault       string
	servers     []string
	target      string
	project     string
	duration    time.Duration
	writers     int
	readers     int
	timeout     time.Duration
	latency     time.Duration
	cutBytes    int64
	recoverRun  int
	settle      time.Duration
	baseURL     string
	header      http.Header
	toxiproxy   string
	stackScript string
	// composeFaults, when set, is a compose file to print the fault override of (and the
	// only thing to do).
	composeFaults string
}

// l10DevKey is the development API key that L10 accepts when ENVIRONMENT=development, as
// the local stack and docker-compose/l10.yml run it.
const l10DevKey = "enterprise-api-key-demo"

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var servers string
	var headers headerFlags
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.IntVar(&c.layer, "layer", -1, "")
	fs.StringVar(&c.fault, "fault", "", "")
	fs.StringVar(&servers, "server", "", "")
	fs.StringVar(&c.target, "target", targetLocal, "")
	fs.StringVar(&c.project, "project", "", "")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "")
	fs.IntVar(&c.writers, "writers", 8, "")
	fs.IntVar(&c.readers, "readers", 8, "")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "")
	fs.DurationVar(&c.latency, "latency", time.Second, "")
	fs.Int64Var(&c.cutBytes, "cut-bytes", 64, "")
	fs.IntVar(&c.recoverRun, "recover-run", drill.DefaultRecoverRun, "")
	fs.DurationVar(&c.settle, "settle", drill.DefaultReadBackSettle, "")
	fs.StringVar(&c.baseURL, "url", "", "")
	fs.Var(&headers, "H", "")
	fs.StringVar(&c.toxiproxy, "toxiproxy", "http://127.0.0.1:8474", "")
	fs.StringVar(&c.stackScript, "stack", "scripts/stack.sh", "")
	fs.StringVar(&c.composeFaults, "compose-faults", "", "")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags only; -h for usage)", fs.Arg(0))
	}
	if c.composeFaults != "" {
		return c, nil
	}
	switch {
	case c.layer < 0 || c.layer > 10:
		return c, errors.New("-layer: give the layer, 0 … 10")
	case c.target != targetLocal && c.target != targetCompose:
		return c, fmt.Errorf("-target %q: local or compose", c.target)
	case c.duration < 3*time.Second || c.duration > 10*time.Minute:
		return c, fmt.Errorf("-duration %v: between 3s and 10m", c.duration)
	case c.latency <= 0 || c.cutBytes < 0:
		return c, errors.New("-latency must be positive and -cut-bytes at least 0")
	case c.settle <= 0 || c.settle > 10*time.Minute:
		return c, fmt.Errorf("-settle %v: between 0 and 10m", c.settle)
	}
	if _, ok := faults[c.fault]; !ok {
		return c, fmt.Errorf("-fault %q: one of %s", c.fault, strings.Join(faultNames(), ", "))
	}
	for s := range strings.SplitSeq(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.servers = append(c.servers, s)
		}
	}
	switch {
	case c.fault == faultNone && len(c.servers) > 0:
		return c, errors.New("-fault none takes no -server")
	case c.fault != faultNone && len(c.servers) == 0:
		return c, fmt.Errorf("-fault %s needs -server", c.fault)
	}
	if c.project == "" {
		c.project = fmt.Sprintf("dblayers-l%d", c.layer)
	}
	if c.baseURL == "" {
		c.baseURL = fmt.Sprintf("http://127.0.0.1:%d", 8000+c.layer)
	}
	c.header = http.Header{}
	for name, values := range headers {
		c.header[name] = values
	}
	if c.layer == 10 && c.header.Get("X-API-Key") == "" && c.header.Get("Authorization") == "" {
		c.header.Set("X-API-Key", l10DevKey)
	}
	return c, nil
}

// headerFlags collects -H 'Name: value'.
type headerFlags http.Header

func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
		return fmt.Errorf("header %q: want 'Name: value'", s)
	}
	if *h == nil {
		*h = headerFlags{}
	}
	http.Header(*h).Add(name, strings.TrimSpace(value))
	return nil
}

func (c config) workload() drill.Workload {
	return drill.Workload{
		BaseURL: c.baseURL, Writers: c.writers, Readers: c.readers, RequestTimeout: c.timeout,
		Header: c.header, RecoverRun: c.recoverRun, ReadBackSettle: c.settle,
	}
}

func run(ctx context.Context) error {
	c, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.composeFaults != "" {
		return writeComposeOverride(ctx, c.composeFaults, os.Stdout)
	}
	w := c.workload()
	if err := w.Validate(); err != nil {
		return err
	}
	f, err := newFault(c)
	if err != nil {
		return err
	}
	if err := f.check(ctx); err != nil {
		return err
	}
	return drillLayer(ctx, c, w, f, os.Stdout)
}

// drillLayer runs the three phases with fault f and prints the result to out. A fault that
// was injected is healed whatever happens, even after the end of ctx.
func drillLayer(ctx context.Context, c config, w drill.Workload, f fault, out io.Writer) (err error) {
	third := c.duration / 3
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	run := drill.Start(ctx, w)
	logf("%s: %d writers, %d readers; %s for %v, then %s", c.baseURL, c.writers, c.readers, drill.PhaseBefore, third, f)
	if !pause(ctx, third) {
		run.Stop()
		return ctx.Err()
	}

	run.Phase(drill.PhaseFault)
	start := time.Now()
	injected := false
	defer func() {
		if injected { // ctx ended, or an error, before the heal below
			healCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err = errors.Join(err, f.heal(healCtx))
		}
	}()
	if err := f.inject(ctx); err != nil {
		run.Stop()
		return fmt.Errorf("inject %s: %w", f, err)
	}
	injected = true
	logf("%s: injected in %.2fs", f, time.Since(start).Seconds())
	if !pause(ctx, third-time.Since(start)) {
		run.Stop()
		return ctx.Err()
	}

	run.Phase(drill.PhaseAfter)
	start = time.Now()
	injected = false
	if err := f.heal(ctx); err != nil {
		run.Stop()
		return fmt.Errorf("heal %s: %w", f, err)
	}
	logf("%s: healed in %.2fs", f, time.Since(start).Seconds())
	pause(ctx, third-time.Since(start))
	res := run.Stop()

	logf("reading back %d acknowledged writes", len(res.Acknowledged))
	readCtx, cancel := context.WithTimeout(ctx, w.RequestTimeout+w.ReadBackSettle+2*time.Minute)
	defer cancel()
	_, readErr := res.ReadBack(readCtx, c.baseURL, nil)
	if err := res.Print(out); err != nil {
		return err
	}
	switch {
	case readErr != nil:
		return readErr
	case len(res.Lost) > 0:
		return fmt.Errorf("%d acknowledged writes lost", len(res.Lost))
	}
	return nil
}

// pause waits for d; false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
