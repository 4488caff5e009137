package matrix

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// maxTransactionBytes bounds a transaction body. Homeservers send at most a
// few hundred events per transaction.
const maxTransactionBytes = 32 << 20

// txnRetention is how long transaction IDs are remembered for de-duplication.
const txnRetention = 7 * 24 * time.Hour

// GenerateRegistration writes the appservice registration file named in the
// config. Tokens of an existing registration are kept, so running it again
// after a config change needs no change on the homeserver but a reload.
func GenerateRegistration(cfg Config) (*appservice.Registration, error) {
	localpart, _, err := cfg.Bot.UserID.Parse()
	if err != nil {
		return nil, fmt.Errorf("bot.user_id: %w", err)
	}
	reg := appservice.CreateRegistration()
	if old, err := appservice.LoadRegistration(cfg.Appservice.Registration); err == nil {
		reg.AppToken, reg.ServerToken = old.AppToken, old.ServerToken
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading existing registration %s: %w", cfg.Appservice.Registration, err)
	}
	rateLimited := false
	reg.ID = cfg.Appservice.ID
	reg.URL = cfg.Appservice.URL
	reg.SenderLocalpart = localpart
	reg.RateLimited = &rateLimited
	reg.Namespaces.UserIDs.Register(regexp.MustCompile("^"+regexp.QuoteMeta(cfg.Bot.UserID.String())+"$"), true)
	// receive_ephemeral (MSC2409) carries to-device messages and ephemeral
	// events in transactions; the legacy flag is for older Synapse.
	// org.matrix.msc3202 adds device list changes and one-time key counts,
	// which the encryption machine needs when /sync is not used.
	reg.EphemeralEvents = true
	reg.SoruEphemeralEvents = true
	reg.MSC3202 = true
	if err = reg.Save(cfg.Appservice.Registration); err != nil {
		return nil, fmt.Errorf("writing registration %s: %w", cfg.Appservice.Registration, err)
	}
	return reg, nil
}

// LoadRegistration reads and checks the registration file in appservice mode.
func LoadRegistration(cfg Config) (*appservice.Registration, error) {
	reg, err := appservice.LoadRegistration(cfg.Appservice.Registration)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("appservice.registration: %s does not exist; write it with `voipbot -g` and add it to the homeserver", cfg.Appservice.Registration)
	} else if err != nil {
		return nil, fmt.Errorf("appservice.registration: reading %s: %w", cfg.Appservice.Registration, err)
	}
	localpart, _, _ := cfg.Bot.UserID.Parse()
	switch {
	case len(reg.AppToken) < 16 || len(reg.ServerToken) < 16:
		return nil, fmt.Errorf("appservice.registration: %s has no usable as_token and hs_token", cfg.Appservice.Registration)
	case reg.SenderLocalpart != localpart:
		return nil, fmt.Errorf("appservice.registration: sender_localpart %q in %s is not the localpart of bot.user_id %s; run `voipbot -g` again",
			reg.SenderLocalpart, cfg.Appservice.Registration, cfg.Bot.UserID)
	case reg.ID != cfg.Appservice.ID:
		return nil, fmt.Errorf("appservice.registration: id %q in %s is not appservice.id %q; run `voipbot -g` again",
			reg.ID, cfg.Appservice.Registration, cfg.Appservice.ID)
	}
	return reg, nil
}

// appserviceHandler serves the homeserver side of the appservice API.
type appserviceHandler struct {
	client *Client
}

func (h *appserviceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/_matrix/app/v1")
	log := h.client.aslog.With().Str("path", path).Logger()
	if !h.authorized(w, r) {
		return
	}
	switch {
	case strings.HasPrefix(path, "/transactions/") && r.Method == http.MethodPut:
		h.transaction(w, r, strings.TrimPrefix(path, "/transactions/"), log)
	case path == "/ping" && r.Method == http.MethodPost:
		writeJSON(w, http.StatusOK, struct{}{})
	case strings.HasPrefix(path, "/users/"), strings.HasPrefix(path, "/rooms/"), strings.HasPrefix(path, "/thirdparty/"):
		// The bot provisions no users or aliases on demand.
		writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", "voipbot provides no such user, alias or protocol")
	default:
		writeMatrixError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	}
}

// authorized checks the homeserver's hs_token in constant time, from the
// Authorization header or the legacy access_token query parameter.
func (h *appserviceHandler) authorized(w http.ResponseWriter, r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		token = r.URL.Query().Get("access_token")
	}
	if token == "" {
		h.client.metrics.Transactions.WithLabelValues("unauthorized").Inc()
		writeMatrixError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "Missing hs_token")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(h.client.reg.ServerToken)) != 1 {
		h.client.metrics.Transactions.WithLabelValues("forbidden").Inc()
		writeMatrixError(w, http.StatusForbidden, "M_FORBIDDEN", "Incorrect hs_token")
		return false
	}
	return true
}

