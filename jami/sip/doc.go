// Package sip is the SIP user agent of a Jami call: the SIP messages jamid
// exchanges over the "sip" channel of a multiplexed TLS socket (jami/mux).
//
// jamid registers such a channel as a PJSIP TLS transport, so the messages
// are plain SIP text with "Via: SIP/2.0/TLS", cut by Content-Length in the
// byte stream (frames carry no message boundaries). The transport is
// reliable: nothing is retransmitted, but a transaction with no final
// answer still ends after Timer B/F (64*T1 = 32 s).
//
// Only sipgo's message layer is used (its types and its stream parser);
// the transaction and dialog layer here is the small part of RFC 3261 a
// two-party call over one stream needs: INVITE/CANCEL/ACK/BYE, re-INVITE,
// INFO, MESSAGE and OPTIONS.
package sip

// What jamid (13.7.0, and HEAD where noted) does that shapes this package:
//
//   - Its INVITE: Request-URI sips:IP:PORT;transport=tls, From
//     <sip:ACCOUNT@ring.dht>;tag=..., To <sips:PEERACCOUNT@IP:PORT;transport=tls>,
//     Contact "" <sips:DEVICE@IP:PORT;transport=tls>, where IP:PORT are
//     the connection's addresses. It takes an INVITE only when the From
//     user is the account that issued the connection's certificate.
//   - It resolves a peer's Contact before using the dialog's fixed
//     transport: ours must be an IP literal of the right family
//     (Config.ContactHost).
//   - Its channel reader keeps the wrong bytes when a frame holds a
//     message and the start of another (a memmove of the wrong length in
//     ChanneledSIPTransport, still at HEAD): one message per Write, and at
//     most 8000 bytes (PJSIP_MAX_PKT_LEN).
//   - In-dialog requests its code does not answer (an INFO body it does
//     not know, every in-dialog MESSAGE) get pjsip's
//     "500 Unhandled by dialog usages".
//   - It sends in-call MESSAGEs only to a peer whose Allow lists MESSAGE.
