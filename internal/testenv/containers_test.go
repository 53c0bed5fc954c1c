package testenv

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
)

func TestLoopbackHost(t *testing.T) {
	tests := []struct {
		name       string
		daemonHost string
		override   string // "-" for unset
		wantHost   string // the override afterwards
		wantErr    bool
	}{
		{"local socket", "unix:///var/run/docker.sock", "-", "127.0.0.1", false},
		{"local socket, override kept", "unix:///var/run/docker.sock", "localhost", "localhost", false},
		{"local socket, override off the machine", "unix:///var/run/docker.sock", "192.0.2.1", "192.0.2.1", true},
		{"tcp on loopback", "tcp://127.0.0.1:2375", "-", "", false},
		{"remote engine", "tcp://192.0.2.1:2375", "-", "", true},
		{"remote engine, ports forwarded to loopback", "tcp://192.0.2.1:2375", "127.0.0.1", "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envHostOverride, tt.override) // restored when t ends
			if tt.override == "-" {
				require.NoError(t, os.Unsetenv(envHostOverride))
			}
			err := loopbackHost(context.Background(), tt.daemonHost)
			if tt.wantErr {
				assert.ErrorContains(t, err, "not a loopback address")
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, tt.wantHost, os.Getenv(envHostOverride))
		})
	}
}

func TestPublishOnLoopback(t *testing.T) {
	req := &testcontainers.GenericContainerRequest{}
	require.NoError(t, testcontainers.WithExposedPorts("5432/tcp", "6379/tcp")(req))
	require.NoError(t, testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		hc.PortBindings = network.PortMap{network.MustParsePort("5432/tcp"): {{HostPort: "15432"}}}
	})(req))
	require.NoError(t, publishOnLoopback(req))

	hc := &container.HostConfig{}
	req.HostConfigModifier(hc)
	lo := netip.MustParseAddr("127.0.0.1")
	assert.Equal(t, network.PortMap{
		network.MustParsePort("5432/tcp"): {{HostIP: lo, HostPort: "15432"}},
		network.MustParsePort("6379/tcp"): {{HostIP: lo}},
	}, hc.PortBindings)

	assert.Error(t, publishOnLoopback(&testcontainers.GenericContainerRequest{}), "a request without ports")
}
