//go:build linux

package jamid

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/voipbot/voipbot/jami/dht"
)

// Account detail keys (jami/account_const.h) used here.
const (
	KeyType             = "Account.type"
	KeyAlias            = "Account.alias"
	KeyHostname         = "Account.hostname"
	KeyUsername         = "Account.username"
	KeyArchivePath      = "Account.archivePath"
	KeyArchivePassword  = "Account.archivePassword"
	KeyAutoAnswer       = "Account.autoAnswer"
	KeyDHTPort          = "DHT.port"
	KeyCertificateFile  = "TLS.certificateFile"
	KeyRegistration     = "Account.registrationStatus" // volatile
	KeyRegistrationText = "Account.registrationStatusDescription"
	KeyDeviceAnnounced  = "Account.deviceAnnounced" // volatile
	KeyDeviceID         = "Account.deviceID"        // volatile: SHA-256 of the device key, 64 hex
)

// LoopbackAccount is the details of a new Jami account that talks to the
// local DHT only: it bootstraps from bootstrap (host:port, e.g. a dhtnode's
// Addr(); several are ;-separated), has no archive password, TURN, STUN,
// UPnP, proxy, local peer discovery and account publishing off, a name
// server that refuses at once (http://127.0.0.1:9), and a DHT port the
// system picks (so that it cannot collide with a dhtnode's 4222…). Add
// Account.autoAnswer=true for a callee that answers by itself.
func LoopbackAccount(bootstrap string) map[string]string {
	return map[string]string{
		KeyType:                        "RING",
		KeyAlias:                       "test",
		KeyArchivePassword:             "",
		KeyHostname:                    bootstrap,
		KeyDHTPort:                     "0",
		"TURN.enable":                  "false",
		"STUN.enable":                  "false",
		"Account.upnpEnabled":          "false",
		"Account.peerDiscovery":        "false",
		"Account.accountDiscovery":     "false",
		"Account.accountPublish":       "false",
		"Account.proxyEnabled":         "false",
		"Account.dhtProxyListUrl":      "",
		"Account.bootstrapListUrl":     "",
		"RingNS.uri":                   "http://127.0.0.1:9",
		"Account.publishedSameAsLocal": "true",
	}
}

// ImportedAccount is LoopbackAccount for an account imported from a Jami
// archive file (Account.archivePath, Account.archivePassword: "" for an
// archive without password, i.e. gzip'd JSON). jamid applies the
// configuration stored in the archive over these details.
func ImportedAccount(bootstrap, archivePath, password string) map[string]string {
	details := LoopbackAccount(bootstrap)
	details[KeyArchivePath] = archivePath
	details[KeyArchivePassword] = password
	return details
}

// Call calls method of jamid's interface iface (cx.ring.Ring.X, whose
// object is /cx/ring/Ring/X), for what this package has no method for.
func (d *Daemon) Call(ctx context.Context, iface, method string, args ...any) *dbus.Call {
	return d.method(ctx, iface, method, args...)
}

func (d *Daemon) method(ctx context.Context, iface, method string, args ...any) *dbus.Call {
	path := dbus.ObjectPath("/" + strings.ReplaceAll(iface, ".", "/"))
	return d.conn.Object(BusName, path).CallWithContext(ctx, iface+"."+method, 0, args...)
}

// store calls a method and stores its reply in out.
func (d *Daemon) store(ctx context.Context, out any, iface, method string, args ...any) error {
	if err := d.method(ctx, iface, method, args...).Store(out); err != nil {
		return fmt.Errorf("jamid %s: %w", method, err)
	}
	return nil
}

// ok calls a method whose reply is a success flag.
func (d *Daemon) ok(ctx context.Context, iface, method string, args ...any) error {
	var ok bool
	if err := d.store(ctx, &ok, iface, method, args...); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("jamid %s%q: refused", method, args)
	}
	return nil
}

