package media

// Direction is a section's a=sendrecv, a=sendonly, a=recvonly or
// a=inactive, from the point of view of the side that wrote it.
type Direction int

// Directions; the zero value is sendrecv, the SDP default.
const (
	SendRecv Direction = iota
	SendOnly
	RecvOnly
	Inactive
)

var directionNames = [...]string{"sendrecv", "sendonly", "recvonly", "inactive"}

func (d Direction) String() string {
	if d < 0 || int(d) >= len(directionNames) {
		return "unknown"
	}
	return directionNames[d]
}

func parseDirection(s string) (Direction, bool) {
	for i, n := range directionNames {
		if s == n {
			return Direction(i), true
		}
	}
	return 0, false
}

// Sends reports whether the side sends media.
func (d Direction) Sends() bool { return d == SendRecv || d == SendOnly }

// Receives reports whether the side takes media.
func (d Direction) Receives() bool { return d == SendRecv || d == RecvOnly }

func makeDirection(send, recv bool) Direction {
	switch {
	case send && recv:
		return SendRecv
	case send:
		return SendOnly
	case recv:
		return RecvOnly
	}
	return Inactive
}

// answerTo is the direction of an answer that wants d, to an offer that
// said offered (RFC 3264 6.1): we send only what they take, and take only
// what they send.
func (d Direction) answerTo(offered Direction) Direction {
	return makeDirection(d.Sends() && offered.Receives(), d.Receives() && offered.Sends())
}
