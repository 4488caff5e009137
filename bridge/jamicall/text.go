package jamicall

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"strings"
)

// maxText bounds a text message shown from a Jami peer.
const maxText = 4096

// textParts are the texts of a SIP MESSAGE body: a text/plain body, or the
// text/plain parts of a multipart one (jamid sends its messages as
// multipart/mixed). Other content (typing notices, …) gives none.
func textParts(contentType string, body []byte) []string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil
	}
	switch {
	case mt == "text/plain":
		if t := clip(string(body)); t != "" {
			return []string{t}
		}
		return nil
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "":
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		var out []string
		for range 16 {
			p, err := r.NextPart()
			if err != nil {
				break
			}
			pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			data, _ := io.ReadAll(io.LimitReader(p, maxText+1))
			if pt == "text/plain" {
				if t := clip(string(data)); t != "" {
					out = append(out, t)
				}
			}
		}
		return out
	}
	return nil
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxText {
		s = s[:maxText] + "…"
	}
	return s
}
