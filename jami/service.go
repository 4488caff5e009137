package jami

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/jami/dht"
)

// How often the good peers are saved, and how many are kept.
const (
	peerSaveInterval = 5 * time.Minute
	peersKept        = 64
)

// Service runs the bot's DHT node with its state in a Store: the node id
// and identity (so a restart is the same node), the bot's Jami account and
// device, the values it keeps announced, and the peers that answered lately
// (a fast bootstrap).
type Service struct {
	cfg     Config
	store   Store
	log     zerolog.Logger
	node    *dht.Node
	ident   *dht.Identity
	account *Account
	secure  *dht.Secure
	conns   connections
	// onChannel takes the SIP channels devices open (SetChannelHandler).
	onChannel atomic.Pointer[ChannelHandler]
	book      contactBook   // contacts.go
	ready     chan struct{} // closed once connections are taken
	wg        sync.WaitGroup
	cancel    context.CancelFunc
}

// Start loads (or, at the first start, creates or imports) the bot's Jami
// account and device, binds the node's socket and joins the network in the
// background. Stop it with Stop.
func Start(ctx context.Context, cfg Config, st Store, log zerolog.Logger) (*Service, error) {
	s := &Service{cfg: cfg, store: st, log: log.With().Str("component", "dht").Logger(), ready: make(chan struct{})}
	saved, err := st.DHTNode(ctx)
	if err != nil {
		return nil, err
	}
	if saved == nil {
		if saved, err = s.newIdentity(ctx); err != nil {
			return nil, err
		}
	}
	if s.account, err = LoadStored(saved.AccountArchive, saved.KeyPEM, saved.CertPEM); err != nil {
		return nil, err
	}
	s.ident = s.account.DeviceIdentity()
	var id dht.InfoHash
	copy(id[:], saved.NodeID)
	nodeCfg := dht.Config{ID: id, Network: cfg.Network}
	if host, _, _ := net.SplitHostPort(cfg.Listen); strings.Contains(host, ":") {
		nodeCfg.Listen6 = cfg.Listen
	} else {
		nodeCfg.Listen4 = cfg.Listen
	}
	if s.node, err = dht.New(nodeCfg, s.log); err != nil {
		return nil, err
	}
	s.secure = dht.NewSecure(s.node, s.ident)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.node.Start(runCtx)
	s.wg.Add(1)
	go s.run(runCtx)
	return s, nil
}

// firstAccount is the account of the first start: imported from the
// configured archive (with a new device for the bot), or new.
func (s *Service) firstAccount() (*Account, error) {
	if s.cfg.Archive == "" {
		s.log.Info().Msg("Creating the bot's Jami account and device (once)")
		acc, err := NewAccount("voipbot")
		if err != nil {
			return nil, fmt.Errorf("making the Jami account: %w", err)
		}
		return acc, nil
	}
	data, err := os.ReadFile(s.cfg.Archive)
	if err != nil {
		return nil, fmt.Errorf("jami.archive: %w", err)
	}
	acc, err := ImportArchive(data, s.cfg.ArchivePassword)
	if err != nil {
		return nil, fmt.Errorf("jami.archive %s: %w", s.cfg.Archive, err)
	}
	if err = acc.NewDevice("voipbot"); err != nil {
		return nil, err
	}
	s.log.Info().Stringer("jami_id", acc.ID()).Msg("Imported the Jami account from jami.archive, with a new device for the bot")
	return acc, nil
}

// newIdentity makes and stores a node id and a Jami account with this
// device (RSA-4096 keys take a few seconds, once).
func (s *Service) newIdentity(ctx context.Context) (*NodeRecord, error) {
	acc, err := s.firstAccount()
	if err != nil {
		return nil, err
	}
	archive, err := acc.Export("")
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(acc.DeviceKey)
	if err != nil {
		return nil, err
	}
	id := dht.RandomHash()
	n := &NodeRecord{
		NodeID:         id[:],
		AccountArchive: archive,
		KeyPEM:         string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		CertPEM:        string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: acc.DeviceCert.Raw})),
	}
	if err = s.store.PutDHTNode(ctx, n); err != nil {
		return nil, err
	}
	return n, nil
}

