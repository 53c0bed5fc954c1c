package loadreport

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func result(rps float64) *Result {
	return &Result{Tool: "loadgen", Requests: uint64(rps * 10), RPS: rps, P50MS: 2.5, P99MS: 120}
}

// sampleRecords is a small run: the ceiling, two layers, one of them not measured.
func sampleRecords() []Record {
	var recs []Record
	for _, wl := range Workloads {
		recs = append(recs,
			Record{Target: "ceiling", Workload: wl.ID, Shape: "GET /read/hot", Note: "trivial handler", Result: result(20000)},
			Record{Target: "L2", Name: "Read Cache", Workload: wl.ID, Shape: "GET /read/hot", Result: result(4000)},
			Record{Target: "L8", Name: "Polyglot <Persistence> & co", Workload: wl.ID, Note: "documents",
				Skipped: "scripts/stack.sh up 8 failed"},
		)
	}
	recs[1].Result.Non2xx, recs[1].Result.Statuses = 7, map[string]uint64{"503": 7}
	return recs
}

func sampleRun() Run {
	return Run{Command: "scripts/bench.sh -z 3s", Started: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Elapsed: 95 * time.Second, Duration: "3s", Warmup: "1s", Concurrency: 50, Keys: 100000,
		LoadStart: "1.0 2.0 3.0", LoadEnd: "4.0 5.0 6.0", Steal: "3.2%", Chart: "docs/benchmarks.svg",
		Machine: Machine{CPUs: 2, CPUModel: "Test CPU", MemoryGiB: 8, OS: "Debian 12", Go: "go1.26"}}
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteMarkdown(&b, sampleRun(), sampleRecords()))
	md := b.String()

	for _, want := range []string{
		"```\nscripts/bench.sh -z 3s\n```",
		"![Requests per second by layer and workload](docs/benchmarks.svg)",
		"2 CPUs (Test CPU), 8.0 GiB memory, Debian 12, go1.26",
		"50 concurrent clients", "3s measured per workload after 1s",
		"100000 keys `k0` … `k99999`",
		"1.0 2.0 3.0 at the start, 4.0 5.0 6.0 at the end",
		"**CPU steal**", "3.2% of all CPU time during the run",
		"**Total time of the run:** 1m35s.",
		"## Uniform read over 100,000 preloaded keys",
		"| ceiling | `GET /read/hot` | 20,000 | — | 2.50 | 120 | 0 | 0 |",
		"| L2 Read Cache | `GET /read/hot` | 4,000 | 20% | 2.50 | 120 | 7 (503×7) | 0 |",
		"| L8 Polyglot <Persistence> & co | — | — | — | — | — | — | not measured: scripts/stack.sh up 8 failed |",
		"* **ceiling:** trivial handler", "* **L8:** documents",
	} {
		assert.Contains(t, md, want)
	}
	for _, wl := range Workloads {
		assert.Equal(t, 1, strings.Count(md, "## "+wl.title(100000)+"\n"), wl.ID)
	}
	// The ceiling's note appears once although four records carry it.
	assert.Equal(t, 1, strings.Count(md, "trivial handler"))
}

func TestWriteMarkdownLastRecordWins(t *testing.T) {
	recs := []Record{
		{Target: "L1", Workload: "write", Result: result(10)},
		{Target: "L1", Workload: "write", Result: result(30)},
	}
	var b bytes.Buffer
	require.NoError(t, WriteMarkdown(&b, sampleRun(), recs))
	assert.Contains(t, b.String(), "| L1 | — | 30 |")
	assert.NotContains(t, b.String(), "| L1 | — | 10 |")
	assert.NotContains(t, b.String(), "## Hot-key read", "a workload without records has no table")
}

// svgBars decodes the SVG (which must be well-formed XML) and returns its bars' widths by
// their tooltip's target label.
func svgBars(t *testing.T, svg []byte) map[string][]string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	bars := map[string][]string{}
	var width string
	inRect := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "the chart is not well-formed XML")
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "rect" {
				for _, a := range el.Attr {
					if a.Name.Local == "width" {
						width = a.Value
					}
				}
				inRect = true
			}
		case xml.CharData:
			if inRect {
				label, _, _ := strings.Cut(string(el), ":")
				if label != "" {
					bars[label] = append(bars[label], width)
				}
			}
		case xml.EndElement:
			if el.Name.Local == "rect" {
				inRect = false
			}
		}
	}
	return bars
}

func TestWriteSVG(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteSVG(&b, sampleRun(), sampleRecords()))
	bars := svgBars(t, b.Bytes())

	// One bar per measured target and workload; the unmeasured L8 has none but is named.
	assert.Len(t, bars["ceiling"], len(Workloads))
	assert.Len(t, bars["L2 Read Cache"], len(Workloads))
	assert.Contains(t, b.String(), "L8 Polyglot &lt;Persistence&gt; &amp; co")
	assert.Contains(t, b.String(), "not measured")
	// The ceiling is 5× the only layer: the scale is the layer's, the ceiling bar is full
	// length and broken.
	barSpace := chartPanelWidth - chartLabelWidth - chartValueWidth - 10
	assert.Equal(t, bars["ceiling"][0], bars["L2 Read Cache"][0])
	assert.Equal(t, width(float64(barSpace)), bars["L2 Read Cache"][0])
	assert.Contains(t, b.String(), `stroke="#ffffff"`)
	assert.Contains(t, b.String(), "20,000")
}

