package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/store"
)

const dhtUsage = `Usage: voipbot dht [-bootstrap host:port] [-listen addr] [-network id] [-timeout d] [-key-bits n] <command> [args]

Commands (keys are strings, hashed with SHA-1 as dhtnode does, or 40 hex digits):
  bootstrap                     join and print what the node knows
  ping <host:port>              ask a node for its id
  get <key>                     print the values at key
  put <key> <text>              put a plain value
  put-signed <key> <text>       put a value signed by this run's key
  put-encrypted <key> <to-key-id> <text>
                                put a value encrypted for the key whose certificate is at to-key-id
  listen <key>                  print values put at key until interrupted
  whoami                        print this node's id and key id
`

// dhtCLI runs `voipbot dht …`: the first tool for debugging a DHT (and what
// the interop tests drive). It prints values and errors plainly.
func dhtCLI(args []string, defaults dhtDefaults, stdout, stderr io.Writer) int {
	configured := defaults.jami
	flags := flag.NewFlagSet("voipbot dht", flag.ContinueOnError)
	flags.SetOutput(stderr)
	bootstrap := flags.String("bootstrap", strings.Join(configured.Bootstrap, ","), "node to join, host:port (comma-separated for several; default: jami.bootstrap of the configuration)")
	listen := flags.String("listen", "0.0.0.0:0", "UDP address of this node")
	network := flags.Uint("network", uint(configured.Network), "network id (Jami's is 0; default: jami.network)")
	timeout := flags.Duration("timeout", 30*time.Second, "how long a command may take (not listen)")
	keyBits := flags.Int("key-bits", 4096, "size of this run's RSA key for signed and encrypted values (Jami's are 4096)")
	flags.Usage = func() { _, _ = fmt.Fprint(stderr, dhtUsage) }
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() == 0 {
		flags.Usage()
		return 2
	}
	cmd, rest := flags.Arg(0), flags.Args()[1:]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd != "listen" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	if err := runDHT(ctx, dhtOptions{cmd: cmd, args: rest, bootstrap: *bootstrap, listen: *listen, network: uint32(*network),
		keyBits: *keyBits, account: defaults.account}, stdout, stderr); err != nil {
		_, _ = fmt.Fprintf(stderr, "voipbot dht %s: %v\n", cmd, err)
		if errors.Is(err, errUsage) {
			flags.Usage()
			return 2
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("wrong arguments")

type dhtOptions struct {
	cmd       string
	args      []string
	bootstrap string
	listen    string
	network   uint32
	keyBits   int
	account   *jami.Account // the bot's, if its database has one
}

func runDHT(ctx context.Context, o dhtOptions, stdout, stderr io.Writer) error {
	cmd, args, bootstrap, listen, network := o.cmd, o.args, o.bootstrap, o.listen, o.network
	want := map[string]int{"bootstrap": 0, "ping": 1, "get": 1, "put": 2, "put-signed": 2, "put-encrypted": 3, "listen": 1, "whoami": 0}
	n, ok := want[cmd]
	if !ok {
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	if len(args) != n {
		return fmt.Errorf("%w: %s takes %d argument(s)", errUsage, cmd, n)
	}
	// A command-line run only asks: as a client, other nodes keep it out of
	// their routing tables (it is gone a moment later).
	cfg := dht.Config{Network: network, Client: true}
	if strings.Contains(listen, "[") || strings.Count(listen, ":") > 1 {
		cfg.Listen6 = listen
	} else {
		cfg.Listen4 = listen
	}
	node, err := dht.New(cfg, zerolog.New(stderr).Level(zerolog.WarnLevel))
	if err != nil {
		return err
	}
	node.Start(ctx)
	defer func() { _ = node.Close() }()

	var key *rsa.PrivateKey
	switch {
	case o.account != nil:
		// The bot's own device: values signed and decrypted as the bot.
		key = o.account.DeviceKey
	case cmd == "put-signed" || cmd == "put-encrypted" || cmd == "whoami":
		// A key of this run: signed values need an owner.
		if key, err = rsa.GenerateKey(rand.Reader, o.keyBits); err != nil {
			return err
		}
	}
	var secure *dht.Secure
	if key != nil {
		secure = dht.NewSecure(node, &dht.Identity{Key: key})
	}
	if cmd == "ping" {
		addr, err := resolve(args[0])
		if err != nil {
			return err
		}
		start := time.Now()
		id, err := node.Ping(ctx, addr)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "%s is node %s (%s)\n", addr, id, time.Since(start).Round(time.Microsecond))
		return nil
	}
	if cmd == "whoami" {
		id, err := dht.PublicKeyID(&key.PublicKey)
		if err != nil {
			return err
		}
		whose := "this run's key"
		if o.account != nil {
			whose = "the bot's device"
			_, _ = fmt.Fprintf(stdout, "Jami ID       %s (the bot's account)\n", o.account.ID())
		}
		_, _ = fmt.Fprintf(stdout, "node id       %s\npublic key id %s (%s)\naddress       %s\n",
			node.ID(), id, whose, firstValid(node.Addr4(), node.Addr6()))
		return nil
	}
	if bootstrap == "" {
		return fmt.Errorf("%w: -bootstrap host:port is needed (or jami.bootstrap in the configuration)", errUsage)
	}
	var addrs []netip.AddrPort
	for _, b := range strings.Split(bootstrap, ",") {
		a, err := resolve(strings.TrimSpace(b))
		if err != nil {
			return err
		}
		addrs = append(addrs, a)
	}
	if err = node.Bootstrap(ctx, addrs...); err != nil {
		return err
	}
	switch cmd {
	case "bootstrap":
		s := node.Stats()
		_, _ = fmt.Fprintf(stdout, "node %s joined: %d IPv4 nodes known (%d good), %d IPv6 (%d good)\n", node.ID(), s.Nodes4, s.Good4, s.Nodes6, s.Good6)
	case "get":
		var values []*dht.Value
		if secure != nil {
			values, err = secure.Get(ctx, keyOf(args[0]))
		} else {
			values, err = node.Get(ctx, keyOf(args[0]))
		}
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "%d value(s) at %s\n", len(values), keyOf(args[0]))
		for _, v := range values {
			printValue(stdout, v)
		}
	case "put":
		res, err := node.Put(ctx, keyOf(args[0]), &dht.Value{ID: dht.RandomValueID(), Data: []byte(args[1])})
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "stored on %d node(s) after %d hop(s)\n", res.Stored, res.Hops)
	case "put-signed":
		res, err := secure.PutSigned(ctx, keyOf(args[0]), &dht.Value{Data: []byte(args[1])})
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "signed value stored on %d node(s)\n", res.Stored)
	case "put-encrypted":
		to, err := dht.ParseHash(args[1])
		if err != nil {
			return err
		}
		_, pub, err := secure.FindCertificate(ctx, to)
		if err != nil {
			return err
		}
		res, err := secure.PutEncrypted(ctx, keyOf(args[0]), pub, &dht.Value{Data: []byte(args[2])})
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "encrypted value stored on %d node(s)\n", res.Stored)
	case "listen":
		values := make(chan *dht.Value, 64)
		deliver := func(v *dht.Value) {
			select {
			case values <- v:
			default:
			}
		}
		listen := node.Listen
		if secure != nil {
			listen = secure.Listen // values for the bot decrypted, as get does
		}
		if err := listen(ctx, keyOf(args[0]), deliver); err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "listening at %s\n", keyOf(args[0]))
		for {
			select {
			case <-ctx.Done():
				return nil
			case v := <-values:
				printValue(stdout, v)
			}
		}
	}
	return nil
}

