package media

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/srtp/v3"
)

// suite is an SDES crypto suite we support (RFC 4568 6.2).
type suite struct {
	name    string
	profile srtp.ProtectionProfile
}

// suites are those jamid knows, in our order of preference. jamid offers
// and answers _80 only. (Its libav SRTP would authenticate SRTCP of _32
// with a 32-bit tag where RFC 4568 and pion use 80 bits, but jamid sends
// and reads RTCP in the clear anyway: see Options.SRTCP.)
var suites = []suite{
	{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80},
	{"AES_CM_128_HMAC_SHA1_32", srtp.ProtectionProfileAes128CmHmacSha1_32},
}

func suiteByName(name string) (suite, bool) {
	for _, s := range suites {
		if s.name == name {
			return s, true
		}
	}
	return suite{}, false
}

// keyLen is the master key and salt of the AES-128 suites.
const (
	masterKeyLen  = 16
	masterSaltLen = 14
)

// sdesKey is one a=crypto line: tag, suite, master key and salt.
type sdesKey struct {
	tag   string
	suite suite
	key   [masterKeyLen + masterSaltLen]byte
}

var errCrypto = errors.New("unusable a=crypto")

// parseCrypto reads "tag suite inline:key[|lifetime][|mki:len] [params]".
// Lines with an MKI or several keys are refused (nobody in a Jami call
// uses them); a lifetime is ignored (SRTP's own limit, 2^48, is far off).
func parseCrypto(v string) (sdesKey, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return sdesKey{}, fmt.Errorf("%w: %q has too few fields", errCrypto, v)
	}
	for _, c := range f[0] {
		if c < '0' || c > '9' {
			return sdesKey{}, fmt.Errorf("%w: tag %q", errCrypto, f[0])
		}
	}
	s, ok := suiteByName(f[1])
	if !ok {
		return sdesKey{}, fmt.Errorf("%w: suite %q not supported", errCrypto, f[1])
	}
	if strings.Contains(f[2], ";") {
		return sdesKey{}, fmt.Errorf("%w: several keys", errCrypto)
	}
	method, params, ok := strings.Cut(f[2], ":")
	if !ok || method != "inline" {
		return sdesKey{}, fmt.Errorf("%w: key method %q", errCrypto, method)
	}
	parts := strings.Split(params, "|")
	for _, p := range parts[1:] {
		if strings.Contains(p, ":") {
			return sdesKey{}, fmt.Errorf("%w: MKI not supported", errCrypto)
		}
	}
	raw, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	}
	if err != nil {
		return sdesKey{}, fmt.Errorf("%w: key: %w", errCrypto, err)
	}
	k := sdesKey{tag: f[0], suite: s}
	if len(raw) != len(k.key) {
		return sdesKey{}, fmt.Errorf("%w: key and salt of %d bytes, want %d", errCrypto, len(raw), len(k.key))
	}
	copy(k.key[:], raw)
	return k, nil
}

// newKey makes a random key of a suite.
func newKey(tag string, s suite) (sdesKey, error) {
	k := sdesKey{tag: tag, suite: s}
	if _, err := rand.Read(k.key[:]); err != nil {
		return sdesKey{}, fmt.Errorf("making an SRTP key: %w", err)
	}
	return k, nil
}

// attr is the key as an a=crypto value, as jamid writes it.
func (k sdesKey) attr() string {
	return k.tag + " " + k.suite.name + " inline:" + base64.StdEncoding.EncodeToString(k.key[:])
}

// context makes an SRTP context for one direction of one stream.
func (k sdesKey) context(opts ...srtp.ContextOption) (*srtp.Context, error) {
	c, err := srtp.CreateContext(k.key[:masterKeyLen], k.key[masterKeyLen:], k.suite.profile, opts...)
	if err != nil {
		return nil, fmt.Errorf("making an SRTP context (%s): %w", k.suite.name, err)
	}
	return c, nil
}
