//go:build linux

package dhtnode

import (
	"crypto/sha1"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
)

// What dhtnode 2.4.12 prints (tools/dhtnode.cpp, tools/tools_common.h,
// src/value.cpp), after the prompt is removed:
//
//	Bootstrap: <host:port>                                   (-b, at start)
//	OpenDHT node <40 hex> running on port <p>                (at start and in ll)
//	OpenDHT node <40 hex> running on IPv4 port <p>, IPv6 port <p6>
//	Public key ID <40 hex>                                   (with an identity)
//	 (type 'h' or 'help' for a list of possible commands)    (end of the start banner)
//	Get: found <n> value(s) after <duration> (total <t>)     (then n value lines)
//	Get: completed|failure, took <duration> (total <t>)
//	Listen: found <n> values[ expired] (total <t>)           (then n value lines)
//	Listening, token: <token>
//	Put: success|failure, took <duration>. Value ID: <hex>   (p and pp)
//	Put signed: success|failure (took <duration>s)
//	Put encrypted: success|failure (took <duration>          (sic: no closing parenthesis)
//	An identity is required to perform this operation (run with -i)
//	Unknown command: <op>
//	<n> ongoing operations / Storage has <n> values, using <k> KB /
//	IPv4 stats: / Known nodes: <g> good, <d> dubious, <i> incoming. /
//	<s> searches, <c> total cached nodes / IPv6 stats: / … / empty line   (ll)
//
// A value line is a tab and the value (Value's operator<<):
//
//	Value[id:<hex> [encrypted |signed (v<seq>) [decrypted ]]<body>]
//
// with body data:<hex>, data(<user type>):<hex>, data(text/plain):"<text>",
// data…:<n> bytes (1024 bytes or more, not text), Certificate, or an
// IpServiceAnnouncement; an encrypted value has no body. "b" and "cl" print
// nothing. Errors of the command syntax go to stderr.

// prompt is readline's prompt (PROMPT in tools_common.h). With echo off it
// is printed, in one piece, whenever dhtnode waits for a command, so it can
// land anywhere in the output: every occurrence is removed.
const prompt = ">> "

var (
	reBanner   = regexp.MustCompile(`^OpenDHT node ([0-9a-f]{40}) running on (?:port (\d+)|IPv4 port (\d+), IPv6 port (\d+))$`)
	rePKID     = regexp.MustCompile(`^Public key ID ([0-9a-f]{40})$`)
	reGetFound = regexp.MustCompile(`^Get: found (\d+) value\(s\) after .* \(total \d+\)$`)
	reGetDone  = regexp.MustCompile(`^Get: (completed|failure), took `)
	reListen   = regexp.MustCompile(`^Listen: found (\d+) values( expired)? \(total -?\d+\)$`)
	reToken    = regexp.MustCompile(`^Listening, token: (\d+)$`)
	rePut      = regexp.MustCompile(`^Put: (success|failure), took .*\. Value ID: ([0-9a-f]+)$`)
	rePutSig   = regexp.MustCompile(`^Put signed: (success|failure) `)
	rePutEnc   = regexp.MustCompile(`^Put encrypted: (success|failure) `)
	reOngoing  = regexp.MustCompile(`^(\d+) ongoing operations$`)
	reStorage  = regexp.MustCompile(`^Storage has (\d+) values, using (\d+) KB$`)
	reKnown    = regexp.MustCompile(`^Known nodes: (\d+) good, (\d+) dubious, (\d+) incoming\.$`)
	reSearches = regexp.MustCompile(`^(\d+) searches, (\d+) total cached nodes$`)
)

const (
	bannerEnd   = " (type 'h' or 'help' for a list of possible commands)"
	needsID     = "An identity is required to perform this operation"
	unknownCmd  = "Unknown command: "
	valuePrefix = "Value[id:"
)

