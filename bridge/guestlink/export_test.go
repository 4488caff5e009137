package guestlink

// Tracked returns how many links and addresses l keeps a budget for.
func Tracked(l *Limiter) (links, addrs int) { return l.tracked() }
