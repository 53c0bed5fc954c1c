// Command loadgen is the project's HTTP load generator for loopback targets, and the
// trivial-handler ceiling server it is compared against. Run `loadgen -h` for usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/loadgen"
	"github.com/dblayers/dblayers/internal/service"
)

const usage = `loadgen: HTTP load for targets on this machine (loopback only), and a ceiling server.

Usage:
  loadgen run [flags] URL                   one kind of request
  loadgen run [flags] -spec '...' [-spec '...' ...]   a weighted mix of kinds
  loadgen ceiling [-addr 127.0.0.1:8099]    serve the trivial-handler ceiling until SIGINT/SIGTERM

Flags of run (hey/oha-like; flags go before the URL):
  -c N          concurrency: workers, each with one request in flight (default 50, at most 10000)
  -n N          measured requests, then stop (at most 10,000,000)     } exactly one of -n and -z
  -z DURATION   send for this long, e.g. 10s (at most 10m)            }
  -q RATE       total requests per second, warm-up included (0 = unlimited): starts are spaced
                at least 1/RATE apart, and a start missed because all workers were busy is not
                made up, so at most RATE*T+1 requests start in any T seconds
  -warmup D     send for D first without measuring (not counted in -n or in the results)
  -timeout D    per request, connect to last body byte (default 20s); a timeout is an error
  -m METHOD     method (default GET, or POST when -d is given)
  -H 'N: V'     header, repeatable (-H 'Host: x' sets the Host)
  -d BODY       request body template
  -T TYPE       Content-Type of requests with a body (default application/json)
  -spec 'WEIGHT METHOD URL [BODY]'   repeatable, instead of URL/-m/-d: each request picks a spec
                at random in proportion to WEIGHT; results are given in total and per spec
  -o text|json  output format (default text); json is one object: the totals at the top level
                (requests, rps, avg/min/p50/p90/p99/p999/max_ms, status_codes, non_2xx, errors,
                error_kinds, duration_s ...) and per spec under "specs" for a mix

Templates, expanded per request in the URL path/query and the body:
  {n}       the request's sequence number in the run: 0, 1, 2 ... (distinct-key writes)
  {run}     a random number fixed for the run (keys fresh across repeated runs)
  {rand}    a random number in [0, 2^63)
  {key:N}   a number drawn uniformly from 0 ... N-1 (uniform reads over N preloaded keys)
  Every occurrence of a placeholder in one request has the same value; other text (JSON
  braces included) is sent as is.

Results: requests, requests/s (responses and errors over the measured time), latency average,
fastest, p50, p90, p99, p99.9 and slowest in ms (from sending to the last body byte, of
requests that got a response), the status-code histogram and the errors (no response) by
kind. Latencies are kept in a fixed-size log-linear histogram: percentiles are within 0.4%,
average, fastest and slowest are exact.

Safety: targets must be 127.0.0.0/8, ::1 or localhost; anything else is refused (this
workplace forbids load on other addresses), and every connection's address is checked again.

Examples:
  loadgen run -c 50 -z 10s http://127.0.0.1:8002/read/hot
  loadgen run -c 50 -z 10s -d '{"key":"lg-{run}-{n}","value":"v{n}"}' http://127.0.0.1:8002/write
  loadgen run -c 50 -z 10s 'http://127.0.0.1:8002/read/k{key:100000}'
  loadgen run -c 50 -z 10s -spec '70 GET http://127.0.0.1:8002/read/k{key:100000}' \
      -spec '30 POST http://127.0.0.1:8002/write {"key":"lg-{run}-{n}","value":"v{n}"}'
  loadgen run -c 50 -z 10s -q 1000 -o json http://127.0.0.1:8099/read/x
`

func main() { service.Main("loadgen", run) }