// dhtDefaults is what `voipbot dht` takes from the bot's configuration and
// database when there are some: bootstrap nodes and network, and the bot's
// own Jami device to sign, decrypt and show as. The commands work without.
type dhtDefaults struct {
	jami    jami.Config
	account *jami.Account // nil: a key of this run
}

func configuredDHT(path string, environ []string) dhtDefaults {
	if _, err := os.Stat(path); err != nil {
		return dhtDefaults{}
	}
	cfg, err := voipbot.Load(path, environ)
	if err != nil {
		return dhtDefaults{}
	}
	d := dhtDefaults{jami: cfg.Jami}
	if _, err = os.Stat(cfg.Database.Path); err != nil {
		return d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg.Database, zerolog.Nop())
	if err != nil {
		return d
	}
	defer func() { _ = st.Close() }()
	if saved, err := st.DHTNode(ctx); err == nil && saved != nil {
		d.account, _ = jami.LoadStored(saved.AccountArchive, saved.KeyPEM, saved.CertPEM)
	}
	return d
}

// keyOf reads a key: 40 hex digits as a hash, anything else hashed.
func keyOf(s string) dht.InfoHash {
	if h, err := dht.ParseHash(s); err == nil {
		return h
	}
	return dht.HashString(s)
}

func resolve(hostport string) (netip.AddrPort, error) {
	a, err := net.ResolveUDPAddr("udp", hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", hostport, err)
	}
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func firstValid(as ...netip.AddrPort) netip.AddrPort {
	for _, a := range as {
		if a.IsValid() {
			return a
		}
	}
	return netip.AddrPort{}
}

func printValue(w io.Writer, v *dht.Value) {
	data := string(v.Data)
	if !utf8.ValidString(data) {
		data = "hex:" + hex.EncodeToString(v.Data)
	} else {
		data = strconv.Quote(data)
	}
	kind := "plain"
	switch {
	case v.Encrypted():
		kind = "encrypted (not for us)"
	case v.Signed():
		id, _ := dht.PublicKeyID(v.Owner)
		kind = fmt.Sprintf("signed by %s seq %d", id, v.Seq)
	}
	_, _ = fmt.Fprintf(w, "  id %016x type %d %s: %s\n", v.ID, v.Type, kind, data)
}
