package matrix

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// RetryAfter classifies the errors mautrix returns for what homeservers
// answer: only what may succeed later is retried, a rate limit after the
// wait it asks for.
func TestRetryAfter(t *testing.T) {
	for name, tc := range map[string]struct {
		status int
		header string
		body   string
		retry  bool
		after  time.Duration
	}{
		"too large": {413, "", `{"errcode":"M_TOO_LARGE","error":"event too large"}`, false, 0},
		"bad json":  {400, "", `{"errcode":"M_BAD_JSON","error":"no"}`, false, 0},
		"forbidden": {403, "", `{"errcode":"M_FORBIDDEN","error":"no power"}`, false, 0},
		"rate limited (body)": {429, "", `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":1500}`,
			true, 1500 * time.Millisecond},
		"rate limited (header)":  {429, "2", `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down"}`, true, 2 * time.Second},
		"rate limited (absurd)":  {429, "", `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":86400000}`, true, maxRateLimitWait},
		"server error":           {500, "", `{"errcode":"M_UNKNOWN","error":"oops"}`, true, 0},
		"bad gateway (not JSON)": {502, "", `<html>bad gateway</html>`, true, 0},
	} {
		t.Run(name, func(t *testing.T) {
			tries := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				tries++
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			cli, err := mautrix.NewClient(srv.URL, "@bot:hs", "token")
			require.NoError(t, err)
			cli.DefaultHTTPRetries = 0 // the classification, not mautrix's own retries
			_, err = cli.SendMessageEvent(context.Background(), "!room:hs", event.Type{Type: "m.call.hangup", Class: event.MessageEventType}, map[string]any{})
			require.Error(t, err)
			retry, after := RetryAfter(err)
			assert.Equal(t, tc.retry, retry, "%v", err)
			assert.Equal(t, tc.after, after)
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		cli, err := mautrix.NewClient(url, "@bot:hs", "token")
		require.NoError(t, err)
		cli.DefaultHTTPRetries = 0
		_, err = cli.SendMessageEvent(context.Background(), "!room:hs", event.Type{Type: "m.call.hangup", Class: event.MessageEventType}, map[string]any{})
		retry, _ := RetryAfter(err)
		assert.True(t, retry, "%v", err)
	})
	t.Run("not the homeserver's answer", func(t *testing.T) {
		retry, _ := RetryAfter(errors.New("failed to encrypt event"))
		assert.False(t, retry)
	})
}
