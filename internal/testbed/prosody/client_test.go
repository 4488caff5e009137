package prosody_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/websocket"
)

// A raw XMPP client, just enough to prove what the QuickBlox SDK relies
// on: a login (SASL, resource binding, presence) over c2s or WebSocket,
// pings, and headline messages to a bare JID.

// element is one top-level element of the stream.
type element struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e *element) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// transport carries whole elements: a TCP stream (one XML document) or
// WebSocket frames (RFC 7395: one element each).
type transport interface {
	send(s string) error
	next() (*element, error)
	// restart opens a new stream (after SASL success).
	restart(domain string) error
	close() error
}

type tcpTransport struct {
	conn net.Conn
	dec  *xml.Decoder
}

func dialTCP(ctx context.Context, addr, domain string) (*tcpTransport, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	t := &tcpTransport{conn: conn}
	if err = t.restart(domain); err != nil {
		conn.Close()
		return nil, err
	}
	return t, nil
}

func (t *tcpTransport) send(s string) error {
	_, err := io.WriteString(t.conn, s)
	return err
}

func (t *tcpTransport) restart(domain string) error {
	t.dec = xml.NewDecoder(t.conn)
	if err := t.send(fmt.Sprintf(`<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`, domain)); err != nil {
		return err
	}
	// The server's stream header.
	for {
		tok, err := t.dec.Token()
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return fmt.Errorf("expected a stream header, got <%s>", se.Name.Local)
			}
			return nil
		}
	}
}

func (t *tcpTransport) next() (*element, error) {
	for {
		tok, err := t.dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := new(element)
			if err := t.dec.DecodeElement(e, &tok); err != nil {
				return nil, err
			}
			return e, nil
		case xml.EndElement:
			return nil, errors.New("the server closed the stream")
		}
	}
}

// close ends the stream and waits until the server has closed the
// connection, so that it has no session left when the test stops it (it
// would wait for that session at shutdown).
func (t *tcpTransport) close() error {
	if t.send("</stream:stream>") == nil {
		_, _ = io.Copy(io.Discard, t.conn)
	}
	return t.conn.Close()
}

type wsTransport struct {
	ws *websocket.Conn
}

func dialWS(ctx context.Context, url, domain string) (*wsTransport, error) {
	cfg, err := websocket.NewConfig(url, "http://127.0.0.1/")
	if err != nil {
		return nil, err
	}
	cfg.Protocol = []string{"xmpp"}
	ws, err := cfg.DialContext(ctx)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = ws.SetDeadline(deadline)
	}
	t := &wsTransport{ws: ws}
	if err = t.restart(domain); err != nil {
		ws.Close()
		return nil, err
	}
	return t, nil
}

func (t *wsTransport) send(s string) error { return websocket.Message.Send(t.ws, s) }

func (t *wsTransport) restart(domain string) error {
	if err := t.send(fmt.Sprintf(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="%s" version="1.0"/>`, domain)); err != nil {
		return err
	}
	e, err := t.next()
	if err != nil {
		return err
	}
	if e.XMLName.Local != "open" {
		return fmt.Errorf("expected <open/>, got <%s>", e.XMLName.Local)
	}
	return nil
}

func (t *wsTransport) next() (*element, error) {
	var frame string
	if err := websocket.Message.Receive(t.ws, &frame); err != nil {
		return nil, err
	}
	e := new(element)
	if err := xml.Unmarshal([]byte(frame), e); err != nil {
		return nil, fmt.Errorf("frame %q: %w", frame, err)
	}
	if e.XMLName.Local == "close" {
		return nil, errors.New("the server closed the stream")
	}
	return e, nil
}

// close ends the stream as tcpTransport.close does.
func (t *wsTransport) close() error {
	if t.send(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`) == nil {
		for {
			if _, err := t.next(); err != nil {
				break
			}
		}
	}
	return t.ws.Close()
}

// session is a logged-in client.
type session struct {
	t   transport
	jid string // full JID, as bound
}

// features reads the stream features and returns the SASL mechanisms
// offered (none after authentication).
func features(t transport) ([]string, error) {
	e, err := t.next()
	if err != nil {
		return nil, err
	}
	if e.XMLName.Local != "features" {
		return nil, fmt.Errorf("expected stream features, got <%s>", e.XMLName.Local)
	}
	var f struct {
		Mechanisms []string `xml:"mechanisms>mechanism"`
	}
	if err := xml.Unmarshal([]byte("<f>"+e.Inner+"</f>"), &f); err != nil {
		return nil, err
	}
	return f.Mechanisms, nil
}

// login authenticates (SCRAM-SHA-1, or PLAIN when plain), binds a resource
// and sends initial presence.
func login(t transport, domain, node, password string, plain bool) (*session, []string, error) {
	mechs, err := features(t)
	if err != nil {
		return nil, nil, err
	}
	if plain {
		err = authPlain(t, node, password)
	} else {
		err = authSCRAM(t, node, password)
	}
	if err != nil {
		return nil, mechs, err
	}
	if err = t.restart(domain); err != nil {
		return nil, mechs, err
	}
	if _, err = features(t); err != nil {
		return nil, mechs, err
	}
	if err = t.send(`<iq type="set" id="bind1" xmlns="jabber:client"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></iq>`); err != nil {
		return nil, mechs, err
	}
	res, err := waitFor(t, func(e *element) bool { return e.XMLName.Local == "iq" && e.attr("id") == "bind1" })
	if err != nil {
		return nil, mechs, err
	}
	var bound struct {
		JID string `xml:"bind>jid"`
	}
	if err = xml.Unmarshal([]byte("<iq>"+res.Inner+"</iq>"), &bound); err != nil || bound.JID == "" {
		return nil, mechs, fmt.Errorf("binding a resource: %s (%w)", res.Inner, err)
	}
	// Without available presence, Prosody delivers nothing sent to the
	// bare JID (the SDK's signals) to this resource.
	if err = t.send(`<presence xmlns="jabber:client"/>`); err != nil {
		return nil, mechs, err
	}
	return &session{t: t, jid: bound.JID}, mechs, nil
}

// waitFor reads elements until match accepts one.
func waitFor(t transport, match func(*element) bool) (*element, error) {
	for {
		e, err := t.next()
		if err != nil {
			return nil, err
		}
		if match(e) {
			return e, nil
		}
	}
}

// saslResult reads the server's answer to an auth or response: its
// challenge or success data, or an error for a failure.
func saslResult(t transport) (kind string, data []byte, err error) {
	e, err := t.next()
	if err != nil {
		return "", nil, err
	}
	switch e.XMLName.Local {
	case "challenge", "success":
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Inner))
		return e.XMLName.Local, data, err
	case "failure":
		return "failure", nil, fmt.Errorf("SASL failure: %s", e.Inner)
	}
	return "", nil, fmt.Errorf("unexpected <%s> during SASL", e.XMLName.Local)
}