func (h *appserviceHandler) transaction(w http.ResponseWriter, r *http.Request, txnID string, log zerolog.Logger) {
	m := h.client.metrics
	if txnID == "" || strings.Contains(txnID, "/") {
		m.Transactions.WithLabelValues("bad_request").Inc()
		writeMatrixError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Bad transaction ID")
		return
	}
	log = log.With().Str("txn_id", txnID).Logger()
	if !h.client.started.Load() {
		// The homeserver retries; by then the bot is logged in.
		writeMatrixError(w, http.StatusServiceUnavailable, "M_UNKNOWN", "voipbot is starting")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTransactionBytes))
	if err != nil {
		m.Transactions.WithLabelValues("bad_request").Inc()
		writeMatrixError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "Transaction too large or unreadable")
		return
	}
	var txn appservice.Transaction
	if err = json.Unmarshal(body, &txn); err != nil {
		m.Transactions.WithLabelValues("bad_request").Inc()
		writeMatrixError(w, http.StatusBadRequest, "M_NOT_JSON", "Transaction body is not valid JSON: "+err.Error())
		return
	}
	ctx := log.WithContext(r.Context())
	seen, err := h.client.store.TxnSeen(ctx, txnID)
	if err != nil {
		m.Transactions.WithLabelValues("error").Inc()
		log.Err(err).Msg("Failed to check transaction")
		writeMatrixError(w, http.StatusInternalServerError, "M_UNKNOWN", "Failed to check transaction")
		return
	}
	if seen {
		m.Transactions.WithLabelValues("duplicate").Inc()
		log.Debug().Msg("Acknowledging repeated transaction")
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	resp, txnCrypto := h.client.transactionToSync(&txn)
	if err = h.client.syncer.processTransaction(ctx, txnID, resp, txnCrypto); err != nil {
		m.Transactions.WithLabelValues("error").Inc()
		log.Err(err).Msg("Failed to take in transaction")
		writeMatrixError(w, http.StatusInternalServerError, "M_UNKNOWN", "Failed to store transaction")
		return
	}
	m.Transactions.WithLabelValues("ok").Inc()
	log.Debug().Object("txn", &txn).Msg("Took in transaction")
	if pruned, err := h.client.store.PruneTxns(ctx, time.Now().Add(-txnRetention)); err != nil {
		log.Warn().Err(err).Msg("Failed to prune old transaction IDs")
	} else if pruned > 0 {
		log.Debug().Int64("pruned", pruned).Msg("Pruned old transaction IDs")
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// transactionCrypto is what a transaction carries for the crypto machine
// (MSC3202), applied as the machine's own sync handler would.
type transactionCrypto struct {
	deviceLists *mautrix.DeviceLists
	otkCount    *mautrix.OTKCount
}

// apply runs after the transaction's events were dispatched; plainToDevice
// are its to-device events that are not Olm-encrypted (key requests and
// the like), which only the machine handles.
func (tc *transactionCrypto) apply(ctx context.Context, mach *crypto.OlmMachine, plainToDevice []*event.Event) {
	if tc.deviceLists != nil {
		mach.HandleDeviceLists(ctx, tc.deviceLists, "")
	}
	for _, evt := range plainToDevice {
		mach.HandleToDeviceEvent(ctx, evt)
	}
	if tc.otkCount != nil {
		mach.HandleOTKCounts(ctx, tc.otkCount)
	}
	mach.MarkOlmHashSavePoint(ctx)
}

// transactionToSync reshapes a transaction into a sync response so both take
// the same path: the state store and the intake see its events in the same
// way. To-device messages and key data are taken only if the bot is set to
// get them from transactions.
func (c *Client) transactionToSync(txn *appservice.Transaction) (*mautrix.RespSync, *transactionCrypto) {
	resp := &mautrix.RespSync{Rooms: mautrix.RespSyncRooms{Join: map[id.RoomID]*mautrix.SyncJoinedRoom{}}}
	for _, evt := range txn.Events {
		if evt.RoomID == "" {
			continue
		}
		room := resp.Rooms.Join[evt.RoomID]
		if room == nil {
			room = &mautrix.SyncJoinedRoom{}
			resp.Rooms.Join[evt.RoomID] = room
		}
		room.Timeline.Events = append(room.Timeline.Events, evt)
	}
	if c.cfg.Appservice.ToDevice != ToDeviceViaTransactions {
		return resp, nil
	}
	toDevice := txn.ToDeviceEvents
	if toDevice == nil {
		toDevice = txn.MSC2409ToDeviceEvents
	}
	for _, evt := range toDevice {
		if evt.ToUserID == c.cli.UserID && (evt.ToDeviceID == "" || evt.ToDeviceID == c.cli.DeviceID) {
			resp.ToDevice.Events = append(resp.ToDevice.Events, evt)
		}
	}
	tc := &transactionCrypto{deviceLists: firstNonNil(txn.DeviceLists, txn.MSC3202DeviceLists)}
	counts := txn.DeviceOTKCount
	if counts == nil {
		counts = txn.MSC3202DeviceOTKCount
	}
	if own, ok := counts[c.cli.UserID][c.cli.DeviceID]; ok {
		tc.otkCount = &own
	}
	return resp, tc
}

func firstNonNil[T any](values ...*T) *T {
	for _, v := range values {
		if v != nil {
			return v
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeMatrixError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, &mautrix.RespError{ErrCode: code, Err: msg})
}
