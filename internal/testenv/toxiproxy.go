package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// FaultProxy is a Toxiproxy proxy, run inside the test binary, between a test and one
// upstream server: the test dials Addr instead of the server, and its toxics make the
// network between them slow, silent, reset or cut. A toxic applies to the connections open
// when it is added and to every new one, until Heal; adding one of a kind already there
// replaces it.
type FaultProxy struct {
	proxy    *toxiproxy.Proxy
	addr     string
	upstream string
}

// Proxy starts a proxy to upstream ("127.0.0.1:PORT") on a free port of 127.0.0.1, with no
// toxic. It is stopped, and its connections closed, when t ends. The upstream must be on
// loopback: fault tests send no traffic off the machine.
func Proxy(t testing.TB, upstream string) *FaultProxy {
	t.Helper()
	host, _, err := net.SplitHostPort(upstream)
	if err != nil {
		t.Fatalf("proxy upstream %q: %v", upstream, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := onLoopback(ctx, host); err != nil {
		t.Fatalf("proxy upstream %q: %v", upstream, err)
	}
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	proxy := toxiproxy.NewProxy(server, t.Name(), "127.0.0.1:0", upstream)
	if err := proxy.Start(); err != nil {
		t.Fatalf("start a proxy to %s: %v", upstream, err)
	}
	t.Cleanup(proxy.Stop)
	// Start has returned, so Listen holds the port the listener got.
	return &FaultProxy{proxy: proxy, addr: proxy.Listen, upstream: upstream}
}

// Addr is the proxy's address, "127.0.0.1:PORT", to dial instead of the upstream.
func (p *FaultProxy) Addr() string { return p.addr }

// URL is u (postgres://, redis://, mongodb://…) with its host and port replaced by Addr.
func (p *FaultProxy) URL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		panic(fmt.Sprintf("testenv: proxy URL %q: %v", u, err))
	}
	parsed.Host = p.addr
	return parsed.String()
}

// Latency delays the data in each direction by d (whole milliseconds): a request and its answer take at least
// 2·d longer, a connection's handshake 2·d per round trip.
func (p *FaultProxy) Latency(t testing.TB, d time.Duration) {
	t.Helper()
	attrs := map[string]int64{"latency": d.Milliseconds()}
	p.add(t, "latency", "upstream", attrs)
	p.add(t, "latency", "downstream", attrs)
}

// Hang drops every byte in both directions and keeps the connections open, as a stuck
// server or a partition does: a client waits until its own deadline. New connections are
// accepted and hang too. Heal closes the connections that were held.
func (p *FaultProxy) Hang(t testing.TB) {
	t.Helper()
	attrs := map[string]int64{"timeout": 0}
	p.add(t, "timeout", "upstream", attrs)
	p.add(t, "timeout", "downstream", attrs)
}

// ResetPeer closes a connection as soon as data crosses it in either direction, dropping
// that data: a new connection is reset (RST, "connection reset by peer"); one that was
// open when the toxic was added is closed (FIN, EOF) at its next request.
func (p *FaultProxy) ResetPeer(t testing.TB) {
	t.Helper()
	attrs := map[string]int64{"timeout": 0}
	p.add(t, "reset_peer", "upstream", attrs)
	p.add(t, "reset_peer", "downstream", attrs)
}

// LimitData closes each connection once n bytes have gone from the upstream to the client
// (counted from when the toxic was added for an open connection): a larger answer is cut.
func (p *FaultProxy) LimitData(t testing.TB, n int64) {
	t.Helper()
	p.add(t, "limit_data", "downstream", map[string]int64{"bytes": n})
}

// Heal removes every toxic: data flows again on new connections at once. Connections that
// a Hang held are closed, the others carry on.
func (p *FaultProxy) Heal(t testing.TB) {
	t.Helper()
	p.proxy.Toxics.ResetToxics(context.Background())
	t.Logf("toxiproxy %s -> %s: healed", p.addr, p.upstream)
}

// add adds the toxic kind on stream ("upstream": client to server, "downstream": server to
// client) with attrs, replacing one of the same kind and stream.
func (p *FaultProxy) add(t testing.TB, kind, stream string, attrs map[string]int64) {
	t.Helper()
	name := kind + "_" + stream
	// Not found is the usual answer: there is nothing to replace.
	_ = p.proxy.Toxics.RemoveToxic(context.Background(), name)
	body, err := json.Marshal(map[string]any{
		"name": name, "type": kind, "stream": stream, "toxicity": 1, "attributes": attrs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.proxy.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		t.Fatalf("toxiproxy %s -> %s: add %s: %v", p.addr, p.upstream, name, err)
	}
	t.Logf("toxiproxy %s -> %s: %s %v", p.addr, p.upstream, name, attrs)
}
