package qbsignal

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UserJID is the bare JID the SDK gives a user (buildUserJid,
// getUserJid): <userID>-<appID>@<domain>, the domain being the SDK's
// endpoints.chat. Signals go to it, never to a full JID.
func UserJID(userID, appID uint64, domain string) string {
	return strconv.FormatUint(userID, 10) + "-" + strconv.FormatUint(appID, 10) + "@" + domain
}

// UserID is the user id of a JID as the SDK's getIdFromNode reads it: the
// node up to its first "-" (a resource does not matter). Unlike parseInt
// it takes decimal digits only, so "12x-77@d" is an error, not 12; a JID
// without "@" is an error too (the SDK's null).
func UserID(jid string) (uint64, error) {
	node, _, ok := strings.Cut(jid, "@")
	if !ok {
		return 0, fmt.Errorf("%w: %s has no node", ErrBadID, quote(jid))
	}
	node, _, _ = strings.Cut(node, "-")
	id, err := parseID(node)
	if err != nil {
		return 0, fmt.Errorf("the JID %s: %w", quote(jid), err)
	}
	return id, nil
}

// AppID is the application id of a JID of UserJID's form (the node after
// its first "-"), to check that a peer is of the bot's application.
func AppID(jid string) (uint64, error) {
	node, _, ok := strings.Cut(jid, "@")
	if !ok {
		return 0, fmt.Errorf("%w: %s has no node", ErrBadID, quote(jid))
	}
	_, app, ok := strings.Cut(node, "-")
	if !ok {
		return 0, fmt.Errorf("%w: %s has no application id", ErrBadID, quote(jid))
	}
	id, err := parseID(app)
	if err != nil {
		return 0, fmt.Errorf("the JID %s: %w", quote(jid), err)
	}
	return id, nil
}

// NewMessageID is a message id of the SDK's form (getBsonObjectId): 24
// hex digits, a BSON ObjectId whose first 4 bytes are the Unix time in
// seconds. The other 8 are random here (the SDK's are a machine id, a
// process id and a counter): unique without any state.
func NewMessageID() string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(time.Now().Unix()))
	_, _ = rand.Read(b[4:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
