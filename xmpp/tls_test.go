package xmpp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/roster"
	"mellium.im/xmpp/stanza"

	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// tlsServer is an XMPP server of mellium's own server side (the test bed's
// Prosody has no TLS): STARTTLS required, SASL PLAIN only (so a login
// proves PLAIN inside TLS), bind; it answers roster gets and pings, pings
// the client once, and sends it a signal.
type tlsServer struct {
	addr     string
	roots    *x509.CertPool
	password string
	authn    atomic.Int32 // credentials checked
	pinged   chan error   // the server's ping of the client, answered or not
	ln       net.Listener
	wg       sync.WaitGroup
	ctx      context.Context
}

func startTLSServer(t *testing.T, password string) *tlsServer {
	cert, roots := selfSigned(t, "localhost")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := &tlsServer{addr: ln.Addr().String(), roots: roots, password: password, pinged: make(chan error, 8), ln: ln, ctx: ctx}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c, cfg)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *tlsServer) serve(c net.Conn, cfg *tls.Config) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { _ = c.Close() })
	defer stop()
	perm := func(n *sasl.Negotiator) bool {
		s.authn.Add(1)
		user, pass, _ := n.Credentials()
		return string(user) == "1001-77" && string(pass) == s.password
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	sess, err := xmpp.ReceiveSession(ctx, c, 0, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
		return xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.StartTLS(cfg), xmpp.SASLServer(perm, sasl.Plain), xmpp.BindResource()}}
	}))
	if err != nil {
		return
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = sess.Serve(mux.New(stanza.NSClient, ping.Handle(),
			mux.IQFunc(stanza.GetIQ, xml.Name{Space: roster.NS, Local: "query"}, func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
				_, err := xmlstream.Copy(t, iq.Result(xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: roster.NS, Local: "query"}})))
				return err
			}),
			// The initial presence: the client is available; ping it and
			// send it a signal.
			mux.PresenceFunc("", xml.Name{}, func(p stanza.Presence, _ xmlstream.TokenReadEncoder) error {
				client := sess.RemoteAddr()
				go func() {
					pctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
					defer cancel()
					s.pinged <- ping.Send(pctx, sess, client)
					payload, err := qbsignal.EncodeTokens(everySignal())
					if err == nil {
						msg := stanza.Message{To: client, From: jid.MustParse("1002-77@localhost/sdk"), Type: stanza.HeadlineMessage, ID: qbsignal.NewMessageID()}
						_ = sess.Send(pctx, msg.Wrap(payload))
					}
				}()
				return nil
			}),
		))
	}()
	select {
	case <-served:
	case <-s.ctx.Done():
	}
	_ = c.Close()
	<-served
}

// selfSigned is a certificate for name and the pool that trusts it.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// STARTTLS, then PLAIN inside it; the server's ping is answered and its
// signal arrives.
func TestStartTLSLogin(t *testing.T) {
	checkLeaks(t)
	srv := startTLSServer(t, "s3cret")
	ctx := testCtx(t, time.Minute)
	r := newRecorder()
	c := newClient(t, Config{
		JID: "1001-77@localhost", Password: "s3cret", Server: srv.addr, Resource: "bot",
		TLS: &tls.Config{RootCAs: srv.roots, MinVersion: tls.VersionTLS12}, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	}, r)
	run(t, ctx, c)
	r.waitState(t, true, 10*time.Second)
	// mellium's server binds a resource of its own, not the one asked.
	require.Equal(t, "1001-77@localhost", c.JID().Bare().String())
	require.NotEmpty(t, c.JID().Resourcepart())
	select {
	case err := <-srv.pinged:
		require.NoError(t, err, "the client answers the server's ping")
	case <-time.After(10 * time.Second):
		require.Fail(t, "the server did not ping")
	}
	m := r.waitMessage(t, 10*time.Second)
	require.NoError(t, m.Err)
	require.Equal(t, everySignal(), m.Signal)
	require.Equal(t, "1002-77@localhost/sdk", m.From.String())
	require.Equal(t, int32(1), srv.authn.Load())
}

// A certificate the client does not trust ends the try before any
// credential is sent.
func TestStartTLSUntrusted(t *testing.T) {
	checkLeaks(t)
	srv := startTLSServer(t, "s3cret")
	ctx := testCtx(t, time.Minute)
	r := newRecorder()
	c := newClient(t, Config{JID: "1001-77@localhost", Password: "s3cret", Server: srv.addr}, r)
	_, err := c.connect(ctx)
	require.ErrorContains(t, err, "certificate")
	require.Zero(t, srv.authn.Load(), "no credentials sent")

	// Plaintext allowed does not mean a bad certificate is: the server
	// offers STARTTLS, so TLS it is.
	c = newClient(t, Config{JID: "1001-77@localhost", Password: "s3cret", Server: srv.addr, AllowPlaintext: true}, r)
	_, err = c.connect(ctx)
	require.ErrorContains(t, err, "certificate")
	require.Zero(t, srv.authn.Load())
}