func run(ctx context.Context) error {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("missing command: run or ceiling")
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		return runLoad(ctx, args, os.Stdout)
	case "ceiling":
		return runCeiling(ctx, args)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ", ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// parseRun turns run's arguments into a configuration and an output format.
func parseRun(args []string) (loadgen.Config, string, error) {
	fs := flag.NewFlagSet("loadgen run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := loadgen.Config{}
	var headers, specs repeated
	fs.IntVar(&cfg.Concurrency, "c", 50, "")
	fs.IntVar(&cfg.Requests, "n", 0, "")
	fs.DurationVar(&cfg.Duration, "z", 0, "")
	fs.Float64Var(&cfg.Rate, "q", 0, "")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "")
	fs.DurationVar(&cfg.Timeout, "timeout", 20*time.Second, "")
	method := fs.String("m", "", "")
	body := fs.String("d", "", "")
	fs.StringVar(&cfg.ContentType, "T", "application/json", "")
	fs.Var(&headers, "H", "")
	fs.Var(&specs, "spec", "")
	output := fs.String("o", "text", "")

	// Flags may also follow the URL: parse again after each positional argument.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return cfg, "", err
			}
			return cfg, "", fmt.Errorf("%v (see loadgen -h)", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	cfg.Headers = headers
	if *output != "text" && *output != "json" {
		return cfg, "", fmt.Errorf("-o %q: want text or json", *output)
	}
	switch {
	case len(specs) > 0 && (len(positional) > 0 || *method != "" || *body != ""):
		return cfg, "", errors.New("-spec replaces URL, -m and -d: give either specs or a URL")
	case len(specs) > 0:
		for _, s := range specs {
			spec, err := parseSpec(s)
			if err != nil {
				return cfg, "", err
			}
			cfg.Specs = append(cfg.Specs, spec)
		}
	case len(positional) == 1:
		m := *method
		if m == "" && *body != "" {
			m = "POST"
		}
		cfg.Specs = []loadgen.Spec{{Weight: 1, Method: m, URL: positional[0], Body: *body}}
	case len(positional) == 0:
		return cfg, "", errors.New("no URL (see loadgen -h)")
	default:
		return cfg, "", fmt.Errorf("one URL expected, got %d: %q", len(positional), positional)
	}
	return cfg, *output, cfg.Validate()
}

// parseSpec reads 'WEIGHT METHOD URL [BODY]'; BODY is the rest of the line, spaces included.
func parseSpec(s string) (loadgen.Spec, error) {
	fields := strings.Fields(s)
	if len(fields) < 3 {
		return loadgen.Spec{}, fmt.Errorf("-spec %q: want 'WEIGHT METHOD URL [BODY]'", s)
	}
	weight, err := strconv.Atoi(fields[0])
	if err != nil || weight < 1 {
		return loadgen.Spec{}, fmt.Errorf("-spec %q: weight %q must be an integer ≥ 1", s, fields[0])
	}
	spec := loadgen.Spec{Weight: weight, Method: fields[1], URL: fields[2]}
	if len(fields) > 3 {
		// The body starts after the URL; keep its own spacing.
		rest := strings.TrimSpace(s)
		for range 3 {
			rest = strings.TrimSpace(rest[strings.IndexAny(rest, " \t\n"):])
		}
		spec.Body = rest
	}
	return spec, nil
}

func runLoad(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, output, err := parseRun(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if err != nil {
		return err
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if output == "json" {
		return res.WriteJSON(stdout)
	}
	return res.WriteText(stdout)
}

func runCeiling(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen ceiling", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "127.0.0.1:8099", "")
	logLevel := fs.String("log-level", "warn", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(os.Stdout, usage)
			return nil
		}
		return fmt.Errorf("%v (see loadgen -h)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	host, portText, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", *addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("-addr %q: bad port", *addr)
	}
	if err := loadgen.CheckLoopback(host); err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	cfg := httpapi.ServerConfig{Host: host, Port: port, ShutdownTimeout: 5 * time.Second}
	logger := service.NewLogger(*logLevel).With("service", "loadgen-ceiling")
	return httpapi.Serve(ctx, cfg, loadgen.CeilingHandler(), logger)
}
