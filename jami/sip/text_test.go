package sip

import "testing"

func TestMessageParts(t *testing.T) {
	if s, ok := Text("text/plain", []byte("hi")); !ok || s != "hi" {
		t.Fatalf("plain: %q %v", s, ok)
	}
	body := "--b0\r\nContent-Type: text/plain\r\n\r\nsalut\r\n--b0\r\nContent-Type: application/im-iscomposing+xml\r\n\r\n<isComposing/>\r\n--b0--\r\n"
	parts, err := MessageParts("multipart/mixed;boundary=b0", []byte(body))
	if err != nil || len(parts) != 2 || string(parts[0].Body) != "salut" || parts[1].ContentType != "application/im-iscomposing+xml" {
		t.Fatalf("multipart: %+v %v", parts, err)
	}
	if s, ok := Text("multipart/mixed; boundary=b0", []byte(body)); !ok || s != "salut" {
		t.Fatalf("text of multipart: %q %v", s, ok)
	}
	if _, ok := Text("application/im-iscomposing+xml", []byte("<isComposing/>")); ok {
		t.Fatal("typing notice taken for text")
	}
}
