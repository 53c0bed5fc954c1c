package loadgen

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCheckLoopback(t *testing.T) {
	allowed := []string{"127.0.0.1", "127.1.2.3", "127.255.255.255", "::1", "[::1]", "localhost",
		"LOCALHOST", "localhost.", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1", "::1%lo"}
	for _, h := range allowed {
		assert.NoError(t, CheckLoopback(h), h)
	}
	refused := []string{"", "10.0.0.1", "128.0.0.1", "0.0.0.0", "::", "192.168.1.1", "example.com",
		"localhost.example.com", "127.0.0.1.nip.io", "::2", "::ffff:10.0.0.1", "2130706433", "0x7f000001"}
	for _, h := range refused {
		err := CheckLoopback(h)
		if assert.Error(t, err, h) {
			assert.Contains(t, err.Error(), "only loopback targets are allowed")
		}
	}
}

func TestDialLoopbackOnly(t *testing.T) {
	assert.NoError(t, DialLoopbackOnly("tcp4", "127.0.0.1:80", nil))
	assert.NoError(t, DialLoopbackOnly("tcp6", "[::1]:80", nil))
	assert.ErrorContains(t, DialLoopbackOnly("tcp4", "10.1.1.1:80", nil), "only loopback")
	assert.Error(t, DialLoopbackOnly("tcp4", "nonsense", nil))
}
