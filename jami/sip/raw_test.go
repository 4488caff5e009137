package sip

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

func invites(t *testing.T) (Config, chan *IncomingCall) {
	ch := make(chan *IncomingCall, 4)
	return Config{OnInvite: func(ic *IncomingCall) { ch <- ic }}, ch
}

// TestJamidInviteByteByByte feeds jamid's INVITE one byte per write.
func TestJamidInviteByteByByte(t *testing.T) {
	cfg, ch := invites(t)
	_, r := newRaw(t, cfg)
	msg := jamidInvite("call-1", "z9hG4bKPj1")
	for i := range len(msg) {
		r.write(t, msg[i:i+1])
	}
	ic := recv(t, ch, "the INVITE")
	if ic.From != accountA || ic.Version != (Version{13, 7, 0, 0}) || string(ic.Offer) != offerSDP {
		t.Fatalf("call from %q, version %v, offer %q", ic.From, ic.Version, ic.Offer)
	}
	trying := r.response(t, 100)
	if v := trying.Via(); v.Transport != "TLS" || v.Params.GetOr("branch", "") != "z9hG4bKPj1" {
		t.Fatalf("100's Via %s", v)
	}
	if err := ic.Ringing(); err != nil {
		t.Fatal(err)
	}
	ringing := r.response(t, 180)
	tag := tagOf(ringing.To().Params)
	if tag == "" || ringing.Contact() == nil || ringing.Contact().Address.User != deviceB ||
		ringing.Contact().Address.Scheme != "sips" {
		t.Fatalf("180 without To tag or our Contact: %s", ringing)
	}
	// jamid's CANCEL: 200 to it, then 487 to the INVITE, same To tag.
	r.write(t, sipMsg("",
		"CANCEL sips:10.0.0.2:41000;transport=tls SIP/2.0",
		"Via: SIP/2.0/TLS 10.0.0.1:37457;rport;branch=z9hG4bKPj1;alias",
		"Max-Forwards: 70",
		"From: <sip:"+accountA+"@ring.dht>;tag=jamidtag1",
		"To: <sips:"+accountB+"@10.0.0.2:41000;transport=tls>",
		"Call-ID: call-1",
		"CSeq: 2407 CANCEL"))
	if res := r.response(t, 200); res.CSeq().MethodName != gosip.CANCEL {
		t.Fatalf("200 to %s", res.CSeq())
	}
	if res := r.response(t, 487); res.CSeq().MethodName != gosip.INVITE || tagOf(res.To().Params) != tag {
		t.Fatalf("487: %s", res)
	}
	closed(t, ic.Canceled(), "Canceled")
}

// TestTwoMessagesInOneWrite: two OPTIONS in one frame, then one split in
// the middle of its Content-Length line and of its body.
func TestTwoMessagesInOneWrite(t *testing.T) {
	_, r := newRaw(t, Config{})
	opt := func(n string) string {
		return sipMsg("x",
			"OPTIONS sips:10.0.0.2;transport=tls SIP/2.0",
			"Via: SIP/2.0/TLS 10.0.0.1:1;branch=z9hG4bK"+n,
			"From: <sip:"+accountA+"@ring.dht>;tag=t"+n,
			"To: <sips:"+accountB+"@10.0.0.2>",
			"Call-ID: opt-"+n,
			"CSeq: 1 OPTIONS")
	}
	r.write(t, opt("1")+opt("2"))
	for _, n := range []string{"1", "2"} {
		res := r.response(t, 200)
		if res.CallID().Value() != "opt-"+n || !strings.Contains(res.GetHeader("Allow").Value(), "MESSAGE") {
			t.Fatalf("200 for %s: %s", n, res)
		}
	}
	m := opt("3")
	i := strings.Index(m, "Content-Length") + 10
	r.write(t, m[:i])
	r.write(t, m[i:len(m)-1]+"\r\n") // keepalive CRLFs may follow a message
	r.write(t, m[len(m)-1:])
	if res := r.response(t, 200); res.CallID().Value() != "opt-3" {
		t.Fatalf("split OPTIONS: %s", res)
	}
}

