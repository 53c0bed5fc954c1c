package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/dblayers/dblayers/internal/loadgen"
)

// Where the layer runs.
const (
	targetLocal   = "local"   // scripts/stack.sh
	targetCompose = "compose" // a docker compose project
)

const faultNone = "none"

// A fault is what a drill does to the layer's servers in its "fault" phase.
type fault interface {
	fmt.Stringer
	check(ctx context.Context) error  // before the drill: can the fault be injected at all
	inject(ctx context.Context) error // at the start of the fault phase
	heal(ctx context.Context) error   // at the start of the after phase
}

// faults makes each named fault from the drill's configuration.
var faults = map[string]func(c config) (fault, error){
	faultNone: func(config) (fault, error) { return noFault{}, nil },
	"stop":    processFault,
	"kill":    processFault,
	"restart": processFault,
	"latency": networkFault,
	"hang":    networkFault,
	"reset":   networkFault,
	"cut":     networkFault,
	// partition is the hang on every proxy of a region, chosen in networkFault.
	"partition": networkFault,
}

func faultNames() []string {
	names := make([]string, 0, len(faults))
	for name := range faults {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func newFault(c config) (fault, error) { return faults[c.fault](c) }

type noFault struct{}

func (noFault) String() string               { return "no fault" }
func (noFault) check(context.Context) error  { return nil }
func (noFault) inject(context.Context) error { return nil }
func (noFault) heal(context.Context) error   { return nil }

// ---------------------------------------------------------------------------------------
// Process faults: a server or process stopped, killed or restarted.

// procFault runs the target's command for each server: on the local stack
// `scripts/stack.sh ACTION NAME`, in compose `docker compose -p PROJECT ACTION SERVICE`.
// Both know stop, kill (SIGKILL), start and restart.
type procFault struct {
	action  string // stop, kill or restart
	servers []string
	c       config
}

// commandTimeout bounds one stack.sh or docker compose command (a service's start waits
// for its health).
const commandTimeout = 2 * time.Minute

func processFault(c config) (fault, error) {
	return &procFault{action: c.fault, servers: c.servers, c: c}, nil
}

func (f *procFault) String() string {
	return fmt.Sprintf("%s %s (%s)", f.action, strings.Join(f.servers, ", "), f.c.target)
}

func (f *procFault) command(ctx context.Context, args ...string) *exec.Cmd {
	if f.c.target == targetCompose {
		return exec.CommandContext(ctx, "docker", append([]string{"compose", "-p", f.c.project}, args...)...)
	}
	return exec.CommandContext(ctx, f.c.stackScript, args...)
}

func (f *procFault) runEach(ctx context.Context, action string) error {
	for _, s := range f.servers {
		if _, err := f.output(ctx, action, s); err != nil {
			return err
		}
	}
	return nil
}

// output runs the target's command with args and returns its standard output.
func (f *procFault) output(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := f.command(ctx, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// check makes sure every server is one the target knows.
func (f *procFault) check(ctx context.Context) error {
	var known []string
	if f.c.target == targetCompose {
		out, err := f.output(ctx, "ps", "--all", "--services")
		if err != nil {
			return err
		}
		known = strings.Fields(out)
	} else {
		if _, err := os.Stat(f.c.stackScript); err != nil {
			return fmt.Errorf("the local stack's script: %w (run from the repository, or give -stack)", err)
		}
		out, err := f.output(ctx, "status", "all")
		if err != nil {
			return err
		}
		for line := range strings.Lines(out) {
			if fields := strings.Fields(line); len(fields) > 1 {
				known = append(known, fields[1])
			}
		}
	}
	for _, s := range f.servers {
		if !slices.Contains(known, s) {
			return fmt.Errorf("-server %s: the %s target has no such server (it has: %s)", s, f.c.target, strings.Join(known, " "))
		}
	}
	return nil
}

func (f *procFault) inject(ctx context.Context) error { return f.runEach(ctx, f.action) }

func (f *procFault) heal(ctx context.Context) error {
	if f.action == "restart" {
		return nil // started again by the fault itself
	}
	return f.runEach(ctx, "start")
}

// ---------------------------------------------------------------------------------------
// Network faults: toxics on Toxiproxy proxies between the layer and its servers.

// netFault puts toxics on proxies and removes them to heal. The toxics are the ones
// internal/testenv's FaultProxy puts for the same fault.
type netFault struct {
	name    string
	client  *toxiproxy.Client
	servers []string // proxies named, or regions for a partition
	proxies []string // resolved by check
	toxics  []toxiproxy.Toxic
}

// both is a toxic of type kind on both streams (client to server and back).
func both(kind string, attrs toxiproxy.Attributes) []toxiproxy.Toxic {
	return []toxiproxy.Toxic{
		{Name: "drill-" + kind + "-upstream", Type: kind, Stream: "upstream", Toxicity: 1, Attributes: attrs},
		{Name: "drill-" + kind + "-downstream", Type: kind, Stream: "downstream", Toxicity: 1, Attributes: attrs},
	}
}

func networkFault(c config) (fault, error) {
	u, err := url.Parse(c.toxiproxy)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-toxiproxy %q: want http://host:port", c.toxiproxy)
	}
	if err := loadgen.CheckLoopback(u.Hostname()); err != nil {
		return nil, fmt.Errorf("-toxiproxy: %w", err)
	}
	f := &netFault{name: c.fault, client: toxiproxy.NewClient(u.Host), servers: c.servers}
	switch c.fault {
	case "latency":
		f.toxics = both("latency", toxiproxy.Attributes{"latency": c.latency.Milliseconds()})
	case "hang", "partition":
		f.toxics = both("timeout", toxiproxy.Attributes{"timeout": 0})
	case "reset":
		f.toxics = both("reset_peer", toxiproxy.Attributes{"timeout": 0})
	case "cut":
		f.toxics = []toxiproxy.Toxic{{Name: "drill-limit_data-downstream", Type: "limit_data", Stream: "downstream",
			Toxicity: 1, Attributes: toxiproxy.Attributes{"bytes": c.cutBytes}}}
	}
	return f, nil
}

func (f *netFault) String() string {
	what := map[string]string{
		"latency": "latency", "hang": "hang (timeout toxic, timeout=0)", "reset": "reset (reset_peer)",
		"cut": "cut (limit_data)", "partition": "partition (hang) of region",
	}[f.name]
	return fmt.Sprintf("%s on %s", what, strings.Join(f.servers, ", "))
}

// check finds the proxies: each server's, or for a partition every proxy whose name ends
// in -REGION (l9-db-eu-west and l9-cache-eu-west locally, db-eu-west and cache-eu-west in
// compose).
func (f *netFault) check(context.Context) error {
	all, err := f.client.Proxies()
	if err != nil {
		return fmt.Errorf("toxiproxy: %w (is the layer up through it? local: scripts/stack.sh up N --faults)", err)
	}
	names := slices.Sorted(maps.Keys(all))
	for _, s := range f.servers {
		n := len(f.proxies)
		for _, name := range names {
			if name == s || f.name == "partition" && strings.HasSuffix(name, "-"+s) {
				f.proxies = append(f.proxies, name)
			}
		}
		if len(f.proxies) == n {
			return fmt.Errorf("-server %s: toxiproxy has no such proxy (it has: %s); is the layer up through it?", s, strings.Join(names, " "))
		}
	}
	return nil
}

func (f *netFault) inject(context.Context) error {
	for _, name := range f.proxies {
		p, err := f.client.Proxy(name)
		if err != nil {
			return err
		}
		for _, t := range f.toxics {
			if _, err := p.AddToxic(t.Name, t.Type, t.Stream, t.Toxicity, t.Attributes); err != nil {
				return fmt.Errorf("proxy %s: %w", name, err)
			}
		}
	}
	return nil
}

// heal removes the toxics inject added, those it got to included.
func (f *netFault) heal(context.Context) error {
	var errs []error
	for _, name := range f.proxies {
		p, err := f.client.Proxy(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range f.toxics {
			if err := p.RemoveToxic(t.Name); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("proxy %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var apiErr *toxiproxy.ApiError
	return errors.As(err, &apiErr) && apiErr.Status == 404
}
