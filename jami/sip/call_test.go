package sip

import (
	"context"
	"errors"
	"testing"
)

// call makes A call B, B ring and answer; both dialogs are returned.
func call(t *testing.T, a, b *peer) (da, db *Dialog) {
	t.Helper()
	codes := make(chan int, 4)
	type result struct {
		d      *Dialog
		answer []byte
		err    error
	}
	res := make(chan result, 1)
	go func() {
		d, ans, err := a.Invite(ctxTimeout(t), []byte(offerSDP), func(code int) { codes <- code })
		res <- result{d, ans, err}
	}()
	ic := recv(t, b.invites, "B's incoming call")
	if ic.From != a.cfg.LocalAccount || string(ic.Offer) != offerSDP || ic.To != b.cfg.LocalAccount {
		t.Fatalf("incoming call from %q to %q, offer %q", ic.From, ic.To, ic.Offer)
	}
	if v := ic.Version; v != (Version{11, 0, 2, 0}) {
		t.Fatalf("peer version %v from %q", v, ic.UserAgent)
	}
	if c := recv(t, codes, "100 Trying"); c != 100 {
		t.Fatalf("first provisional %d", c)
	}
	if err := ic.Ringing(); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, codes, "180 Ringing"); c != 180 {
		t.Fatalf("second provisional %d", c)
	}
	db, err := ic.Answer(ctxTimeout(t), []byte(answerSDP))
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	r := recv(t, res, "A's Invite")
	if r.err != nil {
		t.Fatalf("invite: %v", r.err)
	}
	if string(r.answer) != answerSDP {
		t.Fatalf("answer %q", r.answer)
	}
	if r.d.PeerVersion() != (Version{11, 0, 2, 0}) {
		t.Fatalf("A sees B's version %v", r.d.PeerVersion())
	}
	return r.d, db
}

func TestCallByeFromCaller(t *testing.T) {
	a, b := pair(t)
	da, db := call(t, a, b)
	byes := make(chan struct{}, 1)
	db.SetHandler(Handler{OnBye: func() { byes <- struct{}{} }})
	if err := da.Bye(ctxTimeout(t)); err != nil {
		t.Fatalf("bye: %v", err)
	}
	recv(t, byes, "B's OnBye")
	closed(t, db.Done(), "B's dialog end")
	closed(t, da.Done(), "A's dialog end")
	if e := db.End(); !e.ByPeer || e.Code != 200 {
		t.Fatalf("B's end %+v", e)
	}
	if e := da.End(); e.ByPeer || e.Code != 200 {
		t.Fatalf("A's end %+v", e)
	}
	// Ending the dialog leaves the connection up (jamid 13.7.0 crashed
	// when it closed right after a BYE).
	select {
	case <-a.Done():
		t.Fatal("A's Conn closed with its dialog")
	default:
	}
	if err := da.Bye(ctxTimeout(t)); !errors.Is(err, ErrDialogEnded) {
		t.Fatalf("second bye: %v", err)
	}
	// And the Conn takes another call.
	da2, db2 := call(t, a, b)
	if da2.CallID() == da.CallID() {
		t.Fatal("same Call-ID twice")
	}
	_ = db2.Bye(ctxTimeout(t))
	closed(t, da2.Done(), "second call's end")
}

func TestCallByeFromCallee(t *testing.T) {
	a, b := pair(t)
	db, da := call(t, b, a) // the other way: B calls A, A hangs up
	if err := da.Bye(ctxTimeout(t)); err != nil {
		t.Fatalf("bye: %v", err)
	}
	closed(t, db.Done(), "B's dialog end")
	if e := db.End(); !e.ByPeer {
		t.Fatalf("B's end %+v", e)
	}

	da, db = call(t, a, b)
	if err := db.Bye(ctxTimeout(t)); err != nil {
		t.Fatalf("bye: %v", err)
	}
	closed(t, da.Done(), "A's dialog end")
	if e := da.End(); !e.ByPeer {
		t.Fatalf("A's end %+v", e)
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	a, b := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ringing := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		_, _, err := a.Invite(ctx, []byte(offerSDP), func(code int) {
			if code == 180 {
				ringing <- struct{}{}
			}
		})
		errc <- err
	}()
	ic := recv(t, b.invites, "B's incoming call")
	if err := ic.Ringing(); err != nil {
		t.Fatal(err)
	}
	recv(t, ringing, "180 at A")
	cancel()
	if err := recv(t, errc, "A's Invite"); !errors.Is(err, context.Canceled) {
		t.Fatalf("invite after cancel: %v", err)
	}
	closed(t, ic.Canceled(), "B's cancelled call")
	if !errors.Is(ic.Err(), ErrCanceled) {
		t.Fatalf("B's call error %v", ic.Err())
	}
	if _, err := ic.Answer(ctxTimeout(t), []byte(answerSDP)); err == nil {
		t.Fatal("answered a cancelled call")
	}
}

