package qbsignal

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// node is an element or a text of a message as the SDK's DOM sees it:
// element names without their namespace (querySelector and nodeName match
// the local name), text where a DOM has a text node.
type node struct {
	name     string // "" for a text
	text     string // a text's
	attrs    []xml.Attr
	children []*node
	// more holds a text's further pieces while it is read (a comment or a
	// CDATA section splits the tokens); finish joins them.
	more []byte
}

func (n *node) isText() bool { return n.name == "" }

// textContent is the DOM's: the text of every descendant, in order.
func (n *node) textContent() string {
	if n.isText() {
		return n.text
	}
	if len(n.children) == 1 && n.children[0].isText() {
		return n.children[0].text
	}
	var b strings.Builder
	n.appendText(&b)
	return b.String()
}

func (n *node) appendText(b *strings.Builder) {
	for _, c := range n.children {
		if c.isText() {
			b.WriteString(c.text)
		} else {
			c.appendText(b)
		}
	}
}

// find is the first element named name among n's descendants, depth
// first in document order (querySelector), or nil.
func (n *node) find(name string) *node {
	for _, c := range n.children {
		if c.isText() {
			continue
		}
		if c.name == name {
			return c
		}
		if f := c.find(name); f != nil {
			return f
		}
	}
	return nil
}

func (n *node) attr(local string) string {
	for _, a := range n.attrs {
		if a.Name.Local == local && (a.Name.Space == "" || a.Name.Space == NSClient) {
			return a.Value
		}
	}
	return ""
}

// treeReader builds the tree of one element from tokens, within the
// limits (elements, depth, bytes of text).
type treeReader struct {
	r        xml.TokenReader
	elements int
	text     int
}

// readElement reads the children of start up to its end. A reader that
// ends (io.EOF) where only start is open ends it: an element's inner
// reader need not give the end token.
func (t *treeReader) readElement(start xml.StartElement) (*node, error) {
	root := &node{name: start.Name.Local, attrs: start.Attr}
	stack := []*node{root}
	for {
		tok, err := t.r.Token()
		if errors.Is(err, io.EOF) && len(stack) == 1 {
			finish(root)
			return root, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading XML: %w", ErrMalformed, err)
		}
		top := stack[len(stack)-1]
		switch tok := tok.(type) {
		case xml.StartElement:
			if t.elements++; t.elements > MaxElements {
				return nil, fieldErr("message", ErrTooLarge, fmt.Sprintf("more than %d elements", MaxElements))
			}
			if len(stack) >= MaxDepth {
				return nil, fieldErr("message", ErrTooLarge, fmt.Sprintf("elements nested more than %d deep", MaxDepth))
			}
			n := &node{name: tok.Name.Local}
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			finish(top)
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return root, nil
			}
		case xml.CharData:
			if t.text += len(tok); t.text > MaxStanza {
				return nil, fieldErr("message", ErrTooLarge, fmt.Sprintf("more than %d bytes of text", MaxStanza))
			}
			// Text and CDATA next to each other are one text (a server
			// that parses and serialises the stanza, as Prosody does,
			// makes them one anyway).
			if k := len(top.children); k > 0 && top.children[k-1].isText() {
				top.children[k-1].more = append(top.children[k-1].more, tok...)
			} else {
				top.children = append(top.children, &node{text: string(tok)})
			}
		case xml.Directive:
			return nil, fmt.Errorf("%w: a <!%s> directive in a stanza", ErrMalformed, firstWord(tok))
		case xml.Comment, xml.ProcInst:
			// XMPP allows neither in a stream; a server would not pass
			// them. They are not text.
		}
	}
}

// finish drops the whitespace-only texts between n's elements (no SDK or
// server sends any; a pretty-printed test stanza should read the same).
func finish(n *node) {
	hasElement := false
	for _, c := range n.children {
		if !c.isText() {
			hasElement = true
		} else if c.more != nil {
			c.text += string(c.more)
			c.more = nil
		}
	}
	if !hasElement {
		return
	}
	kept := n.children[:0]
	for _, c := range n.children {
		if c.isText() && strings.TrimSpace(c.text) == "" {
			continue
		}
		kept = append(kept, c)
	}
	n.children = kept
}

func firstWord(d xml.Directive) string {
	s, _, _ := strings.Cut(string(d), " ")
	return quote(s)
}
