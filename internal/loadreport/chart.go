package loadreport

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// Chart geometry, in SVG user units (pixels at 100%).
const (
	chartPanelWidth = 470
	chartLabelWidth = 150 // target names, left of the bars
	chartValueWidth = 70  // the number right of the longest bar
	chartBarHeight  = 14
	chartBarGap     = 6
	chartPanelTitle = 28
	chartHeader     = 46
	chartMargin     = 10
	chartColumns    = 2
)

// Colours: the ceiling is grey, so that it reads as a reference, not as a layer.
const (
	colourLayer   = "#4e79a7"
	colourCeiling = "#9c9c9c"
	colourText    = "#222222"
	colourMuted   = "#666666"
)

// WriteSVG draws requests per second by target, one panel per workload (two columns), as a
// self-contained SVG (no scripts, no external fonts or images). Every panel has its own
// linear scale from 0 to its largest value, written at the end of each bar.
func WriteSVG(w io.Writer, run Run, recs []Record) error {
	targets := targetOrder(recs)
	var panels []Workload
	for _, wl := range Workloads {
		if len(recordsFor(recs, wl.ID, targets)) > 0 {
			panels = append(panels, wl)
		}
	}
	rowsPerPanel := max(len(targets), 1)
	panelHeight := chartPanelTitle + rowsPerPanel*(chartBarHeight+chartBarGap) + chartBarGap
	columns := min(chartColumns, max(len(panels), 1))
	panelRows := (len(panels) + columns - 1) / columns
	width := 2*chartMargin + columns*chartPanelWidth
	height := chartHeader + panelRows*panelHeight + chartMargin

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" `+
		`font-family="Helvetica, Arial, sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", esc("Requests per second by layer and workload"))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold" fill="%s">%s</text>`+"\n",
		chartMargin, colourText, esc("Requests per second (higher is better)"))
	fmt.Fprintf(&b, `<text x="%d" y="36" fill="%s">%s</text>`+"\n", chartMargin, colourMuted,
		esc(fmt.Sprintf("%d clients, %s per workload, one layer at a time; %d CPUs; %s. Grey: the "+
			"trivial-handler ceiling (bar broken when off scale)", run.Concurrency, run.Duration,
			run.Machine.CPUs, run.Started.UTC().Format("2006-01-02"))))

	for i, wl := range panels {
		x := chartMargin + (i%columns)*chartPanelWidth
		y := chartHeader + (i/columns)*panelHeight
		writePanel(&b, x, y, wl, run.Keys, recordsFor(recs, wl.ID, targets))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writePanel(b *strings.Builder, x, y int, wl Workload, keys int, rows []Record) {
	fmt.Fprintf(b, `<g transform="translate(%d,%d)">`+"\n", x, y)
	fmt.Fprintf(b, `<text x="0" y="18" font-size="12" font-weight="bold" fill="%s">%s</text>`+"\n",
		colourText, esc(wl.title(keys)))
	// Scale to the largest layer, so that layers stay comparable when the ceiling is far above
	// them (the ceiling more than 3× the best layer): the ceiling is then drawn full length,
	// broken, with its number.
	top, ceiling := 0.0, 0.0
	for _, r := range rows {
		switch {
		case r.Result == nil:
		case isCeiling(r.Target):
			ceiling = max(ceiling, r.Result.RPS)
		default:
			top = max(top, r.Result.RPS)
		}
	}
	if top == 0 || ceiling <= top*3 {
		top = max(top, ceiling)
	}
	barSpace := float64(chartPanelWidth - chartLabelWidth - chartValueWidth - 10)
	for i, r := range rows {
		by := chartPanelTitle + i*(chartBarHeight+chartBarGap)
		ty := by + chartBarHeight - 3
		label := r.Target
		if r.Name != "" {
			label += " " + r.Name
		}
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end" fill="%s">%s</text>`+"\n",
			chartLabelWidth-6, ty, colourText, esc(label))
		if r.Result == nil {
			fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s" font-style="italic">not measured</text>`+"\n",
				chartLabelWidth, ty, colourMuted)
			continue
		}
		length, broken := barSpace, r.Result.RPS > top // only a ceiling can be off scale
		if top > 0 && !broken {
			length = barSpace * r.Result.RPS / top
		}
		colour := colourLayer
		if isCeiling(r.Target) {
			colour = colourCeiling
		}
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			chartLabelWidth, by, length, chartBarHeight, colour,
			esc(fmt.Sprintf("%s: %s req/s, p50 %s ms, p99 %s ms", label, thousands(r.Result.RPS),
				fmtMS(r.Result.P50MS), fmtMS(r.Result.P99MS))))
		if broken { // two white slashes across the bar: "not to scale"
			for _, dx := range []float64{-14, -9} {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ffffff" stroke-width="2"/>`+"\n",
					float64(chartLabelWidth)+barSpace*0.8+dx, by+chartBarHeight+1, float64(chartLabelWidth)+barSpace*0.8+dx+4, by-1)
			}
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" fill="%s">%s</text>`+"\n",
			float64(chartLabelWidth)+length+4, ty, colourText, esc(thousands(r.Result.RPS)))
	}
	b.WriteString("</g>\n")
}

func esc(s string) string { return html.EscapeString(s) }
