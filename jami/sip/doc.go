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
