package testbed

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	_ "modernc.org/sqlite" // the test users' crypto stores
)

// Register creates a user with shared-secret registration; a user that
// exists already is an error. Every user made this way shares one device
// ID, so log users in with Login before using them: VoIP party IDs and
// encryption need a device of their own.
func (d *Dendrite) Register(ctx context.Context, localpart, password string) (id.UserID, error) {
	return d.srv.Create(ctx, localpart, password)
}

// User is a test user logged in with a password on a device of its own,
// syncing in the background.
type User struct {
	*mautrix.Client
	Crypto *cryptohelper.CryptoHelper // nil without encryption
	events chan *event.Event
	cancel context.CancelFunc
	done   chan struct{}
	db     *dbutil.Database
}

// Login logs a registered user in on a new device and starts syncing. With
// encrypted set, the user takes part in encrypted rooms (its crypto store
// lives in dir).
func (d *Dendrite) Login(ctx context.Context, localpart, password, dir string, encrypted bool) (*User, error) {
	cli, err := mautrix.NewClient(d.URL, "", "")
	if err != nil {
		return nil, err
	}
	cli.Log = zerolog.Nop()
	if _, err = cli.Login(ctx, &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:         password,
		StoreCredentials: true,
	}); err != nil {
		return nil, fmt.Errorf("logging in %s: %w", localpart, err)
	}
	u := &User{Client: cli, events: make(chan *event.Event, 1024), done: make(chan struct{})}
	syncer := cli.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEvent(func(_ context.Context, evt *event.Event) {
		if evt.RoomID != "" && evt.Type != event.EventEncrypted {
			u.events <- evt
		}
	})
	if encrypted {
		raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, localpart+"-crypto.db")+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate")
		if err != nil {
			return nil, err
		}
		if u.db, err = dbutil.NewWithDB(raw, "sqlite"); err != nil {
			return nil, err
		}
		if u.Crypto, err = cryptohelper.NewCryptoHelper(cli, []byte("test-pickle-key-"+localpart), u.db); err != nil {
			return nil, err
		}
		if err = u.Crypto.Init(ctx); err != nil {
			return nil, fmt.Errorf("starting encryption for %s: %w", localpart, err)
		}
		cli.Crypto = u.Crypto
	}
	syncCtx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go func() {
		defer close(u.done)
		_ = cli.SyncWithContext(syncCtx)
	}()
	return u, nil
}

// Close stops syncing and closes the crypto store.
func (u *User) Close() {
	u.cancel()
	<-u.done
	if u.db != nil {
		_ = u.db.Close()
	}
}

// WaitEvent returns the first room event (decrypted if it was encrypted)
// that match accepts, discarding the others, or an error when ctx ends.
func (u *User) WaitEvent(ctx context.Context, match func(*event.Event) bool) (*event.Event, error) {
	for {
		select {
		case evt := <-u.events:
			if match(evt) {
				return evt, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for an event: %w", ctx.Err())
		}
	}
}

// ReplyTo matches the bot's notice replying to the given event.
func ReplyTo(bot id.UserID, to id.EventID) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Sender != bot || evt.Type != event.EventMessage {
			return false
		}
		_ = evt.Content.ParseRaw(evt.Type)
		msg := evt.Content.AsMessage()
		return msg.RelatesTo != nil && msg.RelatesTo.InReplyTo != nil && msg.RelatesTo.InReplyTo.EventID == to
	}
}

// Membership matches a member event of user in room with the given membership.
func Membership(room id.RoomID, user id.UserID, m event.Membership) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.RoomID != room || evt.Type != event.StateMember || evt.GetStateKey() != user.String() {
			return false
		}
		_ = evt.Content.ParseRaw(evt.Type)
		return evt.Content.AsMember().Membership == m
	}
}

// Timeout is the default bound of a wait in end-to-end tests.
const Timeout = 60 * time.Second
