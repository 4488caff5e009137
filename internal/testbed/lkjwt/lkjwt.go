// Package lkjwt is the test bed's LiveKit JWT service: what a MatrixRTC
// member's livekit_service_url points at. It exchanges a Matrix OpenID token
// for a LiveKit access token, as element-hq/lk-jwt-service does (which cannot
// be a dependency: AGPL, and not served by the module proxy):
//
//   - POST /sfu/get (legacy; Element Call's compatibility mode) and
//     POST /get_token (matrix_2_0), both answering {"url","jwt"};
//   - strict JSON: an unknown field is 400 M_NOT_JSON, a missing one 400
//     M_BAD_JSON;
//   - the OpenID token is checked at the homeserver's federation userinfo
//     endpoint, reached over plain HTTP at a base URL given per server name
//     (the test bed has no federation discovery); failure is 401
//     M_UNAUTHORIZED;
//   - the grant is roomJoin, canPublish and canSubscribe on the room alias,
//     valid for an hour; livekit-server's room.auto_create makes the room;
//   - CORS for any origin, since Element Call is served from another one.
//
// The room alias and identity formulas (MSC4195 and lk-jwt-service's
// helpers) are RoomAlias, Identity and LegacyIdentity.
package lkjwt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/auth"
)

// LegacySlot is the slot id of a room's one call, which /sfu/get always
// uses (and Element Call sends to /get_token).
const LegacySlot = "m.call#ROOM"

// TokenValidity is how long a minted LiveKit token is valid.
const TokenValidity = time.Hour

// RoomAlias is the LiveKit room name of the MatrixRTC slot slotID of the
// Matrix room roomID: unpadded standard base64 of the SHA-256 of the JSON
// array [roomID, slotID].
func RoomAlias(roomID, slotID string) string {
	return hashJSON(roomID, slotID)
}

// Identity is the LiveKit participant identity /get_token gives a member:
// unpadded standard base64 of the SHA-256 of the JSON array [userID,
// deviceID, memberID]. A hash, so that it carries no more than the member
// event does and is short whatever the ids.
func Identity(userID, deviceID, memberID string) string {
	return hashJSON(userID, deviceID, memberID)
}

// LegacyIdentity is the LiveKit participant identity /sfu/get gives:
// "userID:deviceID", which Element Call matches against a state-event
// membership's sender and device_id.
func LegacyIdentity(userID, deviceID string) string {
	return userID + ":" + deviceID
}

func hashJSON(parts ...string) string {
	// json.Marshal of a []string cannot fail, and writes no spaces.
	data, _ := json.Marshal(parts)
	sum := sha256.Sum256(data)
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// OpenIDToken is a Matrix OpenID token as
// /_matrix/client/v3/user/{userId}/openid/request_token returns it.
type OpenIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	// ExpiresIn is opaque here: the spec says seconds, Dendrite 0.15.2
	// sends an absolute time.
	ExpiresIn int64 `json:"expires_in"`
}

// Delay is the optional delegated delayed leave (MSC4140) of a request:
// all three fields or none. The service checks the shape and otherwise
// ignores it: the test homeserver has no delayed events, so no client
// sends one against it, and one that does is not refused for it.
type Delay struct {
	DelayID       string `json:"delay_id,omitempty"`
	DelayTimeout  int64  `json:"delay_timeout,omitempty"`
	DelayCSAPIURL string `json:"delay_cs_api_url,omitempty"`
}

func (d Delay) checkDelay() error {
	set := 0
	for _, ok := range []bool{d.DelayID != "", d.DelayTimeout != 0, d.DelayCSAPIURL != ""} {
		if ok {
			set++
		}
	}
	if set != 0 && set != 3 {
		return errors.New("delay_id, delay_timeout and delay_cs_api_url come all together or not at all")
	}
	return nil
}

// SFURequest is the body of POST /sfu/get.
type SFURequest struct {
	Room        string      `json:"room"`
	OpenIDToken OpenIDToken `json:"openid_token"`
	DeviceID    string      `json:"device_id"`
	Delay
}

// Member is a MatrixRTC member as /get_token's body names it.
type Member struct {
	ID              string `json:"id"`
	ClaimedUserID   string `json:"claimed_user_id"`
	ClaimedDeviceID string `json:"claimed_device_id"`
}

// TokenRequest is the body of POST /get_token. Element Call 0.26.1 sends the
// delay fields here too, so they are part of it.
type TokenRequest struct {
	RoomID      string      `json:"room_id"`
	SlotID      string      `json:"slot_id"`
	OpenIDToken OpenIDToken `json:"openid_token"`
	Member      Member      `json:"member"`
	Delay
}

// Response is the answer of both endpoints.
type Response struct {
	URL string `json:"url"`
	JWT string `json:"jwt"`
}

// Error is a Matrix-style error body.
type Error struct {
	ErrCode string `json:"errcode"`
	Message string `json:"error"`
}

// Config configures a Service.
type Config struct {
	// LiveKitURL is the SFU's WebSocket URL handed to clients (ws://…).
	LiveKitURL string
	// APIKey and APISecret sign the tokens; they are livekit-server's.
	APIKey, APISecret string
	// Homeservers maps a matrix_server_name to the base URL (plain HTTP in
	// the test bed) where its federation API, and so the OpenID userinfo
	// endpoint, answers. A server name not in it is refused with 401.
	Homeservers map[string]string
	// HTTPClient asks the homeservers; default a client with a 10 s
	// timeout.
	HTTPClient *http.Client
}

// Service is the JWT service as an http.Handler.
type Service struct {
	cfg  Config
	mux  *http.ServeMux
	mu   sync.Mutex
	sent []Minted
}

