package matrixcall

import "time"

// Config is what Matrix 1:1 calls need to know; it sits under calls: in the
// bot's configuration (bridge.CallsConfig inlines it).
type Config struct {
	// PublicRooms: answer invites in rooms anyone may join.
	PublicRooms    bool          `yaml:"public_rooms"`
	InviteLifetime time.Duration `yaml:"invite_lifetime"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// HomeserverTURN: ask the homeserver for TURN credentials.
	HomeserverTURN bool              `yaml:"homeserver_turn"`
	ICEServers     []ICEServerConfig `yaml:"ice_servers"`
}

// ICEServerConfig is a STUN or TURN server of the operator's own.
type ICEServerConfig struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}
