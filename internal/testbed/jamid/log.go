//go:build linux

package jamid

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// ansi matches the terminal colour codes jamid's console log is full of.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// logBuffer is jamid's output: a line at a time, without colour codes, kept
// in memory (for waits) and written to a file and an optional writer.
type logBuffer struct {
	mu      sync.Mutex
	file    *os.File
	extra   io.Writer
	partial []byte
	lines   []string
	changed chan struct{} // closed (and replaced) at every new line
	err     error         // the first error writing the file
	closed  bool
}

func newLogBuffer(file *os.File, extra io.Writer) *logBuffer {
	return &logBuffer{file: file, extra: extra, changed: make(chan struct{})}
}

// Write takes jamid's output (exec's copying goroutine calls it). It never
// fails, so that jamid's output pipe never breaks.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		line := string(b.partial[:i])
		b.partial = b.partial[i+1:]
		b.addLocked(line)
	}
	return len(p), nil
}

func (b *logBuffer) addLocked(line string) {
	if b.closed {
		return
	}
	line = strings.TrimRight(ansi.ReplaceAllString(line, ""), "\r")
	b.lines = append(b.lines, line)
	if _, err := b.file.WriteString(line + "\n"); err != nil && b.err == nil {
		b.err = err
	}
	if b.extra != nil {
		_, _ = b.extra.Write([]byte(line + "\n"))
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// mark adds a line of this package's own (after the partial line, if any).
func (b *logBuffer) mark(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.partial) > 0 {
		b.addLocked(string(b.partial))
		b.partial = nil
	}
	b.addLocked(line)
}

// after returns the lines from index i on, and a channel closed at the next
// line (nil once closed).
func (b *logBuffer) after(i int) ([]string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	if i < len(b.lines) {
		out = append(out, b.lines[i:]...)
	}
	if b.closed {
		return out, nil
	}
	return out, b.changed
}

func (b *logBuffer) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if len(b.partial) > 0 {
		b.addLocked(string(b.partial))
		b.partial = nil
	}
	b.closed = true
	close(b.changed)
	return errors.Join(b.err, b.file.Close())
}

// LogPath is the file jamid's output goes to (Dir/jamid.log); it is gone
// after Stop if Dir was a temporary folder.
func (d *Daemon) LogPath() string { return filepath.Join(d.dir, "jamid.log") }

// Log is jamid's whole output so far (also after Stop), without colour
// codes.
func (d *Daemon) Log() string {
	lines := d.LogLines(0)
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// LogLines are jamid's output lines from index since on.
func (d *Daemon) LogLines(since int) []string {
	if d.log == nil {
		return nil
	}
	lines, _ := d.log.after(since)
	return lines
}

// LogLineCount is the number of lines jamid printed so far: a cursor for
// LogLines and WaitLogLine.
func (d *Daemon) LogLineCount() int {
	if d.log == nil {
		return 0
	}
	d.log.mu.Lock()
	defer d.log.mu.Unlock()
	return len(d.log.lines)
}

// LogTail is the end of jamid's output, at most maxBytes bytes (whole
// lines), for failure messages.
func (d *Daemon) LogTail(maxBytes int) string {
	lines := d.LogLines(0)
	n := 0
	i := len(lines)
	for i > 0 && n+len(lines[i-1])+1 <= maxBytes {
		i--
		n += len(lines[i]) + 1
	}
	return strings.Join(lines[i:], "\n")
}

// WaitLogLine returns the first line jamid printed from index since on
// (see LogLineCount) that match accepts, waiting for it until ctx ends,
// jamid exits or the daemon is stopped.
func (d *Daemon) WaitLogLine(ctx context.Context, since int, match func(string) bool) (string, error) {
	var found string
	err := d.wait(ctx, d.sigs.count(), since, func(_ []Signal, lines []string) (bool, error) {
		for _, l := range lines {
			if match(l) {
				found = l
				return true, nil
			}
		}
		return false, nil
	})
	return found, err
}
