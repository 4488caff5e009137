package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/voipbot/voipbot/internal/testbed"
)

// BenchmarkStartupToReady measures a restart of an already logged-in bot:
// from exec until /health says ready (database open, stored login checked,
// encryption loaded and its keys checked on the server, first sync stored).
func BenchmarkStartupToReady(b *testing.B) {
	setup, err := benchBotSetup(b)
	if err != nil {
		b.Fatal(err)
	}
	// The first start logs in; it is not part of the measurement.
	if _, err = setup.runOnce(); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		took, err := setup.runOnce()
		if err != nil {
			b.Fatal(err)
		}
		total += took
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/ready")
}

// BenchmarkStartupBaselineClient is the floor for BenchmarkStartupToReady: a
// bare mautrix client with a stored token doing what any bot must do before
// it is ready (whoami, upload a filter, first sync), in process.
func BenchmarkStartupBaselineClient(b *testing.B) {
	ctx := context.Background()
	localpart := fmt.Sprintf("baseline%d", userSeq.Add(1))
	if _, err := hs.Register(ctx, localpart, "pw-"+localpart); err != nil {
		b.Fatal(err)
	}
	cli, err := mautrix.NewClient(hs.URL, "", "")
	if err != nil {
		b.Fatal(err)
	}
	login, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart}, Password: "pw-" + localpart})
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		c, err := mautrix.NewClient(hs.URL, login.UserID, login.AccessToken)
		if err == nil {
			_, err = c.Whoami(ctx)
		}
		var filter *mautrix.RespCreateFilter
		if err == nil {
			filter, err = c.CreateFilter(ctx, &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 50}}})
		}
		if err == nil {
			_, err = c.FullSyncRequest(ctx, mautrix.ReqSync{FilterID: filter.FilterID})
		}
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/ready")
}

type benchSetup struct {
	dir, config, httpAddr string
}

func benchBotSetup(b *testing.B) (*benchSetup, error) {
	ctx := context.Background()
	localpart := fmt.Sprintf("benchbot%d", userSeq.Add(1))
	uid, err := hs.Register(ctx, localpart, "pw-"+localpart)
	if err != nil {
		return nil, err
	}
	port, err := testbed.FreePort()
	if err != nil {
		return nil, err
	}
	s := &botSetup{UserID: uid, Password: "pw-" + localpart, Dir: b.TempDir(), HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port)}
	s.Config = filepath.Join(s.Dir, "config.yaml")
	if err = writeBotConfig(s, hs, fmt.Sprintf("bot:\n  user_id: %q\n  password: %q\n", uid, s.Password), "pickle-"+localpart+"-0123456789", "info", ""); err != nil {
		return nil, err
	}
	return &benchSetup{dir: s.Dir, config: s.Config, httpAddr: s.HTTPAddr}, nil
}

// runOnce starts the bot, waits until it is ready, and stops it.
func (s *benchSetup) runOnce() (time.Duration, error) {
	bot, err := testbed.StartBot(botBinary, s.dir, s.config, s.httpAddr, nil)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
	defer cancel()
	took, err := bot.WaitReadyPrecisely(ctx)
	code, stopErr := bot.Stop()
	if err == nil && (stopErr != nil || code != 0) {
		err = fmt.Errorf("voipbot stopped with code %d: %w\n%s", code, stopErr, bot.LogTail())
	}
	return took, err
}
