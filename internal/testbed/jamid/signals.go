//go:build linux

package jamid

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// Signal is a D-Bus signal jamid (or the bus, for NameOwnerChanged) emitted.
type Signal struct {
	Time   time.Time
	Sender string
	Path   dbus.ObjectPath
	// Name is interface.member, e.g. cx.ring.Ring.CallManager.callStateChanged.
	Name string
	Body []any
}

// Member is the signal's name without its interface, e.g. callStateChanged.
func (s Signal) Member() string { return s.Name[strings.LastIndexByte(s.Name, '.')+1:] }

// Interface is the signal's interface, e.g. cx.ring.Ring.CallManager.
func (s Signal) Interface() string {
	if i := strings.LastIndexByte(s.Name, '.'); i >= 0 {
		return s.Name[:i]
	}
	return ""
}

// str is the body's i-th value if it is a string, else "".
func (s Signal) str(i int) string {
	if i < len(s.Body) {
		if v, ok := s.Body[i].(string); ok {
			return v
		}
	}
	return ""
}

func (s Signal) int32(i int) int32 {
	if i < len(s.Body) {
		if v, ok := s.Body[i].(int32); ok {
			return v
		}
	}
	return 0
}

func (s Signal) strMap(i int) map[string]string {
	if i < len(s.Body) {
		if v, ok := s.Body[i].(map[string]string); ok {
			return v
		}
	}
	return nil
}

// signalLog is the connection's signal handler: it keeps every signal, in
// the order the bus delivered them (godbus calls DeliverSignal from its
// reading goroutine, one signal at a time).
type signalLog struct {
	mu         sync.Mutex
	list       []Signal
	changed    chan struct{} // closed (and replaced) at every new signal
	terminated bool
}

func newSignalLog() *signalLog { return &signalLog{changed: make(chan struct{})} }

// DeliverSignal implements dbus.SignalHandler.
func (l *signalLog) DeliverSignal(iface, name string, sig *dbus.Signal) {
	s := Signal{Time: time.Now(), Sender: sig.Sender, Path: sig.Path, Name: sig.Name, Body: sig.Body}
	if s.Name == "" {
		s.Name = iface + "." + name
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.terminated {
		// Close ran (Stop) while godbus still had signals to deliver.
		return
	}
	l.list = append(l.list, s)
	close(l.changed)
	l.changed = make(chan struct{})
}

// Terminate implements dbus.Terminator: the connection has ended.
func (l *signalLog) Terminate() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.terminated {
		l.terminated = true
		close(l.changed)
	}
}

// after returns the signals from index i on, and a channel closed at the
// next signal (nil once the connection has ended: no more will come).
func (l *signalLog) after(i int) ([]Signal, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Signal
	if i < len(l.list) {
		out = append(out, l.list[i:]...)
	}
	if l.terminated {
		return out, nil
	}
	return out, l.changed
}

func (l *signalLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.list)
}

// Signals is every signal received since Start, oldest first.
func (d *Daemon) Signals() []Signal {
	s, _ := d.sigs.after(0)
	return s
}

// SignalCount is the number of signals received so far: a cursor for
// WaitSignal.
func (d *Daemon) SignalCount() int { return d.sigs.count() }

