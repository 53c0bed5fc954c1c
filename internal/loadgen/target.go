package loadgen

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// notLoopback explains the refusal of a target that is not on this machine.
const notLoopback = "only loopback targets are allowed (127.0.0.0/8, ::1, localhost): " +
	"this workplace forbids load on any other address"

// CheckLoopback returns nil if host (a URL's host, without port) names this machine's
// loopback interface: an address in 127.0.0.0/8, ::1 (also IPv4-mapped), or "localhost".
// Other names are refused without resolving them.
func CheckLoopback(host string) error {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" {
		return nil
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if i := strings.IndexByte(h, '%'); i >= 0 { // zone, e.g. ::1%lo
		h = h[:i]
	}
	addr, err := netip.ParseAddr(h)
	if err != nil || !addr.Unmap().IsLoopback() {
		return fmt.Errorf("target host %q refused: %s", host, notLoopback)
	}
	return nil
}

// DialLoopbackOnly is a net.Dialer Control function that refuses, before connecting, any
// address that is not loopback: the check CheckLoopback makes on names, made again on the
// address a name like "localhost" actually resolved to.
func DialLoopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Unmap().IsLoopback() {
		return fmt.Errorf("dial %s %s refused: %s", network, address, notLoopback)
	}
	return nil
}
