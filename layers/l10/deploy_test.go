package l10_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/dblayers/dblayers/internal/metrics/metricstest"
	"github.com/dblayers/dblayers/layers/l10"
)

// repoFile reads a file of the repository.
func repoFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", path))
	require.NoError(t, err)
	return data
}

// deploy/prometheus/prometheus.yml scrapes the api's own port and path (the original's
// scraped api:8001, where nothing listened).
func TestPrometheusScrapesTheAPI(t *testing.T) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(repoFile(t, "deploy/prometheus/prometheus.yml"), &cfg))
	require.Len(t, cfg.ScrapeConfigs, 1)
	sc := cfg.ScrapeConfigs[0]
	assert.Equal(t, "enterprise-api", sc.JobName, "the dashboard selects this job")
	assert.Equal(t, "/metrics", sc.MetricsPath)
	require.Len(t, sc.StaticConfigs, 1)
	require.Len(t, sc.StaticConfigs[0].Targets, 1)
	host, port, err := net.SplitHostPort(sc.StaticConfigs[0].Targets[0])
	require.NoError(t, err)
	assert.Equal(t, "api", host, "the compose service of docker-compose/l10.yml")
	assert.Equal(t, "8010", port, "the api's port (8000+10)")

	compose := string(repoFile(t, "docker-compose/l10.yml"))
	assert.Contains(t, compose, "../deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml")
	assert.Contains(t, compose, `"8010:8010"`)
}

// metricName finds the metric selectors of a PromQL expression: the dashboard writes every
// selector with a {job=…} matcher, so a name followed by { is a metric.
var metricName = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

// Every query of the provisioned Grafana dashboard names series this service exposes, and
// the dashboard uses the provisioned data source.
func TestDashboardQueriesExistingSeries(t *testing.T) {
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(repoFile(t, "deploy/grafana/dashboards/l10.json"), &dash))
	var ds struct {
		Datasources []struct {
			UID string `yaml:"uid"`
			URL string `yaml:"url"`
		} `yaml:"datasources"`
	}
	require.NoError(t, yaml.Unmarshal(repoFile(t, "deploy/grafana/provisioning/datasources/prometheus.yml"), &ds))
	require.Len(t, ds.Datasources, 1)
	assert.Equal(t, "http://prometheus:9090", ds.Datasources[0].URL)

	// Traffic that makes every kind of series appear.
	f := start(t, func(c *l10.Config) { c.RateLimitRequests, c.RateLimitWindow = 3, time.Hour })
	c := f.client(t)
	c.MustWrite("dash", "v")
	c.Read("dash")
	c.Read("dash-missing")
	c.Read("dash") // 429
	f.as(t).Read("dash")
	fams := metricstest.Scrape(t, f.tg.URL+"/metrics")

	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		assert.Equal(t, ds.Datasources[0].UID, p.Datasource.UID, p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, target := range p.Targets {
			names := metricName.FindAllStringSubmatch(target.Expr, -1)
			assert.NotEmpty(t, names, "%s: %s", p.Title, target.Expr)
			for _, m := range names {
				queries++
				name := m[1]
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil {
						name = base
					}
				}
				assert.Contains(t, fams, name, "%s: %s", p.Title, target.Expr)
				assert.Contains(t, target.Expr, m[1]+`{job="enterprise-api"`, "%s: select the scrape job", p.Title)
			}
		}
	}
	assert.GreaterOrEqual(t, queries, 15)
}