// WaitSignal returns the first signal from index since on (see
// SignalCount) that match accepts, waiting for it until ctx ends, jamid
// exits or the daemon is stopped.
func (d *Daemon) WaitSignal(ctx context.Context, since int, match func(Signal) bool) (Signal, error) {
	var found Signal
	err := d.wait(ctx, since, -1, func(sigs []Signal, _ []string) (bool, error) {
		for _, s := range sigs {
			if match(s) {
				found = s
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}

// wait feeds check with the signals from index sigFrom on and the log
// lines from index logFrom on (none if logFrom < 0), first those already
// there, then each batch as it comes, until check returns true or an
// error. It fails when ctx ends, when the daemon is stopped, and when jamid
// exits (after a last look at what came before).
func (d *Daemon) wait(ctx context.Context, sigFrom, logFrom int, check func([]Signal, []string) (bool, error)) error {
	p, procChanged := d.currentAndChanged()
	first, exited := true, false
	for {
		sigs, sigCh := d.sigs.after(sigFrom)
		sigFrom += len(sigs)
		var lines []string
		var logCh <-chan struct{}
		if logFrom >= 0 {
			lines, logCh = d.log.after(logFrom)
			logFrom += len(lines)
		}
		if first || len(sigs) > 0 || len(lines) > 0 {
			first = false
			if done, err := check(sigs, lines); done || err != nil {
				return err
			}
		}
		if exited {
			return fmt.Errorf("%w (%w)", ErrExited, exitError(p.ExitErr()))
		}
		exitedCh := p.Exited()
		if p.Stopping() { // Restart or Stop: wait for the next jamid
			exitedCh = nil
		}
		select {
		case <-sigCh:
		case <-logCh:
		case <-procChanged: // Restart started a new jamid
			p, procChanged = d.currentAndChanged()
		case <-exitedCh:
			exited = true
		case <-d.stopped:
			return ErrStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Registration states (Account.registrationStatus, registrationStateChanged).
const (
	StateRegistered   = "REGISTERED"
	StateUnregistered = "UNREGISTERED"
	StateTrying       = "TRYING"
	StateInitializing = "INITIALIZING"
)

// Call states (callStateChanged), from jami/call_const.h.
const (
	CallIncoming   = "INCOMING"
	CallConnecting = "CONNECTING"
	CallRinging    = "RINGING"
	CallCurrent    = "CURRENT"
	CallHungUp     = "HUNGUP"
	CallBusy       = "BUSY"
	CallPeerBusy   = "PEER_BUSY"
	CallFailure    = "FAILURE"
	CallHold       = "HOLD"
	CallUnhold     = "UNHOLD"
	CallInactive   = "INACTIVE"
	CallOver       = "OVER"
)

// CallState is a callStateChanged signal.
type CallState struct {
	Time      time.Time
	AccountID string
	CallID    string
	State     string
	// Code is an errno value for FAILURE (6, ENXIO: no device of the
	// account was found), else usually 0.
	Code int32
}

func (c CallState) String() string {
	if c.Code != 0 {
		return fmt.Sprintf("%s(%d)", c.State, c.Code)
	}
	return c.State
}

func callState(s Signal) (CallState, bool) {
	if s.Name != CallManager+".callStateChanged" {
		return CallState{}, false
	}
	return CallState{Time: s.Time, AccountID: s.str(0), CallID: s.str(1), State: s.str(2), Code: s.int32(3)}, true
}

// CallStates are the states call callID of account went through so far.
func (d *Daemon) CallStates(accountID, callID string) []CallState {
	var out []CallState
	for _, s := range d.Signals() {
		if c, ok := callState(s); ok && c.AccountID == accountID && c.CallID == callID {
			out = append(out, c)
		}
	}
	return out
}

// WaitCallState waits until call callID of account accountID reaches one
// of states, and returns that change. It looks at every state change since
// Start, so it does not matter whether the state came before the wait. It
// fails if the call is OVER without having reached any of states (unless
// OVER is one of them), with the states it went through.
func (d *Daemon) WaitCallState(ctx context.Context, accountID, callID string, states ...string) (CallState, error) {
	var seen []string
	var found CallState
	over := false
	err := d.wait(ctx, 0, -1, func(sigs []Signal, _ []string) (bool, error) {
		for _, s := range sigs {
			c, ok := callState(s)
			if !ok || c.AccountID != accountID || c.CallID != callID {
				continue
			}
			seen = append(seen, c.String())
			for _, want := range states {
				if c.State == want {
					found = c
					return true, nil
				}
			}
			if c.State == CallOver {
				over = true
				return true, nil
			}
		}
		return false, nil
	})
	switch {
	case err != nil:
		return found, fmt.Errorf("call %s of account %s: waiting for %v (states so far: %v): %w",
			callID, accountID, states, seen, err)
	case over:
		return found, fmt.Errorf("call %s of account %s ended without reaching %v (states: %v)",
			callID, accountID, states, seen)
	}
	return found, nil
}

// IncomingCall is an incomingCall or incomingCallWithMedia signal. jamid
// 13.7.0 emits only incomingCallWithMedia (manager.cpp
// processIncomingCall); both are read.
type IncomingCall struct {
	Time      time.Time
	AccountID string // the callee's account
	CallID    string // the callee's id of the call (for Accept, HangUp, …)
	// From is the caller as jamid reports it: "<40-hex account id>@ring.dht".
	From  string
	Media []map[string]string // incomingCallWithMedia's media list
}

// PeerID is the caller's 40-hex account id, from From.
func (c IncomingCall) PeerID() string { return bareID(c.From) }

// bareID strips a ring:/jami: scheme and an @host from an account URI.
func bareID(uri string) string {
	uri = strings.TrimPrefix(strings.TrimPrefix(uri, "ring:"), "jami:")
	if i := strings.IndexByte(uri, '@'); i >= 0 {
		uri = uri[:i]
	}
	return strings.ToLower(uri)
}

func incomingCall(s Signal) (IncomingCall, bool) {
	switch s.Name {
	case CallManager + ".incomingCall", CallManager + ".incomingCallWithMedia":
	default:
		return IncomingCall{}, false
	}
	c := IncomingCall{Time: s.Time, AccountID: s.str(0), CallID: s.str(1), From: s.str(2)}
	if len(s.Body) > 3 {
		c.Media, _ = s.Body[3].([]map[string]string)
	}
	return c, true
}

// WaitIncomingCall returns the first incoming call on account accountID
// from fromID (a 40-hex account id; "" for anyone) that no earlier
// WaitIncomingCall of this Daemon returned, waiting for it if there is none
// yet (it looks at every signal since Start).
func (d *Daemon) WaitIncomingCall(ctx context.Context, accountID, fromID string) (IncomingCall, error) {
	var found IncomingCall
	err := d.wait(ctx, 0, -1, func(sigs []Signal, _ []string) (bool, error) {
		for _, s := range sigs {
			c, ok := incomingCall(s)
			if !ok || c.AccountID != accountID || (fromID != "" && c.PeerID() != bareID(fromID)) {
				continue
			}
			key := c.AccountID + "/" + c.CallID
			d.mu.Lock()
			taken := d.consumed[key]
			d.consumed[key] = true
			d.mu.Unlock()
			if !taken {
				found = c
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("waiting for an incoming call on account %s from %q: %w", accountID, fromID, err)
	}
	return found, nil
}

// WaitPeerHold waits, from signal index since on (SignalCount), for jamid
// to say that the peer of call callID put it on hold (on) or resumed it:
// the peerHold signal (callId, holding), emitted when a re-INVITE's
// directions change it.
func (d *Daemon) WaitPeerHold(ctx context.Context, since int, callID string, on bool) error {
	_, err := d.WaitSignal(ctx, since, func(s Signal) bool {
		if s.Member() != "peerHold" || len(s.Body) < 2 || s.str(0) != callID {
			return false
		}
		v, ok := s.Body[len(s.Body)-1].(bool)
		return ok && v == on
	})
	if err != nil {
		return fmt.Errorf("waiting for jamid's peerHold(%s, %v): %w", callID, on, err)
	}
	return nil
}
