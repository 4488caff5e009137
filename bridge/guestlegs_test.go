package bridge

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A guest's address is the connection's, unless a proxy on loopback
// forwarded it; then the address that proxy added, not one the client
// wrote before it.
func TestRemoteAddr(t *testing.T) {
	r := httptest.NewRequest("GET", "/call/x", nil)
	r.RemoteAddr = "203.0.113.9:4000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	assert.Equal(t, "203.0.113.9", remoteAddr(r), "only a proxy on loopback is believed")
	r.RemoteAddr = "127.0.0.1:4000"
	assert.Equal(t, "198.51.100.1", remoteAddr(r))
	r.Header.Set("X-Forwarded-For", "10.9.9.9, 198.51.100.2")
	assert.Equal(t, "198.51.100.2", remoteAddr(r), "the proxy's own entry, not the client's")
	r.Header.Set("X-Forwarded-For", "junk")
	assert.Equal(t, "127.0.0.1", remoteAddr(r))
}
