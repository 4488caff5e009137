//go:build linux

package jamid

import (
	"fmt"
	"strings"

	"github.com/voipbot/voipbot/internal/testbed/netns"
)

// disableIPv6Script turns IPv6 off for every interface of the namespace it
// runs in, present and future ("all" also applies to the existing ones),
// which removes their IPv6 addresses, loopback's ::1 included. Without IPv6
// support in the kernel there is nothing to do.
const disableIPv6Script = `set -e
[ -d /proc/sys/net/ipv6 ] || exit 0
for f in /proc/sys/net/ipv6/conf/default/disable_ipv6 /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/*/disable_ipv6; do
	echo 1 > "$f"
done
ip -6 -o addr show
`

// DisableIPv6 turns IPv6 off in link's namespace and checks that no IPv6
// address is left. Start does it; call it yourself before starting dhtnodes
// in a namespace jamid will join, so that they never see IPv6 either
// (dhtnode then runs on IPv4 only, which is all a local test DHT needs).
//
// Why: Debian's jamid bundles pjlib 2.12.1, whose get_ipv6_deprecated()
// reads a netlink address dump until NLMSG_DONE comes first in a datagram.
// Linux ≥ 6.9 appends NLMSG_DONE to the last data datagram instead, so with
// any IPv6 address in the namespace jamid's first media ICE set-up blocks
// forever (and jamid later crashes on hang-up). See the project's research
// notes (jami-dht.md §3, gotcha 2).
func DisableIPv6(link *netns.Link) error {
	out, err := link.Command("sh", "-c", disableIPv6Script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("turning IPv6 off in namespace %s: %w: %s", link.Name, err, strings.TrimSpace(string(out)))
	}
	if left := strings.TrimSpace(string(out)); left != "" {
		return fmt.Errorf("namespace %s still has IPv6 addresses after turning IPv6 off (jamid would hang in pjlib):\n%s", link.Name, left)
	}
	return nil
}