// run joins the network, announces the certificate and the stored values,
// and saves the good peers now and then, until stopped.
func (s *Service) run(ctx context.Context) {
	defer s.wg.Done()
	for delay := time.Second; ctx.Err() == nil; delay = min(2*delay, 5*time.Minute) {
		if err := s.join(ctx); err == nil {
			break
		} else {
			s.log.Warn().Err(err).Dur("retry_in", delay).Msg("Cannot join the DHT yet")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
	s.announce(ctx)
	if err := s.startContacts(ctx); err != nil {
		s.log.Error().Err(err).Msg("Cannot take Jami trust requests: Jami users cannot add the bot as a contact")
	}
	if err := s.startConnections(ctx); err != nil {
		s.log.Error().Err(err).Msg("Cannot take Jami connections: calls with Jami devices will fail")
	} else {
		close(s.ready)
	}
	tick := time.NewTicker(peerSaveInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.savePeers(ctx)
		}
	}
}

// join bootstraps from the remembered peers and the configured nodes.
func (s *Service) join(ctx context.Context) error {
	var addrs []netip.AddrPort
	peers, err := s.store.DHTPeers(ctx)
	if err != nil {
		return err
	}
	for _, p := range peers[:min(len(peers), 16)] {
		if a, err := netip.ParseAddrPort(p.Address); err == nil {
			addrs = append(addrs, a)
		}
	}
	for _, b := range s.cfg.Bootstrap {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			continue // validated at start
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			s.log.Warn().Err(err).Str("node", b).Msg("Cannot resolve a DHT bootstrap node")
			continue
		}
		for _, ip := range ips {
			addrs = append(addrs, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
		}
	}
	if len(addrs) == 0 {
		return errors.New("no node to bootstrap from")
	}
	joinCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err = s.node.Bootstrap(joinCtx, addrs...); err != nil {
		return err
	}
	st := s.node.Stats()
	s.log.Info().Int("nodes", st.Nodes4+st.Nodes6).Int("good", st.Good4+st.Good6).Stringer("node_id", s.node.ID()).
		Stringer("jami_id", s.account.ID()).Stringer("device", s.ident.KeyID()).Msg("Joined the DHT")
	s.savePeers(ctx)
	return nil
}

// announce keeps our certificate and the stored values announced.
func (s *Service) announce(ctx context.Context) {
	putCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The device's certificate chain at its key id, and the announcement
	// that it belongs to the account at the account id: what a Jami device
	// looks up to call the bot.
	if _, err := s.node.PutPermanent(putCtx, s.ident.KeyID(), dht.CertificateValue(s.ident.CertPEM)); err != nil {
		s.log.Warn().Err(err).Msg("Announcing the device certificate failed")
	}
	if ann, err := s.account.DeviceAnnouncement(); err != nil {
		s.log.Warn().Err(err).Msg("Making the device announcement failed")
	} else if _, err = s.node.PutPermanent(putCtx, s.account.ID(), ann); err != nil {
		s.log.Warn().Err(err).Msg("Announcing the device failed")
	}
	values, err := s.store.DHTValues(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("Reading the values to announce")
		return
	}
	for _, sv := range values {
		v, err := dht.UnpackValue(sv.Packed)
		if err != nil {
			s.log.Warn().Err(err).Msg("Dropping a stored DHT value that cannot be read")
			continue
		}
		var h dht.InfoHash
		copy(h[:], sv.Hash)
		if _, err = s.node.PutPermanent(putCtx, h, v); err != nil {
			s.log.Warn().Err(err).Stringer("key", h).Msg("Announcing a stored DHT value failed; the keep-alive tries again")
		}
	}
}

// PutPermanent puts a value, keeps it announced, and remembers it across
// restarts.
func (s *Service) PutPermanent(ctx context.Context, hash dht.InfoHash, v *dht.Value) error {
	if err := s.store.PutDHTValue(ctx, StoredValue{Hash: hash[:], ValueID: v.ID, Packed: v.Pack()}); err != nil {
		return err
	}
	_, err := s.node.PutPermanent(ctx, hash, v)
	return err
}

func (s *Service) savePeers(ctx context.Context) {
	good := s.node.GoodNodes()
	peers := make([]Peer, 0, min(len(good), peersKept))
	for _, g := range good[:min(len(good), peersKept)] {
		peers = append(peers, Peer{Address: g.Addr.String(), NodeID: g.ID[:], LastSeen: g.LastReply})
	}
	if len(peers) == 0 {
		return
	}
	if err := s.store.ReplaceDHTPeers(ctx, peers); err != nil {
		s.log.Warn().Err(err).Msg("Saving the DHT peers failed")
	}
}

// AccountID is the bot's Jami ID, the account's: what a Jami user adds as a
// contact.
func (s *Service) AccountID() dht.InfoHash { return s.account.ID() }

// DeviceKeyID is the bot's device's key id, where its certificate is
// announced.
func (s *Service) DeviceKeyID() dht.InfoHash { return s.ident.KeyID() }

// Describe is a line for the status command.
func (s *Service) Describe() string {
	st := s.node.Stats()
	return fmt.Sprintf("Jami ID `%s`, node `%s`, %d nodes known (%d good), %d values stored for others",
		s.account.ID(), s.node.ID(), st.Nodes4+st.Nodes6, st.Good4+st.Good6, st.StoredValues)
}

// Ready is closed once the bot is on the DHT and takes connections.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Stop saves the peers and closes the node.
func (s *Service) Stop(ctx context.Context) {
	s.savePeers(ctx)
	s.cancel()
	if mgr := s.conns.Load(); mgr != nil {
		_ = mgr.Close()
	}
	_ = s.node.Close()
	s.wg.Wait()
}
