package dendrite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"
)

// ErrUserExists is wrapped by Create's error when the user exists already.
var ErrUserExists = errors.New("the user exists already")

// Register makes the user localpart with password by shared-secret
// registration. A user that exists already is not an error: it is kept as
// it is (its password neither checked nor changed), so that a server
// started again on the same directory keeps its users.
func (s *Server) Register(ctx context.Context, localpart, password string) (id.UserID, error) {
	uid, err := s.Create(ctx, localpart, password)
	if errors.Is(err, ErrUserExists) {
		return id.NewUserID(localpart, ServerName), nil
	}
	return uid, err
}

// Create is Register for a user that must be new: an existing one is an
// error wrapping ErrUserExists.
func (s *Server) Create(ctx context.Context, localpart, password string) (id.UserID, error) {
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		return "", err
	}
	cli.Log = zerolog.Nop()
	admin := synapseadmin.Client{Client: cli}
	resp, err := admin.SharedSecretRegister(ctx, s.SharedSecret, synapseadmin.ReqSharedSecretRegister{
		Username: localpart, Password: password,
	})
	if errors.Is(err, mautrix.MUserInUse) {
		return "", fmt.Errorf("registering %s: %w (%w)", localpart, ErrUserExists, err)
	} else if err != nil {
		return "", fmt.Errorf("registering %s: %w", localpart, err)
	}
	return resp.UserID, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
