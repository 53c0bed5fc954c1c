// Command loadreport is the glue between the load tools and the scripts that run them
// (load-test.sh, scripts/bench.sh): it reads the output of loadgen, hey or oha into one
// form, collects a benchmark's results, and writes BENCHMARKS.md and its SVG chart.
// Run `loadreport -h` for usage.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dblayers/dblayers/internal/loadreport"
	"github.com/dblayers/dblayers/internal/service"
)

const usage = `loadreport: read load-tool output, collect benchmark results, write the report.

Usage:
  loadreport parse -tool loadgen|hey|oha [FILE]
      one tab-separated line: requests, req/s, p50 ms, p99 ms, non-2xx, errors, notes
      (a latency the tool did not give is "-"; notes: what failed, e.g. "429×950", or "-");
      FILE defaults to standard input
  loadreport record -results FILE -target T -workload W [-name N] [-shape S] [-note N]
                    (-tool loadgen|hey|oha OUTPUT | -skipped REASON)
      append one result (or why there is none) to a results file (JSON lines)
  loadreport report -results FILE -markdown OUT.md [-chart OUT.svg] [-chart-link PATH]
                    -command CMD -started RFC3339 -elapsed DURATION -duration D -warmup D
                    -c N -keys N [-load-start "1 5 15"] [-load-end "1 5 15"] [-steal PERCENT] [-others TEXT]
      write the benchmark report (and its chart) from a results file; -load-end defaults
      to the load average now

Workloads: hot-read, uniform-read, write, mixed. Targets: ceiling, L0 … L10.
`

func main() { service.Main("loadreport", run) }

func run(_ context.Context) error {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("missing command: parse, record or report")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "parse":
		return parse(args, os.Stdin, os.Stdout)
	case "record":
		return record(args)
	case "report":
		return report(args)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", os.Args[1])
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("loadreport "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v (see loadreport -h)", err)
	}
	return nil
}

// readResult parses the tool output in file ("" or "-" = stdin).
func readResult(tool, file string, stdin io.Reader) (loadreport.Result, error) {
	in := stdin
	if file != "" && file != "-" {
		b, err := os.ReadFile(file)
		if err != nil {
			return loadreport.Result{}, err
		}
		in = bytes.NewReader(b)
	}
	return loadreport.Parse(tool, in)
}

func parse(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlags("parse")
	tool := fs.String("tool", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return errors.New("parse: at most one FILE")
	}
	res, err := readResult(*tool, fs.Arg(0), stdin)
	if err != nil {
		return err
	}
	notes := res.Notes()
	if notes == "" {
		notes = "-"
	}
	_, err = fmt.Fprintf(stdout, "%d\t%.1f\t%s\t%s\t%d\t%d\t%s\n",
		res.Requests, res.RPS, ms(res.P50MS), ms(res.P99MS), res.Non2xx, res.Errors, notes)
	return err
}

// ms is a latency for parse's line: two decimals, or "-" when the tool did not give it.
func ms(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func record(args []string) error {
	fs := newFlags("record")
	results := fs.String("results", "", "")
	var rec loadreport.Record
	fs.StringVar(&rec.Target, "target", "", "")
	fs.StringVar(&rec.Name, "name", "", "")
	fs.StringVar(&rec.Workload, "workload", "", "")
	fs.StringVar(&rec.Shape, "shape", "", "")
	fs.StringVar(&rec.Note, "note", "", "")
	fs.StringVar(&rec.Skipped, "skipped", "", "")
	tool := fs.String("tool", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *results == "" {
		return errors.New("record: -results is required")
	}
	switch {
	case rec.Skipped != "" && (*tool != "" || fs.NArg() > 0):
		return errors.New("record: give either -skipped or -tool with an output file")
	case rec.Skipped == "":
		if *tool == "" || fs.NArg() != 1 {
			return errors.New("record: -tool and one OUTPUT file are required")
		}
		res, err := readResult(*tool, fs.Arg(0), nil)
		if err != nil {
			return err
		}
		rec.Result = &res
	}
	return loadreport.AppendRecord(*results, rec)
}

func report(args []string) error {
	fs := newFlags("report")
	results := fs.String("results", "", "")
	markdown := fs.String("markdown", "", "")
	chart := fs.String("chart", "", "")
	var r loadreport.Run
	fs.StringVar(&r.Chart, "chart-link", "", "")
	fs.StringVar(&r.Command, "command", "", "")
	started := fs.String("started", "", "")
	fs.DurationVar(&r.Elapsed, "elapsed", 0, "")
	fs.StringVar(&r.Duration, "duration", "", "")
	fs.StringVar(&r.Warmup, "warmup", "0s", "")
	fs.IntVar(&r.Concurrency, "c", 0, "")
	fs.IntVar(&r.Keys, "keys", 0, "")
	fs.StringVar(&r.LoadStart, "load-start", "", "")
	fs.StringVar(&r.LoadEnd, "load-end", "", "")
	fs.StringVar(&r.Steal, "steal", "", "")
	fs.StringVar(&r.Others, "others", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *results == "" || *markdown == "" || r.Command == "" || r.Duration == "" || r.Concurrency <= 0 {
		return errors.New("report: -results, -markdown, -command, -duration and -c are required")
	}
	var err error
	if r.Started, err = time.Parse(time.RFC3339, *started); err != nil {
		return fmt.Errorf("report: -started: %w", err)
	}
	f, err := os.Open(*results)
	if err != nil {
		return err
	}
	recs, err := loadreport.ReadRecords(f)
	f.Close()
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("report: %s holds no results", *results)
	}
	r.Machine = loadreport.ThisMachine()
	if r.LoadEnd == "" {
		r.LoadEnd = loadreport.LoadAverage()
	}
	if *chart != "" && r.Chart == "" {
		r.Chart = *chart
	}
	var md bytes.Buffer
	if err := loadreport.WriteMarkdown(&md, r, recs); err != nil {
		return err
	}
	if err := writeFile(*markdown, md.Bytes()); err != nil {
		return err
	}
	if *chart != "" {
		var svg bytes.Buffer
		if err := loadreport.WriteSVG(&svg, r, recs); err != nil {
			return err
		}
		return writeFile(*chart, svg.Bytes())
	}
	return nil
}

// writeFile replaces path with data through a temporary file, so that a reader never sees
// half a report.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".loadreport-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
