package testenv

import (
	"net/url"
	"testing"
)

// HostPort is the host:port of a server URL (postgres://, redis://, mongodb://), e.g. the
// upstream of a Proxy.
func HostPort(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("no host:port in the server URL: %v", err)
	}
	return u.Host
}