func TestWriteSVGScalesToTheCeilingWhenItIsClose(t *testing.T) {
	recs := []Record{
		{Target: "ceiling", Workload: "write", Result: result(1000)},
		{Target: "L1", Workload: "write", Result: result(500)},
	}
	var b bytes.Buffer
	require.NoError(t, WriteSVG(&b, sampleRun(), recs))
	bars := svgBars(t, b.Bytes())
	barSpace := float64(chartPanelWidth - chartLabelWidth - chartValueWidth - 10)
	assert.Equal(t, []string{width(barSpace)}, bars["ceiling"])
	assert.Equal(t, []string{width(barSpace / 2)}, bars["L1"])
	assert.NotContains(t, b.String(), `stroke="#ffffff"`)
}

// width is how the chart writes a bar's length.
func width(v float64) string { return fmt.Sprintf("%.1f", v) }

func TestRecordsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	for _, rec := range sampleRecords() {
		require.NoError(t, AppendRecord(path, rec))
	}
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	got, err := ReadRecords(f)
	require.NoError(t, err)
	assert.Equal(t, sampleRecords(), got)
}

func TestAppendRecordRejectsIncompleteRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	tests := []struct {
		name string
		rec  Record
	}{
		{"no target", Record{Workload: "write", Result: result(1)}},
		{"unknown workload", Record{Target: "L1", Workload: "stress", Result: result(1)}},
		{"neither result nor reason", Record{Target: "L1", Workload: "write"}},
		{"both result and reason", Record{Target: "L1", Workload: "write", Result: result(1), Skipped: "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Error(t, AppendRecord(path, tc.rec))
		})
	}
	_, err := os.Stat(path)
	assert.True(t, os.IsNotExist(err), "a refused record writes nothing")
}

func TestReadRecordsRejectsUnknownWorkloads(t *testing.T) {
	_, err := ReadRecords(strings.NewReader(`{"target":"L1","workload":"stress"}` + "\n"))
	assert.ErrorContains(t, err, "line 1")
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567.8: "1,234,568"} {
		assert.Equal(t, want, thousands(in))
	}
}

func TestALayerAboveTheCeilingIsNotBroken(t *testing.T) {
	// On a busy machine a layer can outrun a ceiling measured at a worse moment: it is the
	// longest bar, drawn whole, and only a ceiling far above the layers is broken.
	recs := []Record{
		{Target: "ceiling", Workload: "uniform-read", Result: result(2127)},
		{Target: "L7", Workload: "uniform-read", Result: result(2543.2)},
	}
	var b bytes.Buffer
	require.NoError(t, WriteSVG(&b, sampleRun(), recs))
	barSpace := float64(chartPanelWidth - chartLabelWidth - chartValueWidth - 10)
	assert.Equal(t, []string{width(barSpace)}, svgBars(t, b.Bytes())["L7"])
	assert.NotContains(t, b.String(), `stroke="#ffffff"`)
	assert.Contains(t, b.String(), "Uniform read over 100,000 preloaded keys")
}

func TestOfCeilingUsesTheBestCeiling(t *testing.T) {
	recs := []Record{
		{Target: "ceiling (start)", Workload: "write", Result: result(1000)},
		{Target: "L1", Workload: "write", Result: result(500)},
		{Target: "ceiling (end)", Workload: "write", Result: result(1400)},
	}
	var b bytes.Buffer
	require.NoError(t, WriteMarkdown(&b, sampleRun(), recs))
	assert.Contains(t, b.String(), "| L1 | — | 500 | 36% |")
	assert.Contains(t, b.String(), "| ceiling (start) | — | 1,000 | — |")
	assert.Contains(t, b.String(), "| ceiling (end) | — | 1,400 | — |")

	b.Reset()
	require.NoError(t, WriteSVG(&b, sampleRun(), recs))
	bars := svgBars(t, b.Bytes())
	barSpace := float64(chartPanelWidth - chartLabelWidth - chartValueWidth - 10)
	assert.Equal(t, []string{width(barSpace * 500 / 1400)}, bars["L1"], "scaled to the best ceiling")
	assert.Equal(t, []string{width(barSpace)}, bars["ceiling (end)"])
}

func TestNotesAreListedOnce(t *testing.T) {
	recs := []Record{
		{Target: "ceiling (start)", Workload: "write", Note: "trivial", Result: result(10)},
		{Target: "L6", Workload: "write", Note: "queued", Result: result(10)},
		{Target: "ceiling (end)", Workload: "write", Note: "trivial", Result: result(10)},
	}
	var b bytes.Buffer
	require.NoError(t, WriteMarkdown(&b, sampleRun(), recs))
	assert.Contains(t, b.String(), "* **ceiling (start), ceiling (end):** trivial\n* **L6:** queued\n")
}
