package sip

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
)

// Part is one payload of a MESSAGE.
type Part struct {
	ContentType string // with its parameters, as sent
	Body        []byte
}

// MessageParts splits a MESSAGE body as jamid's im::parseSipMessage does:
// a multipart body (jamid sends multipart/mixed when a message has more
// than one payload, e.g. text/plain with a rich variant) gives its parts,
// anything else is one part. Pick "text/plain" for the room; jamid also
// sends application/im-iscomposing+xml (typing) and
// message/imdn+xml (read receipts) this way.
func MessageParts(contentType string, body []byte) ([]Part, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return []Part{{ContentType: contentType, Body: body}}, nil
	}
	if params["boundary"] == "" {
		return nil, errors.New("sip: multipart MESSAGE without a boundary")
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []Part
	for {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			return parts, nil
		}
		if err != nil {
			return parts, err
		}
		b, err := io.ReadAll(io.LimitReader(p, maxMessage))
		if err != nil {
			return parts, err
		}
		parts = append(parts, Part{ContentType: p.Header.Get("Content-Type"), Body: b})
	}
}

// Text is the text/plain payload of a MESSAGE, if it has one.
func Text(contentType string, body []byte) (string, bool) {
	parts, _ := MessageParts(contentType, body)
	for _, p := range parts {
		if mt, _, err := mime.ParseMediaType(p.ContentType); err == nil && mt == "text/plain" {
			return string(p.Body), true
		}
	}
	return "", false
}