// noReply calls a method without reply.
func (d *Daemon) noReply(ctx context.Context, iface, method string, args ...any) error {
	if err := d.method(ctx, iface, method, args...).Err; err != nil {
		return fmt.Errorf("jamid %s: %w", method, err)
	}
	return nil
}

// AccountList is the local ids of jamid's accounts (getAccountList).
func (d *Daemon) AccountList(ctx context.Context) ([]string, error) {
	var ids []string
	return ids, d.store(ctx, &ids, ConfigurationManager, "getAccountList")
}

// AccountTemplate is the default details of an account of type typ
// ("RING" or "SIP").
func (d *Daemon) AccountTemplate(ctx context.Context, typ string) (map[string]string, error) {
	var m map[string]string
	return m, d.store(ctx, &m, ConfigurationManager, "getAccountTemplate", typ)
}

// AddAccount creates an account (addAccount) and returns its local id (16
// hex digits; not the Jami ID, see JamiID). jamid makes the keys and
// registers in the background: see WaitRegistered.
func (d *Daemon) AddAccount(ctx context.Context, details map[string]string) (string, error) {
	var id string
	if err := d.store(ctx, &id, ConfigurationManager, "addAccount", details); err != nil {
		return "", err
	}
	if id == "" {
		return "", errors.New("jamid addAccount: no account id (refused)")
	}
	return id, nil
}

// ImportAccount creates an account from a Jami archive file (see
// ImportedAccount) and waits until it is registered. jamid removes an
// account whose archive it cannot read (registration state ERROR_GENERIC,
// "Auth error" in its log), which fails the wait.
func (d *Daemon) ImportAccount(ctx context.Context, bootstrap, archivePath, password string) (string, error) {
	id, err := d.AddAccount(ctx, ImportedAccount(bootstrap, archivePath, password))
	if err != nil {
		return "", err
	}
	if err := d.WaitRegistered(ctx, id); err != nil {
		return id, fmt.Errorf("importing %s: %w", archivePath, err)
	}
	return id, nil
}

// ExportArchive writes account's archive to path (exportToFile). password
// is the account's archive password ("" for none, the LoopbackAccount
// default), which jamid needs to read its own archive; the file is
// encrypted with it too ("": gzip'd JSON). See ChangeArchivePassword.
func (d *Daemon) ExportArchive(ctx context.Context, accountID, path, password string) error {
	return d.ok(ctx, ConfigurationManager, "exportToFile", accountID, path, password)
}

// ChangeArchivePassword re-encrypts account's archive with newPassword
// (changeAccountPassword; "" for none).
func (d *Daemon) ChangeArchivePassword(ctx context.Context, accountID, oldPassword, newPassword string) error {
	return d.ok(ctx, ConfigurationManager, "changeAccountPassword", accountID, oldPassword, newPassword)
}

// RemoveAccount deletes an account.
func (d *Daemon) RemoveAccount(ctx context.Context, accountID string) error {
	return d.noReply(ctx, ConfigurationManager, "removeAccount", accountID)
}

// AccountDetails is an account's configuration (getAccountDetails); empty
// for an unknown account.
func (d *Daemon) AccountDetails(ctx context.Context, accountID string) (map[string]string, error) {
	var m map[string]string
	return m, d.store(ctx, &m, ConfigurationManager, "getAccountDetails", accountID)
}

// SetAccountDetails changes an account's configuration (setAccountDetails).
func (d *Daemon) SetAccountDetails(ctx context.Context, accountID string, details map[string]string) error {
	return d.noReply(ctx, ConfigurationManager, "setAccountDetails", accountID, details)
}

// VolatileAccountDetails is an account's state (getVolatileAccountDetails):
// Account.registrationStatus, Account.deviceAnnounced, Account.deviceID, …;
// empty for an unknown account.
func (d *Daemon) VolatileAccountDetails(ctx context.Context, accountID string) (map[string]string, error) {
	var m map[string]string
	return m, d.store(ctx, &m, ConfigurationManager, "getVolatileAccountDetails", accountID)
}

