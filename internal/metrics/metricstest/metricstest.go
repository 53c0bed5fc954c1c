// Package metricstest reads a /metrics answer the way Prometheus does (expfmt) and finds
// series in it, for tests that check what a service exposes.
package metricstest

import (
	"io"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Scrape gets url (a /metrics endpoint) and parses its text exposition.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return Parse(t, resp.Body)
}

// Parse parses a text exposition.
func Parse(t testing.TB, r io.Reader) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	require.NoError(t, err)
	return fams
}

// Series returns the label sets of every series of the named family.
func (f Families) Series(name string) []map[string]string {
	fam, ok := f[name]
	if !ok {
		return nil
	}
	var out []map[string]string
	for _, m := range fam.GetMetric() {
		out = append(out, labels(m))
	}
	return out
}

// Value returns the value of the series of the named family whose labels include want:
// a counter's or gauge's value, or a histogram's sample count. ok is false when there is
// no such series; with several, their values are added.
func (f Families) Value(name string, want map[string]string) (v float64, ok bool) {
	fam, found := f[name]
	if !found {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !matches(labels(m), want) {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, ok
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
