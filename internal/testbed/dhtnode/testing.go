//go:build linux

package dhtnode

import (
	"os"
	"testing"
)

// NewTestNetwork is NewNetwork for a test: it fails the test (with how to
// install them) when dhtnode, python3-opendht or root are missing, and
// closes the network when the test ends, logging the output of every node
// still running if the test failed.
func NewTestNetwork(t testing.TB) *Network {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("this test needs Debian's dhtnode at %s (apt-get install dhtnode python3-opendht): %v", Binary, err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root: it runs dhtnode in a network namespace")
	}
	n, err := NewNetwork()
	if err != nil {
		t.Fatalf("creating the dhtnode network: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, node := range n.Nodes() {
				t.Logf("dhtnode on port %d:\n%s", node.Port(), node.LogTail())
			}
		}
		if err := n.Close(); err != nil {
			t.Errorf("closing the dhtnode network: %v", err)
		}
	})
	return n
}