// isRegistrationError: the ERROR_* states (ERROR_GENERIC, ERROR_AUTH,
// ERROR_NETWORK, ERROR_HOST, ERROR_SERVICE_UNAVAILABLE,
// ERROR_NEED_MIGRATION). For a Jami account they are final.
func isRegistrationError(state string) bool { return strings.HasPrefix(state, "ERROR") }

// WaitRegistered waits until account is REGISTERED (on a local DHT 1–5 s
// after AddAccount, most of it making three RSA-4096 keys). It follows
// registrationStateChanged, and fails at once on an ERROR_* state or when
// the account does not exist.
func (d *Daemon) WaitRegistered(ctx context.Context, accountID string) error {
	from := d.sigs.count()
	v, err := d.VolatileAccountDetails(ctx, accountID)
	if err != nil {
		return err
	}
	state := v[KeyRegistration]
	switch {
	case len(v) == 0:
		return fmt.Errorf("account %s does not exist", accountID)
	case state == StateRegistered:
		return nil
	case isRegistrationError(state):
		return fmt.Errorf("account %s: registration state %s %s", accountID, state, v[KeyRegistrationText])
	}
	var failed error
	err = d.wait(ctx, from, -1, func(sigs []Signal, _ []string) (bool, error) {
		for _, s := range sigs {
			if s.Name != ConfigurationManager+".registrationStateChanged" || s.str(0) != accountID {
				continue
			}
			state = s.str(1)
			if state == StateRegistered {
				return true, nil
			}
			if isRegistrationError(state) {
				failed = fmt.Errorf("account %s: registration state %s (code %d %q)", accountID, state, s.int32(2), s.str(3))
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for account %s to register (state %s): %w", accountID, state, err)
	}
	return failed
}

// WaitDeviceAnnounced waits until account has put its device announcement
// on the DHT (Account.deviceAnnounced, signalled by
// volatileAccountDetailsChanged), which is what callers look up: this can
// come a little after REGISTERED.
func (d *Daemon) WaitDeviceAnnounced(ctx context.Context, accountID string) error {
	from := d.sigs.count()
	v, err := d.VolatileAccountDetails(ctx, accountID)
	if err != nil {
		return err
	}
	if len(v) == 0 {
		return fmt.Errorf("account %s does not exist", accountID)
	}
	if v[KeyDeviceAnnounced] == "true" {
		return nil
	}
	err = d.wait(ctx, from, -1, func(sigs []Signal, _ []string) (bool, error) {
		for _, s := range sigs {
			if s.Name == ConfigurationManager+".volatileAccountDetailsChanged" && s.str(0) == accountID &&
				s.strMap(1)[KeyDeviceAnnounced] == "true" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for account %s to announce its device: %w", accountID, err)
	}
	return nil
}

// JamiID is account's Jami ID (Account.username: 40 hex digits, SHA-1 of
// the account's public key), which others call it by. A new account has
// none until its keys are made: JamiID then waits for it, checking again
// at every signal about the account.
func (d *Daemon) JamiID(ctx context.Context, accountID string) (string, error) {
	var id string
	first := true
	err := d.wait(ctx, d.sigs.count(), -1, func(sigs []Signal, _ []string) (bool, error) {
		if !first && !aboutAccount(sigs, accountID) {
			return false, nil
		}
		first = false
		details, err := d.AccountDetails(ctx, accountID)
		if err != nil {
			return false, err
		}
		if len(details) == 0 {
			return false, fmt.Errorf("account %s does not exist", accountID)
		}
		id = bareID(details[KeyUsername])
		return id != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("the Jami ID of account %s: %w", accountID, err)
	}
	return id, nil
}

// aboutAccount: one of sigs is a ConfigurationManager signal whose first
// argument is accountID.
func aboutAccount(sigs []Signal, accountID string) bool {
	for _, s := range sigs {
		if s.Interface() == ConfigurationManager && s.str(0) == accountID {
			return true
		}
	}
	return false
}

// DeviceKeyID is the public key id of account's device (40 hex digits:
// SHA-1 of the device certificate's SubjectPublicKeyInfo), the DHT key the
// device certificate is announced at and the id FindCertificate takes. It
// reads the account's TLS.certificateFile (the chain device, account, CA).
// (Account.deviceID is another id of the same key: its SHA-256.)
func (d *Daemon) DeviceKeyID(ctx context.Context, accountID string) (string, error) {
	details, err := d.AccountDetails(ctx, accountID)
	if err != nil {
		return "", err
	}
	path := details[KeyCertificateFile]
	if path == "" {
		return "", fmt.Errorf("account %s has no device certificate (yet)", accountID)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the device certificate: %w", err)
	}
	return PublicKeyID(data)
}

// PublicKeyID is OpenDHT's id of the public key of the first certificate
// in PEM (SHA-1 of its DER SubjectPublicKeyInfo), in hex. jami/dht reads the
// key even from certificates with the negative serial numbers OpenDHT
// writes, which crypto/x509 refuses.
func PublicKeyID(pemData []byte) (string, error) {
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	pub, err := dht.CertificatePublicKey(block.Bytes)
	if err != nil {
		return "", err
	}
	id, err := dht.PublicKeyID(pub)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// AddContact adds uri (a Jami ID) to account's contacts (addContact; in
// 13.7.0 this also starts a swarm conversation and sends a trust request).
func (d *Daemon) AddContact(ctx context.Context, accountID, uri string) error {
	return d.noReply(ctx, ConfigurationManager, "addContact", accountID, uri)
}

// Contacts is account's contact list (getContacts): maps with "id",
// "added", "confirmed", ….
func (d *Daemon) Contacts(ctx context.Context, accountID string) ([]map[string]string, error) {
	var c []map[string]string
	return c, d.store(ctx, &c, ConfigurationManager, "getContacts", accountID)
}

// SendTrustRequest sends a trust request with payload to uri
// (sendTrustRequest).
func (d *Daemon) SendTrustRequest(ctx context.Context, accountID, uri string, payload []byte) error {
	if payload == nil {
		payload = []byte{}
	}
	return d.noReply(ctx, ConfigurationManager, "sendTrustRequest", accountID, uri, payload)
}

// FindCertificate asks jamid to look up the certificate whose public key
// id is certID (40 hex digits; see DeviceKeyID) on the DHT for account
// (pinRemoteCertificate), and returns once jamid has it: at once if its
// certificate store (shared by the daemon's accounts) already has it, else
// at the certificatePinned signal. jamid reports nothing when the DHT has
// no such certificate, so that case ends with ctx: give it a deadline
// (on a local DHT a certificate is found in milliseconds).
func (d *Daemon) FindCertificate(ctx context.Context, accountID, certID string) error {
	certID = strings.ToLower(certID)
	from := d.sigs.count()
	var known map[string]string
	if err := d.store(ctx, &known, ConfigurationManager, "getCertificateDetails", certID); err != nil {
		return err
	}
	if len(known) > 0 {
		return nil
	}
	if err := d.ok(ctx, ConfigurationManager, "pinRemoteCertificate", accountID, certID); err != nil {
		return err
	}
	_, err := d.WaitSignal(ctx, from, func(s Signal) bool {
		return s.Name == ConfigurationManager+".certificatePinned" && strings.EqualFold(s.str(0), certID)
	})
	if err != nil {
		return fmt.Errorf("certificate %s not found on the DHT: %w", certID, err)
	}
	return nil
}

// PlaceCall calls to (a Jami ID, 40 hex digits) from account with jamid's
// default media (audio and video) and returns the caller's call id. Follow
// it with WaitCallState.
func (d *Daemon) PlaceCall(ctx context.Context, accountID, to string) (string, error) {
	var id string
	if err := d.store(ctx, &id, CallManager, "placeCall", accountID, to); err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("jamid placeCall %s → %s: refused", accountID, to)
	}
	return id, nil
}

// AudioMedia is the media list of an audio-only call
// (placeCallWithMedia, acceptWithMedia).
func AudioMedia() []map[string]string {
	return []map[string]string{{
		"MEDIA_TYPE": "MEDIA_TYPE_AUDIO", "ENABLED": "true", "MUTED": "false", "SOURCE": "", "LABEL": "audio_0",
	}}
}

// AudioFileMedia is an audio stream whose source is a file (a WAV jamid
// plays, looping, as its microphone): the test's tone for the far side.
func AudioFileMedia(path string) []map[string]string {
	return []map[string]string{{
		"MEDIA_TYPE": "MEDIA_TYPE_AUDIO", "ENABLED": "true", "MUTED": "false", "SOURCE": "file://" + path, "LABEL": "audio_0",
	}}
}

// PlaceCallWithMedia calls to with the given media (AudioMedia,
// AudioFileMedia…).
func (d *Daemon) PlaceCallWithMedia(ctx context.Context, accountID, to string, media []map[string]string) (string, error) {
	var id string
	if err := d.store(ctx, &id, CallManager, "placeCallWithMedia", accountID, to, media); err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("jamid placeCallWithMedia %s → %s: refused", accountID, to)
	}
	return id, nil
}

// AcceptWithMedia answers an incoming call with the given media.
func (d *Daemon) AcceptWithMedia(ctx context.Context, accountID, callID string, media []map[string]string) error {
	return d.ok(ctx, CallManager, "acceptWithMedia", accountID, callID, media)
}

// RequestMediaChange changes a call's media (a new source, mute, a
// stream added): jamid re-INVITEs the peer.
func (d *Daemon) RequestMediaChange(ctx context.Context, accountID, callID string, media []map[string]string) error {
	return d.ok(ctx, CallManager, "requestMediaChange", accountID, callID, media)
}

// Hold puts a call on hold (or resumes it).
func (d *Daemon) Hold(ctx context.Context, accountID, callID string, on bool) error {
	method := "unhold"
	if on {
		method = "hold"
	}
	return d.ok(ctx, CallManager, method, accountID, callID)
}

func (d *Daemon) PlaceAudioCall(ctx context.Context, accountID, to string) (string, error) {
	var id string
	if err := d.store(ctx, &id, CallManager, "placeCallWithMedia", accountID, to, AudioMedia()); err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("jamid placeCallWithMedia %s → %s: refused", accountID, to)
	}
	return id, nil
}

// Accept answers an incoming call.
func (d *Daemon) Accept(ctx context.Context, accountID, callID string) error {
	return d.ok(ctx, CallManager, "accept", accountID, callID)
}

// Refuse declines an incoming call.
func (d *Daemon) Refuse(ctx context.Context, accountID, callID string) error {
	return d.ok(ctx, CallManager, "refuse", accountID, callID)
}

// HangUp ends a call.
func (d *Daemon) HangUp(ctx context.Context, accountID, callID string) error {
	return d.ok(ctx, CallManager, "hangUp", accountID, callID)
}

// CallDetails is a call's details (getCallDetails): CALL_STATE,
// PEER_NUMBER, …; empty once the call is over.
func (d *Daemon) CallDetails(ctx context.Context, accountID, callID string) (map[string]string, error) {
	var m map[string]string
	return m, d.store(ctx, &m, CallManager, "getCallDetails", accountID, callID)
}

// PlayDTMF presses a key in jamid's current call: jamid sends it as a SIP
// INFO (application/dtmf-relay), not in its media.
func (d *Daemon) PlayDTMF(ctx context.Context, key string) error {
	return d.noReply(ctx, CallManager, "playDTMF", key)
}
