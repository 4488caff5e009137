// Package dht is a node of OpenDHT 2.4.12's network, in Go: the wire format
// (one msgpack map per UDP datagram), values with their canonical signed
// form, the SecureDht crypto (RSA PKCS#1 v1.5 with SHA-512 signatures, RSA +
// AES-GCM value encryption), and the node itself (routing table, searches,
// storage, listeners). It knows nothing of Matrix, media or calls: the Jami
// layer above it finds devices and exchanges call requests through it.
//
// The protocol is written down, with sources, in the project's research
// notes (jami-dht.md §1); names here follow OpenDHT's where they help.
package dht
