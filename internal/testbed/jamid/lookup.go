//go:build linux

package jamid

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Lookup is what FindAccount learnt.
type Lookup struct {
	// CallID is the probe call's id (on the calling account).
	CallID string
	// Found: jamid found a device of the account on the DHT (a device
	// announcement signed by the account, and the device's certificate)
	// and asked it for a connection.
	Found bool
	// Evidence is the log line or call state that decided.
	Evidence string
	// Elapsed is the time from placing the call to the verdict.
	Elapsed time.Duration
}

// FindAccount asks whether jamid finds account jamiID (40 hex digits) on
// the DHT, from account accountID: it places an audio call to it and waits
// for jamid's verdict, then hangs the call up. jamid 13.7.0 has no lighter
// D-Bus method for this (lookupAddress and searchUser ask the name server;
// sendTrustRequest and addContact tell the sender nothing).
//
// How placeCall goes (jamiaccount.cpp startOutgoingCall): jamid gets the
// device announcements at the account's key and, for each, the device's
// certificate (AccountManager::forEachDevice), then asks each device for
// a connection over the DHT.
//
//   - Not found: the call fails at once, as soon as the DHT get ends
//     (milliseconds on a local DHT): callStateChanged FAILURE with code 6
//     (ENXIO), then OVER, and the log line "[call:ID] no devices found".
//     There is no CONNECTING.
//   - Found: the log line "[call ID] No channeled socket with this peer.
//     Send request" (or "A channeled socket is detected with this peer."
//     when a connection to the device is open already), at about the same
//     time. CONNECTING comes only once a device has answered and a SIP
//     channel is open, then RINGING; a device that never answers makes the
//     call fail after jamid's connection timeouts (tens of seconds).
//
// FindAccount decides on the first of these; it needs jamid's log, which
// Start always captures. It returns an error only if it could not decide
// before ctx ended (or jamid failed).
func (d *Daemon) FindAccount(ctx context.Context, accountID, jamiID string) (Lookup, error) {
	sigFrom, logFrom := d.sigs.count(), d.LogLineCount()
	begin := time.Now()
	callID, err := d.PlaceAudioCall(ctx, accountID, jamiID)
	if err != nil {
		return Lookup{}, err
	}
	res := Lookup{CallID: callID}
	over := false
	notFoundLine := "[call:" + callID + "] no devices found"
	foundLines := []string{
		"[call " + callID + "] No channeled socket with this peer",
		"[call " + callID + "] A channeled socket is detected with this peer",
	}
	err = d.wait(ctx, sigFrom, logFrom, func(sigs []Signal, lines []string) (bool, error) {
		for _, l := range lines {
			if strings.Contains(l, notFoundLine) {
				res.Evidence = l
				return true, nil
			}
			for _, f := range foundLines {
				if strings.Contains(l, f) {
					res.Found, res.Evidence = true, l
					return true, nil
				}
			}
		}
		for _, s := range sigs {
			c, ok := callState(s)
			if !ok || c.AccountID != accountID || c.CallID != callID {
				continue
			}
			switch c.State {
			case CallConnecting, CallRinging, CallCurrent:
				res.Found, res.Evidence = true, "callStateChanged "+c.String()
				return true, nil
			case CallFailure, CallOver, CallHungUp, CallBusy, CallPeerBusy:
				res.Evidence = "callStateChanged " + c.String()
				over = c.State == CallOver
				return true, nil
			}
		}
		return false, nil
	})
	res.Elapsed = time.Since(begin)
	if !over {
		// The probe is over either way. A call that failed is gone
		// already, and hangUp then just reports false.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = d.HangUp(hctx, accountID, callID)
		cancel()
	}
	if err != nil {
		return res, fmt.Errorf("looking up %s from account %s: no verdict: %w", jamiID, accountID, err)
	}
	return res, nil
}
