package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestComposeOverrideRoutesEveryBinaryThroughToxiproxy generates the override of every
// docker-compose/lN.yml and loads the pair as docker compose would, with profile faults.
func TestComposeOverrideRoutesEveryBinaryThroughToxiproxy(t *testing.T) {
	files, err := filepath.Glob("../../docker-compose/l*.yml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			override := filepath.Join(t.TempDir(), "faults.yml")
			f, err := os.Create(override)
			require.NoError(t, err)
			require.NoError(t, writeComposeOverride(t.Context(), file, f))
			require.NoError(t, f.Close())

			base := load(t, file)
			p := load(t, file, override)
			toxi, ok := p.Services[toxiproxyService]
			require.True(t, ok, "a toxiproxy service")
			assert.Equal(t, []string{faultsProfile}, toxi.Profiles)
			assert.Equal(t, "ghcr.io/shopify/toxiproxy:2.12.0", toxi.Image)
			require.Len(t, toxi.Ports, 1)
			assert.Equal(t, "127.0.0.1", toxi.Ports[0].HostIP)
			_, inBase := base.Services[toxiproxyService]
			assert.False(t, inBase, "not in the compose file itself")

			var proxies []proxySpec
			require.NoError(t, json.Unmarshal([]byte(p.Configs[toxiproxyService].Content), &proxies))
			require.NotEmpty(t, proxies)
			listen := map[string]proxySpec{}
			for _, px := range proxies {
				server, ok := p.Services[px.Name]
				require.True(t, ok, "proxy %s is named after a service", px.Name)
				require.Len(t, server.Ports, 1)
				assert.Equal(t, fmt.Sprintf("0.0.0.0:%s", server.Ports[0].Published), px.Listen, "on the server's host port")
				assert.Equal(t, fmt.Sprintf("%s:%d", px.Name, server.Ports[0].Target), px.Upstream)
				listen[strings.TrimPrefix(px.Listen, "0.0.0.0:")] = px
			}

			routed := 0
			for name, s := range p.Services {
				if s.Image != "dblayers:latest" {
					continue
				}
				for key, v := range s.Environment {
					was := base.Services[name].Environment[key]
					if v == nil || !strings.Contains(*v, "://") {
						assert.Equal(t, was, v, "%s %s unchanged", name, key)
						continue
					}
					parts, wasParts := strings.Split(*v, ","), strings.Split(*was, ",")
					require.Len(t, parts, len(wasParts))
					for i := range parts {
						u, err := url.Parse(parts[i])
						require.NoError(t, err)
						old, err := url.Parse(wasParts[i])
						require.NoError(t, err)
						if _, server := base.Services[old.Hostname()]; !server {
							assert.Equal(t, old, u, "%s %s unchanged", name, key)
							continue
						}
						routed++
						assert.Equal(t, toxiproxyService, u.Hostname(), "%s %s through toxiproxy", name, key)
						assert.Equal(t, old.Hostname(), listen[u.Port()].Name, "%s %s through its server's proxy", name, key)
						assert.Equal(t, old.User, u.User)
						assert.Equal(t, old.Path, u.Path)
						assert.Equal(t, types.ServiceConditionHealthy, s.DependsOn[toxiproxyService].Condition)
					}
				}
			}
			assert.Positive(t, routed)
		})
	}
}

func load(t *testing.T, files ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(files, cli.WithWorkingDirectory(filepath.Dir(files[0])),
		cli.WithProfiles([]string{faultsProfile}))
	require.NoError(t, err)
	p, err := opts.LoadProject(t.Context())
	require.NoError(t, err)
	return p
}