func authPlain(t transport, node, password string) error {
	msg := base64.StdEncoding.EncodeToString([]byte("\x00" + node + "\x00" + password))
	if err := t.send(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">` + msg + `</auth>`); err != nil {
		return err
	}
	kind, _, err := saslResult(t)
	if err == nil && kind != "success" {
		err = fmt.Errorf("PLAIN: got a %s", kind)
	}
	return err
}

// authSCRAM is SCRAM-SHA-1 (RFC 5802) without channel binding, as
// Strophe (the SDK's XMPP library) logs in to Prosody.
func authSCRAM(t transport, node, password string) error {
	nonce := make([]byte, 18)
	_, _ = rand.Read(nonce)
	cnonce := base64.RawStdEncoding.EncodeToString(nonce)
	first := "n=" + node + ",r=" + cnonce
	if err := t.send(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="SCRAM-SHA-1">` +
		base64.StdEncoding.EncodeToString([]byte("n,,"+first)) + `</auth>`); err != nil {
		return err
	}
	kind, challenge, err := saslResult(t)
	if err != nil {
		return err
	}
	if kind != "challenge" {
		return fmt.Errorf("SCRAM: expected a challenge, got a %s", kind)
	}
	attrs := map[string]string{}
	for part := range strings.SplitSeq(string(challenge), ",") {
		if k, v, ok := strings.Cut(part, "="); ok {
			attrs[k] = v
		}
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		return fmt.Errorf("SCRAM: the salt: %w", err)
	}
	iter, err := strconv.Atoi(attrs["i"])
	if err != nil || !strings.HasPrefix(attrs["r"], cnonce) {
		return fmt.Errorf("SCRAM: a bad challenge %q", challenge)
	}
	salted, err := pbkdf2.Key(sha1.New, password, salt, iter, sha1.Size)
	if err != nil {
		return err
	}
	mac := func(key []byte, s string) []byte {
		h := hmac.New(sha1.New, key)
		h.Write([]byte(s))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha1.Sum(clientKey)
	final := "c=biws,r=" + attrs["r"]
	authMsg := first + "," + string(challenge) + "," + final
	sig := mac(stored[:], authMsg)
	proof := make([]byte, len(clientKey))
	for i := range clientKey {
		proof[i] = clientKey[i] ^ sig[i]
	}
	final += ",p=" + base64.StdEncoding.EncodeToString(proof)
	if err = t.send(`<response xmlns="urn:ietf:params:xml:ns:xmpp-sasl">` + base64.StdEncoding.EncodeToString([]byte(final)) + `</response>`); err != nil {
		return err
	}
	kind, data, err := saslResult(t)
	if err != nil {
		return err
	}
	if kind != "success" {
		return fmt.Errorf("SCRAM: expected success, got a %s", kind)
	}
	// The server proves it knows the password too.
	want := "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, "Server Key"), authMsg))
	if !bytes.Equal(data, []byte(want)) {
		return fmt.Errorf("SCRAM: the server's signature %q is not %q", data, want)
	}
	return nil
}

// ping sends a XEP-0199 ping to the server and waits for its result, as
// the SDK does every 5 s.
func (s *session) ping(domain string) (time.Duration, error) {
	start := time.Now()
	if err := s.t.send(`<iq type="get" id="ping1" to="` + domain + `" xmlns="jabber:client"><ping xmlns="urn:xmpp:ping"/></iq>`); err != nil {
		return 0, err
	}
	e, err := waitFor(s.t, func(e *element) bool { return e.XMLName.Local == "iq" && e.attr("id") == "ping1" })
	if err != nil {
		return 0, err
	}
	if e.attr("type") != "result" {
		return 0, fmt.Errorf("ping: %s %s", e.attr("type"), e.Inner)
	}
	return time.Since(start), nil
}