func TestMalformedInputDropped(t *testing.T) {
	_, r := newRaw(t, Config{})
	r.write(t, "GARBAGE\r\n\r\n")
	r.write(t, "INVITE sip:x SIP/2.0\r\nVia: nonsense\r\nContent-Length: 0\r\n\r\n")
	r.write(t, "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n") // no Via etc.: dropped
	// The next well-formed message is still read.
	r.write(t, sipMsg("",
		"OPTIONS sips:10.0.0.2;transport=tls SIP/2.0",
		"Via: SIP/2.0/TLS 10.0.0.1:1;branch=z9hG4bKok",
		"From: <sip:"+accountA+"@ring.dht>;tag=t",
		"To: <sips:"+accountB+"@10.0.0.2>",
		"Call-ID: after-garbage",
		"CSeq: 1 OPTIONS"))
	if res := r.response(t, 200); res.CallID().Value() != "after-garbage" {
		t.Fatalf("got %s", res)
	}
}

// answered takes jamid's INVITE to an established dialog (200, ACK).
func answered(t *testing.T, r *raw, ch chan *IncomingCall) (*Dialog, string) {
	t.Helper()
	r.write(t, jamidInvite("call-2", "z9hG4bKPj2"))
	ic := recv(t, ch, "the INVITE")
	r.response(t, 100)
	dc := make(chan *Dialog, 1)
	go func() {
		d, err := ic.Answer(ctxTimeout(t), []byte(answerSDP))
		if err != nil {
			t.Errorf("answer: %v", err)
		}
		dc <- d
	}()
	ok := r.response(t, 200)
	tag := tagOf(ok.To().Params)
	if ct := ok.GetHeader("Content-Type"); ct == nil || ct.Value() != "application/sdp" || string(ok.Body()) != answerSDP {
		t.Fatalf("200 OK: %s", ok)
	}
	r.write(t, sipMsg("",
		"ACK sips:"+deviceB+"@127.0.0.1;transport=tls SIP/2.0",
		"Via: SIP/2.0/TLS 10.0.0.1:37457;rport;branch=z9hG4bKPjack2;alias",
		"Max-Forwards: 70",
		"From: <sip:"+accountA+"@ring.dht>;tag=jamidtag1",
		"To: <sips:"+accountB+"@10.0.0.2:41000;transport=tls>;tag="+tag,
		"Call-ID: call-2",
		"CSeq: 2407 ACK"))
	d := recv(t, dc, "Answer")
	if d == nil {
		t.FailNow()
	}
	return d, tag
}

func inDialog(method, tag string, cseq int, extra ...string) []string {
	return append([]string{
		method + " sips:" + deviceB + "@127.0.0.1;transport=tls SIP/2.0",
		"Via: SIP/2.0/TLS 10.0.0.1:37457;rport;branch=z9hG4bKPj" + method + strconv.Itoa(cseq) + ";alias",
		"Max-Forwards: 70",
		"From: <sip:" + accountA + "@ring.dht>;tag=jamidtag1",
		"To: <sips:" + accountB + "@10.0.0.2:41000;transport=tls>;tag=" + tag,
		"Call-ID: call-2",
		"CSeq: " + strconv.Itoa(cseq) + " " + method,
	}, extra...)
}

