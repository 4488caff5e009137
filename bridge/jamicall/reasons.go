package jamicall

import (
	"bytes"
	"context"
	"errors"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/jami/sip"
)

// statusFor is the SIP status a ringing Jami call is refused with when the
// conversation ends it for r: what jamid shows its user (486 busy, 603
// declined, 480 nobody answered).
func statusFor(r leg.Reason) (int, string) {
	switch r {
	case leg.Busy:
		return 486, "Busy Here"
	case leg.Declined:
		return 603, "Decline"
	case leg.NoAnswer:
		return 480, "Temporarily Unavailable"
	case leg.Shutdown:
		return 503, "Service Unavailable"
	case leg.Failed:
		return 500, "Server Internal Error"
	}
	return 480, "Temporarily Unavailable"
}

// reasonOfStatus is what a SIP refusal of our INVITE means to the
// conversation.
func reasonOfStatus(code int) leg.Reason {
	switch code {
	case 486, 600:
		return leg.Busy
	case 603, 403:
		return leg.Declined
	case 408, 480, 487:
		return leg.NoAnswer
	}
	return leg.Failed
}

// endOfDialError is how an outbound leg ends when no device answered.
func endOfDialError(ctx context.Context, err error) leg.End {
	var st *sip.StatusError
	switch {
	case errors.As(err, &st):
		return leg.End{Reason: reasonOfStatus(st.Code), By: leg.ByPeer, Detail: err.Error()}
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return leg.End{Reason: leg.NoAnswer, By: leg.ByBot, Detail: "no Jami device answered in time"}
	case ctx.Err() != nil:
		return leg.End{Reason: leg.Hangup, By: leg.ByBot, Detail: "the call was given up"}
	case err == nil:
		return leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: "no device"}
	}
	return leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: err.Error()}
}

// pickError is the error a call to several devices ends with: a device's
// own answer (busy, declined) over a failure to reach another.
func pickError(errs []error) error {
	var best error
	for _, err := range errs {
		var st *sip.StatusError
		if errors.As(err, &st) {
			if st.Code == 603 || st.Code == 486 || best == nil {
				best = err
			}
			continue
		}
		if best == nil {
			best = err
		}
	}
	if best == nil {
		return errors.New("no Jami device answered")
	}
	return best
}

func parseAccount(s string) (dht.InfoHash, error) { return dht.ParseHash(s) }

// hasVideo says whether an SDP offer has a video section with a port.
func hasVideo(offer []byte) bool {
	for _, line := range bytes.Split(offer, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if bytes.HasPrefix(line, []byte("m=video ")) && !bytes.HasPrefix(line, []byte("m=video 0 ")) {
			return true
		}
	}
	return false
}
