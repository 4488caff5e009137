package lkjwt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// RequestOpenIDToken asks the homeserver at hsURL for an OpenID token of
// userID (POST /_matrix/client/v3/user/{userId}/openid/request_token with
// {}), returned as the homeserver wrote it: clients hand it on unchanged,
// so the service's strict decoding sees what a real client's request
// carries.
func RequestOpenIDToken(ctx context.Context, hsURL, userID, accessToken string) (json.RawMessage, error) {
	u := strings.TrimRight(hsURL, "/") + "/_matrix/client/v3/user/" + url.PathEscape(userID) + "/openid/request_token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Content-Type", "application/json")
	body, status, err := do(req)
	if err != nil {
		return nil, fmt.Errorf("requesting an OpenID token for %s: %w", userID, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("requesting an OpenID token for %s: status %d: %s", userID, status, body)
	}
	if !json.Valid(body) {
		return nil, fmt.Errorf("requesting an OpenID token for %s: not JSON: %s", userID, body)
	}
	return json.RawMessage(body), nil
}

// StatusError is a service's answer other than 200.
type StatusError struct {
	Status  int
	ErrCode string // the Matrix-style errcode, if the body had one
	Body    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d: %s", e.Status, e.Body)
}

// Post sends body, marshalled to JSON, to the service at serviceURL
// (a livekit_service_url) under path ("/sfu/get" or "/get_token") and
// returns its Response; an answer other than 200 is a *StatusError.
func Post(ctx context.Context, serviceURL, path string, body any) (Response, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return Response{}, fmt.Errorf("encoding the %s request: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(serviceURL, "/")+path, bytes.NewReader(data))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	answer, status, err := do(req)
	if err != nil {
		return Response{}, fmt.Errorf("asking %s for a LiveKit token: %w", path, err)
	}
	if status != http.StatusOK {
		var e Error
		_ = json.Unmarshal(answer, &e)
		return Response{}, &StatusError{Status: status, ErrCode: e.ErrCode, Body: string(answer)}
	}
	var resp Response
	if err = json.Unmarshal(answer, &resp); err != nil {
		return Response{}, fmt.Errorf("decoding the %s answer: %w", path, err)
	}
	return resp, nil
}

func do(req *http.Request) ([]byte, int, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return bytes.TrimSpace(body), resp.StatusCode, err
}