func TestInDialogFromJamid(t *testing.T) {
	cfg, ch := invites(t)
	_, r := newRaw(t, cfg)
	d, tag := answered(t, r, ch)
	infos := make(chan string, 4)
	d.SetHandler(Handler{
		OnInfo:    func(ct string, b []byte) { infos <- ct + "|" + string(b) },
		OnMessage: func(ct string, b []byte) { infos <- "msg " + ct + "|" + string(b) },
	})

	// jamid's DTMF INFO: answered 200 here, whatever jamid does.
	r.write(t, sipMsg("Signal=5\r\nDuration=160\r\n", inDialog("INFO", tag, 2408, "Content-Type: application/dtmf-relay")...))
	r.response(t, 200)
	if got := recv(t, infos, "OnInfo"); got != "application/dtmf-relay|Signal=5\r\nDuration=160\r\n" {
		t.Fatalf("OnInfo %q", got)
	}
	r.write(t, sipMsg("hi", inDialog("MESSAGE", tag, 2409, "Content-Type: text/plain")...))
	r.response(t, 200)
	if got := recv(t, infos, "OnMessage"); got != "msg text/plain|hi" {
		t.Fatalf("OnMessage %q", got)
	}
	r.write(t, sipMsg("", inDialog("OPTIONS", tag, 2410)...))
	r.response(t, 200)
	r.write(t, sipMsg("", inDialog("REFER", tag, 2411, "Refer-To: <sip:x@y>")...))
	if res := r.response(t, 405); res.GetHeader("Allow") == nil {
		t.Fatal("405 without Allow")
	}
	r.write(t, sipMsg("", inDialog("INFO", tag, 2405)...)) // CSeq went back
	r.response(t, 500)
	r.write(t, sipMsg("", inDialog("BYE", "not-our-tag", 2412)...))
	r.response(t, 481)

	// Our INFO: jamid answers 500 "Unhandled by dialog usages" to what it
	// does not know, which is no error; no answer at all is none either.
	errc := make(chan error, 1)
	go func() {
		errc <- d.Info(ctxTimeout(t), "application/dtmf-relay", []byte("Signal=1\r\nDuration=100\r\n"))
	}()
	info := r.next(t).(*gosip.Request)
	if info.Method != gosip.INFO || info.Recipient.User != deviceA || info.Recipient.Host != "10.0.0.1" ||
		tagOf(info.From().Params) != tag || tagOf(info.To().Params) != "jamidtag1" {
		t.Fatalf("our INFO: %s", info)
	}
	res := gosip.NewResponse(500, "Unhandled by dialog usages")
	for _, h := range []gosip.Header{info.Via(), info.From(), info.To(), info.CallID(), info.CSeq()} {
		res.AppendHeader(gosip.HeaderClone(h))
	}
	res.SetBody(nil)
	r.write(t, res.String())
	if err := recv(t, errc, "Info"); err != nil {
		t.Fatalf("Info: %v", err)
	}

	// Glare: the peer's re-INVITE while ours waits is 491.
	reinv := make(chan error, 1)
	go func() { _, err := d.ReInvite(ctxTimeout(t), []byte(offerSDP)); reinv <- err }()
	ours := r.next(t).(*gosip.Request)
	if ours.Method != gosip.INVITE || ours.Contact() == nil || ours.CSeq().SeqNo <= info.CSeq().SeqNo {
		t.Fatalf("our re-INVITE: %s", ours)
	}
	r.write(t, sipMsg(offerSDP, inDialog("INVITE", tag, 2413, "Content-Type: application/sdp")...))
	r.response(t, 491)
	res = gosip.NewResponse(491, "Request Pending")
	for _, h := range []gosip.Header{ours.Via(), ours.From(), ours.To(), ours.CallID(), ours.CSeq()} {
		res.AppendHeader(gosip.HeaderClone(h))
	}
	res.SetBody(nil)
	r.write(t, res.String())
	var se *StatusError
	if err := recv(t, reinv, "ReInvite"); !errors.As(err, &se) || se.Code != 491 {
		t.Fatalf("glare: %v", err)
	}
	if ack := r.next(t).(*gosip.Request); ack.Method != gosip.ACK || branchOf(ack) != branchOf(ours) {
		t.Fatalf("ACK of the 491: %s", ack)
	}

	r.write(t, sipMsg("", inDialog("BYE", tag, 2414)...))
	r.response(t, 200)
	closed(t, d.Done(), "dialog end")
}

// TestInviteTimeout: no final answer in Timer B is a 408, and a CANCEL
// once the peer said 100.
func TestInviteTimeout(t *testing.T) {
	c, r := newRaw(t, Config{TransactionTimeout: 50 * time.Millisecond,
		LocalAccount: accountB, LocalDevice: deviceB, PeerAccount: accountA})
	errc := make(chan error, 1)
	go func() { _, _, err := c.Invite(ctxTimeout(t), []byte(offerSDP), nil); errc <- err }()
	inv := r.next(t).(*gosip.Request)
	if inv.Method != gosip.INVITE || inv.From().Address.User != accountB || inv.From().Address.Host != "ring.dht" ||
		inv.To().Address.User != accountA || inv.Recipient.Scheme != "sips" ||
		inv.GetHeader("User-Agent").Value() != DefaultUserAgent || inv.Via().Transport != "TLS" {
		t.Fatalf("our INVITE: %s", inv)
	}
	res := gosip.NewResponse(100, "Trying")
	for _, h := range []gosip.Header{inv.Via(), inv.From(), inv.To(), inv.CallID(), inv.CSeq()} {
		res.AppendHeader(gosip.HeaderClone(h))
	}
	res.SetBody(nil)
	r.write(t, res.String())
	var se *StatusError
	if err := recv(t, errc, "Invite"); !errors.As(err, &se) || se.Code != 408 {
		t.Fatalf("timeout: %v", err)
	}
	if cancel := r.next(t).(*gosip.Request); cancel.Method != gosip.CANCEL || branchOf(cancel) != branchOf(inv) {
		t.Fatalf("CANCEL: %s", cancel)
	}
}
