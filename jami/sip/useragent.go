package sip

import (
	"strconv"
	"strings"
)

// DefaultUserAgent is what we send unless Config.UserAgent says otherwise.
// jamid reads the peer's version out of it to pick features: 11.0.2 turns
// on multi-stream (>= 10.0.2) and ICE reuse in re-INVITEs (>= 11.0.2) but
// not multi-ICE (13.3.0) or multi-audio (13.11.0), which voipbot does not
// do. The trailing " (...)" matters: jamid takes the version up to the
// next space or '-', and finds none without one.
const DefaultUserAgent = "Jami Daemon 11.0.2 (voipbot)"

// Version is a peer's Jami version, from its User-Agent
// ("Jami Daemon 13.7.0 (linux)"). The zero Version means it had none.
type Version struct{ Major, Minor, Patch, Build int }

// AtLeast reports whether v >= major.minor.patch.
func (v Version) AtLeast(major, minor, patch int) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch >= patch
}

// IsZero reports whether no version was found.
func (v Version) IsZero() bool { return v == Version{} }

func (v Version) String() string {
	s := strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor) + "." + strconv.Itoa(v.Patch)
	if v.Build != 0 {
		s += "." + strconv.Itoa(v.Build)
	}
	return s
}

// ParseUserAgent reads the version as jamid's SIPCall::setPeerUaVersion
// does: after "Jami Daemon ", up to a '-' (an unreleased build's commit
// id) or else a space, one to four dot-separated numbers. ok is false for
// anything else, as jamid then assumes an old peer.
func ParseUserAgent(ua string) (v Version, ok bool) {
	const pkg = "Jami Daemon "
	i := strings.Index(ua, pkg)
	if i < 0 {
		return Version{}, false
	}
	rest := ua[i+len(pkg):]
	var ver string
	if j := strings.IndexByte(rest, '-'); j >= 0 {
		ver = rest[:j]
	} else if j := strings.IndexByte(rest, ' '); j >= 0 {
		ver = rest[:j]
	}
	if ver == "" {
		return Version{}, false
	}
	parts := strings.Split(ver, ".")
	if len(parts) > 4 {
		return Version{}, false
	}
	var nums [4]int
	for k, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, false
		}
		nums[k] = n
	}
	return Version{nums[0], nums[1], nums[2], nums[3]}, true
}
