package jami

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/voipbot/voipbot/jami/connect"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/jami/mux"
)

// SIPChannel is the channel name Jami calls use.
const SIPChannel = "sip"

// ChannelHandler receives each SIP channel a Jami device opened to the bot.
// It must not block.
type ChannelHandler func(*connect.Peer, *mux.Channel)

// startConnections makes the connection manager and listens for requests.
func (s *Service) startConnections(ctx context.Context) error {
	listen := s.cfg.ICEListen
	if listen == "" {
		host, _, _ := net.SplitHostPort(s.cfg.Listen)
		listen = net.JoinHostPort(host, "0")
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("jami.ice_listen %s: %w", listen, err)
	}
	mgr, err := connect.New(connect.Config{
		DHT:  s.secure,
		Self: connect.Identity{Key: s.account.DeviceKey, Chain: s.account.DeviceChain()},
		ICE:  connect.ICEConfig{TCP: l, IPs: s.ICEAddresses(), Loopback: s.loopbackOnly()},
		Allow: func(d connect.Device) error {
			if s.Banned(d.Account) || s.Banned(d.ID) {
				return errors.New("banned (jami.ban)")
			}
			return nil
		},
		AcceptChannel: func(_ connect.Device, name string) bool { return name == SIPChannel },
		OnChannel: func(p *connect.Peer, ch *mux.Channel) {
			if h := s.onChannel.Load(); h != nil {
				(*h)(p, ch)
				return
			}
			_ = ch.Close() // nobody takes calls yet
		},
		Log: s.log,
	})
	if err != nil {
		_ = l.Close()
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		_ = mgr.Close()
		return err
	}
	s.conns.Store(mgr)
	return nil
}

// loopbackOnly: the configured candidate addresses are all loopback ones
// (a test, or a bot only reachable on the machine).
func (s *Service) loopbackOnly() bool {
	ips := s.ICEAddresses()
	return len(ips) > 0 && !slices.ContainsFunc(ips, func(a netip.Addr) bool { return !a.IsLoopback() })
}

// ICEAddresses are the configured candidate addresses (nil: all).
func (s *Service) ICEAddresses() []netip.Addr {
	var out []netip.Addr
	for _, a := range s.cfg.ICEAddresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// SetChannelHandler sets who takes the SIP channels devices open.
func (s *Service) SetChannelHandler(h func(*connect.Peer, *mux.Channel)) {
	ch := ChannelHandler(h)
	s.onChannel.Store(&ch)
}

// Allowed says whether a Jami account may call the bot (jami.allow, and not
// banned).
func (s *Service) Allowed(account dht.InfoHash) bool {
	if s.Banned(account) {
		return false
	}
	for _, a := range s.cfg.Allow {
		if a == "*" || strings.EqualFold(a, account.String()) {
			return true
		}
	}
	return false
}

// Banned says whether an account or device is in jami.ban.
func (s *Service) Banned(id dht.InfoHash) bool {
	return slices.ContainsFunc(s.cfg.Ban, func(b string) bool { return strings.EqualFold(b, id.String()) })
}

// DefaultRoom is jami.default_room.
func (s *Service) DefaultRoom() string { return s.cfg.DefaultRoom }

// ErrNotConnected: the DHT has not been joined yet.
var ErrNotConnected = errors.New("the bot is not on the Jami network yet")

// OpenSIP opens a SIP channel to a device (on its socket, made if need
// be); video says which call it is for (dhtnet's connType, for push).
func (s *Service) OpenSIP(ctx context.Context, dev connect.Device, video bool) (*connect.Peer, *mux.Channel, error) {
	mgr := s.conns.Load()
	if mgr == nil {
		return nil, nil, ErrNotConnected
	}
	connType := "audioCall"
	if video {
		connType = "videoCall"
	}
	return mgr.OpenChannel(ctx, dev, SIPChannel, connType)
}

// ErrNoDevice is a lookup that found no usable device of the account.
var ErrNoDevice = errors.New("no device found on the DHT")

// deviceLookupRetries are the waits before looking an account's devices up
// again when none was found: a device announcement just put (a device that
// has only now come online, a busy DHT) can take a moment to be found.
var deviceLookupRetries = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// Devices finds an account's devices, as a Jami caller does: the device
// announcements at the account id signed by the account, and each device's
// chain at its key id, which must be issued by that account. It looks again
// (deviceLookupRetries) while ctx allows, when it found none.
func (s *Service) Devices(ctx context.Context, account dht.InfoHash) ([]connect.Device, error) {
	devs, err := s.lookupDevices(ctx, account)
	for _, wait := range deviceLookupRetries {
		if err == nil {
			return devs, nil
		}
		s.log.Debug().Err(err).Stringer("account", account).Dur("retry_in", wait).Msg("No device of the account yet")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		devs, err = s.lookupDevices(ctx, account)
	}
	return devs, err
}

func (s *Service) lookupDevices(ctx context.Context, account dht.InfoHash) ([]connect.Device, error) {
	values, err := s.secure.Get(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("looking up Jami account %s: %w", account, err)
	}
	var devs []connect.Device
	seen := map[dht.InfoHash]bool{}
	for _, v := range values {
		if v.Owner == nil || v.Type != dht.TypeUserData {
			continue
		}
		if owner, err := dht.PublicKeyID(v.Owner); err != nil || owner != account {
			continue
		}
		ann, err := ParseAnnouncement(v.Data)
		if err != nil || seen[ann.Device] {
			continue
		}
		seen[ann.Device] = true
		chain, _, err := s.secure.FindCertificate(ctx, ann.Device)
		if err != nil {
			s.log.Debug().Err(err).Stringer("device", ann.Device).Msg("An announced device has no certificate on the DHT")
			continue
		}
		dev, err := connect.ParseDevice(chain)
		if err != nil || dev.Account != account || dev.ID != ann.Device {
			s.log.Info().Err(err).Stringer("device", ann.Device).Msg("Ignoring an announced device whose chain is not the account's")
			continue
		}
		if s.Banned(dev.ID) {
			continue
		}
		devs = append(devs, dev)
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("looking up the devices of Jami account %s: %w", account, ErrNoDevice)
	}
	return devs, nil
}

// connections is the connection manager, nil before the DHT is joined.
type connections = atomic.Pointer[connect.Manager]
