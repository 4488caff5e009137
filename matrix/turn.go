package matrix

import (
	"context"
	"fmt"
	"time"
)

// TURNServer is the homeserver's TURN service for the bot's user.
type TURNServer struct {
	URIs     []string
	Username string
	Password string
	TTL      time.Duration
}

// TURN asks the homeserver for TURN credentials (GET /voip/turnServer). No
// URIs means the homeserver has none (Conduit answers so).
func (c *Client) TURN(ctx context.Context) (*TURNServer, error) {
	resp, err := c.cli.TurnServer(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching TURN credentials: %w", err)
	}
	return &TURNServer{URIs: resp.URIs, Username: resp.Username, Password: resp.Password, TTL: time.Duration(resp.TTL) * time.Second}, nil
}
