package impair

import (
	"fmt"
	"net/netip"
	"strings"
)

// OnlyCandidate replaces a description's candidates with one host candidate
// at addr — the relay's — in the first media section (the bundle's), so
// that the peer the description goes to sends everything through the relay.
func OnlyCandidate(sdp string, addr netip.AddrPort) string {
	var b strings.Builder
	media := 0
	for line := range strings.SplitSeq(strings.TrimSuffix(sdp, "\r\n"), "\r\n") {
		if strings.HasPrefix(line, "a=candidate:") || line == "a=end-of-candidates" {
			continue
		}
		if strings.HasPrefix(line, "m=") {
			media++
			if media == 2 {
				fmt.Fprintf(&b, "a=candidate:1 1 udp 2130706431 %s %d typ host\r\n", addr.Addr(), addr.Port())
			}
		}
		b.WriteString(line + "\r\n")
	}
	if media == 1 {
		fmt.Fprintf(&b, "a=candidate:1 1 udp 2130706431 %s %d typ host\r\n", addr.Addr(), addr.Port())
	}
	return b.String()
}