// Minted records a token the service handed out, for tests to check what
// a client was given.
type Minted struct {
	Endpoint string // "/sfu/get" or "/get_token"
	UserID   string // the OpenID token's sub
	Room     string // the LiveKit room alias
	Identity string // the LiveKit identity
}

// New checks cfg and makes a Service.
func New(cfg Config) (*Service, error) {
	if cfg.LiveKitURL == "" || cfg.APIKey == "" || cfg.APISecret == "" {
		return nil, errors.New("lkjwt: LiveKitURL, APIKey and APISecret are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Service{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("/sfu/get", s.sfuGet)
	s.mux.HandleFunc("/get_token", s.getToken)
	return s, nil
}

// ServeHTTP answers CORS preflights for every path, then routes.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Minted returns the tokens handed out so far, oldest first.
func (s *Service) Minted() []Minted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Minted(nil), s.sent...)
}

func (s *Service) sfuGet(w http.ResponseWriter, r *http.Request) {
	var req SFURequest
	if !decode(w, r, &req) {
		return
	}
	if req.Room == "" || req.DeviceID == "" {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "room and device_id are required")
		return
	}
	if err := req.checkDelay(); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", err.Error())
		return
	}
	sub, ok := s.verify(r.Context(), w, req.OpenIDToken)
	if !ok {
		return
	}
	s.mint(w, "/sfu/get", sub, RoomAlias(req.Room, LegacySlot), LegacyIdentity(sub, req.DeviceID))
}

func (s *Service) getToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if !decode(w, r, &req) {
		return
	}
	if req.RoomID == "" || req.SlotID == "" || req.Member.ID == "" || req.Member.ClaimedUserID == "" || req.Member.ClaimedDeviceID == "" {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "room_id, slot_id and member's id, claimed_user_id and claimed_device_id are required")
		return
	}
	if err := req.checkDelay(); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", err.Error())
		return
	}
	sub, ok := s.verify(r.Context(), w, req.OpenIDToken)
	if !ok {
		return
	}
	if req.Member.ClaimedUserID != sub {
		writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "claimed_user_id is not the OpenID token's user")
		return
	}
	s.mint(w, "/get_token", sub, RoomAlias(req.RoomID, req.SlotID), Identity(sub, req.Member.ClaimedDeviceID, req.Member.ID))
}

// decode reads a POST body strictly into v, answering the error itself.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "POST only")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "decoding the request: "+err.Error())
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "decoding the request: data after the JSON object")
		return false
	}
	return true
}

// verify checks the OpenID token at its homeserver and returns the user it
// belongs to, or answers the error itself.
func (s *Service) verify(ctx context.Context, w http.ResponseWriter, tok OpenIDToken) (string, bool) {
	if tok.AccessToken == "" || tok.MatrixServerName == "" {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "openid_token.access_token and matrix_server_name are required")
		return "", false
	}
	sub, err := s.userinfo(ctx, tok)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "checking the OpenID token: "+err.Error())
		return "", false
	}
	return sub, true
}

func (s *Service) userinfo(ctx context.Context, tok OpenIDToken) (string, error) {
	base, ok := s.cfg.Homeservers[tok.MatrixServerName]
	if !ok {
		return "", fmt.Errorf("unknown homeserver %q", tok.MatrixServerName)
	}
	u := strings.TrimRight(base, "/") + "/_matrix/federation/v1/openid/userinfo?access_token=" + url.QueryEscape(tok.AccessToken)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking %s: %w", tok.MatrixServerName, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading %s's answer: %w", tok.MatrixServerName, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered %d: %s", tok.MatrixServerName, resp.StatusCode, bytes.TrimSpace(body))
	}
	var info struct {
		Sub string `json:"sub"`
	}
	if err = json.Unmarshal(body, &info); err != nil || info.Sub == "" {
		return "", fmt.Errorf("%s answered without a user: %s", tok.MatrixServerName, bytes.TrimSpace(body))
	}
	// A homeserver vouches only for its own users (as federation's OpenID
	// check requires): @alice:other from localhost is refused.
	if _, server, ok := strings.Cut(info.Sub, ":"); !ok || server != tok.MatrixServerName {
		return "", fmt.Errorf("%s vouched for %s, who is not its user", tok.MatrixServerName, info.Sub)
	}
	return info.Sub, nil
}

func (s *Service) mint(w http.ResponseWriter, endpoint, sub, room, identity string) {
	yes := true
	jwt, err := auth.NewAccessToken(s.cfg.APIKey, s.cfg.APISecret).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room, CanPublish: &yes, CanSubscribe: &yes}).
		SetIdentity(identity).
		SetValidFor(TokenValidity).
		ToJWT()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "signing the LiveKit token: "+err.Error())
		return
	}
	s.mu.Lock()
	s.sent = append(s.sent, Minted{Endpoint: endpoint, UserID: sub, Room: room, Identity: identity})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Response{URL: s.cfg.LiveKitURL, JWT: jwt})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Error{ErrCode: code, Message: msg})
}

// Server is a Service listening on 127.0.0.1.
type Server struct {
	*Service
	// URL is the service's base URL (http://127.0.0.1:port), a member's
	// livekit_service_url.
	URL  string
	http *http.Server
	done chan error
}

// Start runs a Service on a free port of 127.0.0.1. Stop it with Close.
func Start(cfg Config) (*Server, error) {
	svc, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lkjwt: listening: %w", err)
	}
	s := &Server{
		Service: svc,
		URL:     "http://" + ln.Addr().String(),
		http:    &http.Server{Handler: svc, ReadHeaderTimeout: 10 * time.Second},
		done:    make(chan error, 1),
	}
	go func() { s.done <- s.http.Serve(ln) }()
	return s, nil
}

// Close stops the server, waiting up to 5 s for requests under way.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}
