package guestlink

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// How long a link lives.
const (
	// DefaultTTL is the lifetime of a link made without one.
	DefaultTTL = 24 * time.Hour
	// MinTTL is the shortest lifetime a link may have.
	MinTTL = time.Minute
	// MaxTTL is the longest lifetime a link may have (30 days).
	MaxTTL = 30 * 24 * time.Hour
)

var ttlUnits = map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}

// ParseTTL reads a link lifetime as the link command takes it: a whole
// number of minutes, hours or days ("30m", "2h", "1d", "7d"), from MinTTL to
// MaxTTL. Its errors are ErrBadTTL, worded for the person who typed s.
func ParseTTL(s string) (time.Duration, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if len(t) < 2 {
		return 0, fmt.Errorf("%w %q: give a number and a unit, like 30m, 2h or 7d", ErrBadTTL, s)
	}
	unit, ok := ttlUnits[t[len(t)-1]]
	digits := t[:len(t)-1]
	if !ok || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%w %q: give a number and a unit, like 30m, 2h or 7d", ErrBadTTL, s)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > int64(MaxTTL/unit) {
		// Out of int64 range is too long too.
		return 0, fmt.Errorf("%w %q: at most %s", ErrBadTTL, s, FormatTTL(MaxTTL))
	}
	d := time.Duration(n) * unit
	if err := checkTTL(d); err != nil {
		return 0, fmt.Errorf("%w %q: %s", ErrBadTTL, s, err.Error())
	}
	return d, nil
}

// checkTTL says why d is not a lifetime a link may have.
func checkTTL(d time.Duration) error {
	switch {
	case d < MinTTL:
		return fmt.Errorf("at least %s", FormatTTL(MinTTL))
	case d > MaxTTL:
		return fmt.Errorf("at most %s", FormatTTL(MaxTTL))
	}
	return nil
}

// FormatTTL writes a lifetime the way ParseTTL reads it, in the largest
// unit that divides it ("7d", "36h", "90m"); a part of a minute is dropped.
func FormatTTL(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
}