func TestReject(t *testing.T) {
	for _, code := range []int{486, 603} {
		a, b := pair(t)
		errc := make(chan error, 1)
		go func() {
			_, _, err := a.Invite(ctxTimeout(t), []byte(offerSDP), nil)
			errc <- err
		}()
		ic := recv(t, b.invites, "B's incoming call")
		if err := ic.Reject(code, "No"); err != nil {
			t.Fatal(err)
		}
		var se *StatusError
		if err := recv(t, errc, "A's Invite"); !errors.As(err, &se) || se.Code != code {
			t.Fatalf("invite rejected with %d: %v", code, err)
		}
	}
}

func TestReInviteHold(t *testing.T) {
	a, b := pair(t)
	da, db := call(t, a, b)
	const hold = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 111\r\na=sendonly\r\n"
	const held = "v=0\r\no=- 2 3 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/SAVP 111\r\na=recvonly\r\n"
	offers := make(chan string, 2)
	db.SetHandler(Handler{OnReInvite: func(offer []byte) ([]byte, error) {
		offers <- string(offer)
		return []byte(held), nil
	}})
	answer, err := da.ReInvite(ctxTimeout(t), []byte(hold))
	if err != nil || string(answer) != held {
		t.Fatalf("re-INVITE: %q, %v", answer, err)
	}
	if o := recv(t, offers, "B's re-INVITE"); o != hold {
		t.Fatalf("B got %q", o)
	}
	// The other way, refused: 488, the call goes on.
	da.SetHandler(Handler{OnReInvite: func([]byte) ([]byte, error) { return nil, errors.New("no") }})
	var se *StatusError
	if _, err := db.ReInvite(ctxTimeout(t), []byte(hold)); !errors.As(err, &se) || se.Code != 488 {
		t.Fatalf("refused re-INVITE: %v", err)
	}
	if _, err := da.ReInvite(ctxTimeout(t), []byte(hold)); err != nil {
		t.Fatalf("re-INVITE after a refused one: %v", err)
	}
}

func TestInfoKeyframeBothWays(t *testing.T) {
	a, b := pair(t)
	da, db := call(t, a, b)
	infos := make(chan MediaControl, 2)
	h := Handler{OnInfo: func(ct string, body []byte) {
		mc, ok := ParseMediaControl(body)
		if ct != ContentTypeMediaControl || !ok {
			t.Errorf("INFO %q %q", ct, body)
		}
		infos <- mc
	}}
	da.SetHandler(h)
	db.SetHandler(h)
	if err := da.Info(ctxTimeout(t), ContentTypeMediaControl, KeyframeRequest(1)); err != nil {
		t.Fatal(err)
	}
	if mc := recv(t, infos, "B's INFO"); !mc.KeyframeRequest || mc.StreamID != 1 {
		t.Fatalf("B got %+v", mc)
	}
	if err := db.Info(ctxTimeout(t), ContentTypeMediaControl, KeyframeRequest(-1)); err != nil {
		t.Fatal(err)
	}
	if mc := recv(t, infos, "A's INFO"); !mc.KeyframeRequest || mc.StreamID != -1 {
		t.Fatalf("A got %+v", mc)
	}
}

func TestMessageText(t *testing.T) {
	a, b := pair(t)
	da, db := call(t, a, b)
	texts := make(chan string, 1)
	// Set after the MESSAGE came: it is held until then.
	if err := da.Message(ctxTimeout(t), "text/plain", []byte("salut ☺")); err != nil {
		t.Fatal(err)
	}
	db.SetHandler(Handler{OnMessage: func(ct string, body []byte) { texts <- ct + "|" + string(body) }})
	if m := recv(t, texts, "B's MESSAGE"); m != "text/plain|salut ☺" {
		t.Fatalf("B got %q", m)
	}
}
