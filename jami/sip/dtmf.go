package sip

import (
	"strconv"
	"strings"
	"time"
)

// ContentTypeDTMFRelay is the content type of the INFO by which jamid sends
// a key (SIPCall::carryingDTMFdigits: "Signal=5\r\nDuration=160\r\n").
// jamid sends no RFC 4733 events in its media, though its SDP offers them.
const ContentTypeDTMFRelay = "application/dtmf-relay"

// ParseDTMFRelay reads a dtmf-relay body: the key (0-9, *, #, A-D) and how
// long it was pressed (0 if not said). Signal=16, the hook flash, and any
// other signal are not a key.
func ParseDTMFRelay(body []byte) (digit rune, d time.Duration, ok bool) {
	for _, line := range strings.Split(string(body), "\n") {
		k, v, found := strings.Cut(strings.TrimSpace(line), "=")
		if !found {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "signal":
			if len(v) == 1 && strings.ContainsRune("0123456789*#ABCDabcd", rune(v[0])) {
				digit, ok = rune(strings.ToUpper(v)[0]), true
			}
		case "duration":
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 && ms <= 10000 {
				d = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return digit, d, ok
}