// KeyHash is the 40-hex-digit info hash dhtnode uses for key: key itself
// (in lower case) when it is 40 hex digits, else SHA-1(key) like OpenDHT's
// InfoHash::get (python: opendht.InfoHash.get(key)). Node's methods send
// this hash, never key.
func KeyHash(key string) string {
	if len(key) == 40 {
		if _, err := hex.DecodeString(key); err == nil {
			return strings.ToLower(key)
		}
	}
	sum := sha1.Sum([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Value is one value as dhtnode printed it.
type Value struct {
	// Printed is the value as dhtnode printed it, without the leading tab:
	// Value[id:… …].
	Printed string
	// ID is the value id.
	ID uint64
	// Encrypted: the value is encrypted and this node did not decrypt it.
	// dhtnode (a SecureDht) drops such values instead of printing them,
	// unless it runs as a proxy server: a get of a value encrypted for
	// another node finds nothing.
	Encrypted bool
	// Signed: the value carries an owner and a signature (putSigned, or
	// an encrypted value once decrypted); Seq is its sequence number.
	Signed bool
	Seq    int
	// Decrypted: the value was encrypted for this node, which decrypted it.
	Decrypted bool
	// Body is what follows the flags: data(text/plain):"x", data:<hex>,
	// Certificate, …; empty for an encrypted value.
	Body string
	// UserType is the value's user type (text/plain for the REPL's puts).
	UserType string
	// Data is the value's data when dhtnode printed it in full (text or
	// hex); nil otherwise (encrypted, certificates, 1024 bytes or more).
	Data []byte
	// Size is the size dhtnode printed instead of the data ("<n> bytes"),
	// else len(Data).
	Size int
	// Expired is set on values a Listen reported as expired or removed.
	Expired bool
}

// Text is the value's data as a string.
func (v Value) Text() string { return string(v.Data) }

// parseValue parses a value line without its tab. It reports false if the
// line is not a value.
func parseValue(s string) (Value, bool) {
	v := Value{Printed: s}
	if !strings.HasPrefix(s, valuePrefix) || !strings.HasSuffix(s, "]") {
		return v, false
	}
	rest := s[len(valuePrefix) : len(s)-1]
	idHex, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return v, false
	}
	id, err := strconv.ParseUint(idHex, 16, 64)
	if err != nil {
		return v, false
	}
	v.ID = id
	switch {
	case strings.HasPrefix(rest, "encrypted "):
		v.Encrypted = true
		rest = strings.TrimPrefix(rest, "encrypted ")
	case strings.HasPrefix(rest, "signed (v"):
		seq, after, ok := strings.Cut(strings.TrimPrefix(rest, "signed (v"), ") ")
		if !ok {
			return v, false
		}
		if v.Seq, err = strconv.Atoi(seq); err != nil {
			return v, false
		}
		v.Signed = true
		rest = after
		if strings.HasPrefix(rest, "decrypted ") {
			v.Decrypted = true
			rest = strings.TrimPrefix(rest, "decrypted ")
		}
	}
	v.Body = rest
	var payload string
	switch {
	case strings.HasPrefix(rest, "data:"):
		payload = strings.TrimPrefix(rest, "data:")
	case strings.HasPrefix(rest, "data("):
		utype, after, ok := strings.Cut(strings.TrimPrefix(rest, "data("), "):")
		if !ok {
			return v, true
		}
		v.UserType, payload = utype, after
	default:
		return v, true
	}
	if v.UserType == "text/plain" && len(payload) >= 2 && payload[0] == '"' && payload[len(payload)-1] == '"' {
		v.Data = []byte(payload[1 : len(payload)-1])
		v.Size = len(v.Data)
		return v, true
	}
	if n, ok := strings.CutSuffix(payload, " bytes"); ok {
		if size, err := strconv.Atoi(n); err == nil {
			v.Size = size
			return v, true
		}
	}
	if data, err := hex.DecodeString(payload); err == nil {
		v.Data = data
		v.Size = len(data)
	}
	return v, true
}

// FamilyStats are one address family's lines of dhtnode's ll.
type FamilyStats struct {
	Good, Dubious, Incoming int // known nodes
	Searches, CachedNodes   int
}

// Stats is what dhtnode's ll prints.
type Stats struct {
	OngoingOps   int
	StoredValues int
	StoredKB     int
	IPv4, IPv6   FamilyStats
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
