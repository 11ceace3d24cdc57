package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/agora-sched/agora/logging"
)

// Profile names a set of failure detection and gossip timings.
type Profile string

const (
	// ProfileLAN uses memberlist's LAN defaults and serf's defaults.
	ProfileLAN Profile = "lan"
	// ProfileLocal is agora's tuning for loopback tests and `agora dev`.
	ProfileLocal Profile = "local"
)

// Tag keys used on the wire. Extra tags may not use them.
const (
	tagRole = "role"
	tagID   = "id"
	tagHTTP = "http"
)

// Roles carried in Tags.Role.
const (
	RoleMaster = "master"
	RoleAgent  = "agent"
)

// ErrReservedTag is returned when Tags.Extra uses a key that the structured
// fields own.
var ErrReservedTag = errors.New("gossip: extra tag uses a reserved key")

// Config configures a Pool.
type Config struct {
	// NodeName is unique in the pool, e.g. "master/m1" or "agent/a1". A
	// process that restarts keeps its name.
	NodeName string

	// BindAddr is host:port for both UDP and TCP gossip. Port 0 picks a
	// free port; Pool.Addr reports it.
	BindAddr string

	// AdvertiseAddr, optional, is the host:port others should use to reach
	// us when it differs from BindAddr (NAT, 0.0.0.0 binds).
	AdvertiseAddr string

	// Tags are gossiped with our membership (at most ~500 bytes encoded).
	Tags Tags

	// Profile selects timings; empty means ProfileLAN.
	Profile Profile

	// Keyring, optional, enables gossip encryption. Each key is 16, 24 or
	// 32 bytes (AES-128/192/256); the first is the primary.
	Keyring [][]byte

	// Logger receives serf and memberlist logs at their own levels; nil
	// means slog.Default().
	Logger *slog.Logger

	// EventBuffer is the capacity of the Events channel; 0 means 1024.
	EventBuffer int

	// noPeriodicPushPull turns off memberlist's periodic full-state
	// exchange, so tests can show what gossip alone carries.
	noPeriodicPushPull bool
}

// Tags are what a member says about itself.
type Tags struct {
	// Role is RoleMaster or RoleAgent.
	Role string
	// ID is the master or agent id.
	ID string
	// HTTPAddr is where the member serves Connect RPCs.
	HTTPAddr string
	// Extra holds any other tags; keys "role", "id" and "http" are reserved.
	Extra map[string]string
}

func (t Tags) encode() (map[string]string, error) {
	m := make(map[string]string, 3+len(t.Extra))
	for k, v := range t.Extra {
		if k == tagRole || k == tagID || k == tagHTTP {
			return nil, fmt.Errorf("%w: %q", ErrReservedTag, k)
		}
		m[k] = v
	}
	if t.Role != "" {
		m[tagRole] = t.Role
	}
	if t.ID != "" {
		m[tagID] = t.ID
	}
	if t.HTTPAddr != "" {
		m[tagHTTP] = t.HTTPAddr
	}
	return m, nil
}

func decodeTags(m map[string]string) Tags {
	t := Tags{Role: m[tagRole], ID: m[tagID], HTTPAddr: m[tagHTTP]}
	for k, v := range m {
		if k == tagRole || k == tagID || k == tagHTTP {
			continue
		}
		if t.Extra == nil {
			t.Extra = make(map[string]string)
		}
		t.Extra[k] = v
	}
	return t
}

// EventType is the kind of membership change.
type EventType int

// Membership changes, translated from serf's member events.
const (
	EventJoin EventType = iota + 1
	EventUpdate
	EventLeave
	EventFailed
	EventReap
)

// String returns "join", "update", "leave", "failed" or "reap".
func (e EventType) String() string {
	switch e {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventReap:
		return "reap"
	default:
		return "EventType(" + strconv.Itoa(int(e)) + ")"
	}
}

// Member is one member of the pool as we currently see it.
type Member struct {
	// Name is the member's NodeName.
	Name string
	// Tags are the member's last gossiped tags.
	Tags Tags
	// Addr is the member's gossip host:port.
	Addr string
	// Status is the member's state as this member last heard it.
	Status Status
}

// Status is a member's state in the pool.
type Status string

// Member states, as serf reports them.
const (
	// StatusAlive is a member that answers probes (or whose failure has
	// not been confirmed yet).
	StatusAlive Status = "alive"
	// StatusLeaving is a member that announced a graceful leave.
	StatusLeaving Status = "leaving"
	// StatusLeft is a member that left gracefully.
	StatusLeft Status = "left"
	// StatusFailed is a member that stopped answering probes.
	StatusFailed Status = "failed"
	// StatusNone is a member whose state serf does not know.
	StatusNone Status = "none"
)

func status(s serf.MemberStatus) Status {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	default:
		return StatusNone
	}
}

// Event is one membership change of one member.
type Event struct {
	Type   EventType
	Member Member
}

// Pool is our membership in the gossip pool.
type Pool struct {
	serf    *serf.Serf
	keyring *memberlist.Keyring // nil without encryption
	log     *slog.Logger
	serfCh  chan serf.Event
	events  chan Event

	dropped atomic.Uint64
	stop    chan struct{}
	pumped  chan struct{}

	shutdownOnce sync.Once
}

// New starts a member and returns it, alone in its own pool until Join.
func New(cfg Config) (*Pool, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("gossip: node name is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.NodeName)
	tags, err := cfg.Tags.encode()
	if err != nil {
		return nil, err
	}

	sc, err := serfConfig(cfg.Profile)
	if err == nil && cfg.noPeriodicPushPull {
		sc.MemberlistConfig.PushPullInterval = 0
	}
	if err != nil {
		return nil, err
	}
	mc := sc.MemberlistConfig
	sc.NodeName = wireName(cfg.NodeName)
	mc.Name = sc.NodeName
	sc.Tags = tags
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if len(cfg.Keyring) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keyring, cfg.Keyring[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}

	std := logging.StdLog(log.With("component", "gossip"), "")
	sc.LogOutput, mc.LogOutput = nil, nil
	sc.Logger, mc.Logger = std, std

	size := cfg.EventBuffer
	if size <= 0 {
		size = 1024
	}
	p := &Pool{
		log:    log,
		serfCh: make(chan serf.Event, 256),
		events: make(chan Event, size),
		stop:   make(chan struct{}),
		pumped: make(chan struct{}),
	}
	sc.EventCh = p.serfCh
	go p.pump()

	s, err := serf.Create(sc)
	if err != nil {
		close(p.stop)
		<-p.pumped
		return nil, fmt.Errorf("gossip: start member %s: %w", cfg.NodeName, err)
	}
	p.serf = s
	p.keyring = mc.Keyring
	return p, nil
}

// serfConfig returns serf's config for a profile.
func serfConfig(profile Profile) (*serf.Config, error) {
	sc := serf.DefaultConfig()
	sc.DisableCoordinates = true // agora does not use network coordinates
	switch profile {
	case ProfileLAN, "":
	case ProfileLocal:
		mc := sc.MemberlistConfig
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.IndirectChecks = 2
		// Suspicion 4x and gossip every 100 ms to 3 members (it was 3x,
		// 50 ms to 4): with 100 agent processes and 3 masters on 2 cores,
		// the tighter timings let the join storm of start-up starve
		// members past their probe timeout, whose suspicions and
		// refutations kept the machine busy and members flapping failed
		// and alive for up to a minute (11,659 member-failed events in
		// one start, three agents marked UNREACHABLE that were not down;
		// 98-145 in calmer starts). Now none, also with a core eaten by
		// another process (RELIABILITY.md).
		// Failure detection by gossip alone costs ~0.3 s more: p50 1.3 s
		// at 3 members, 1.7 s at 50 (BenchmarkFailureDetection); a killed
		// agent's closed connections find it sooner (master's hints).
		mc.SuspicionMult = 4
		mc.SuspicionMaxTimeoutMult = 3
		mc.AwarenessMaxMultiplier = 4
		mc.GossipInterval = 100 * time.Millisecond
		mc.GossipNodes = 3
		mc.RetransmitMult = 4
		mc.PushPullInterval = 5 * time.Second
		mc.GossipToTheDeadTime = 5 * time.Second
		mc.TCPTimeout = time.Second
		mc.DeadNodeReclaimTime = time.Nanosecond // a dead member's name is free at once
		// memberlist compresses every packet, pings and acks included, with
		// a fresh LZW writer (a 64 KiB table) each: on loopback that bought
		// nothing and cost about half of an idle member's CPU (compression,
		// decompression and the garbage collection of those tables). A
		// member still reads compressed packets from others.
		mc.EnableCompression = false
		sc.ReapInterval = time.Second
		sc.ReconnectInterval = time.Second
		sc.ReconnectTimeout = time.Minute
		sc.TombstoneTimeout = time.Minute
		sc.FlapTimeout = 5 * time.Second
		// Leave waits up to BroadcastTimeout for the intent to go out
		// (the whole of it when nobody is left to hear it), again for
		// memberlist's leave, then LeavePropagateDelay: ~1.2 s at worst.
		sc.LeavePropagateDelay = 200 * time.Millisecond
		sc.BroadcastTimeout = 500 * time.Millisecond
		sc.RecentIntentTimeout = time.Minute
	default:
		return nil, fmt.Errorf("gossip: unknown profile %q (want %q or %q)", profile, ProfileLAN, ProfileLocal)
	}
	return sc, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("parse %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("parse %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// pump moves serf's events to our channel. Serf sends member events while
// holding its member lock, so this loop never blocks on the reader: when
// the events channel is full the oldest event is discarded.
func (p *Pool) pump() {
	defer close(p.pumped)
	defer close(p.events)
	for {
		select {
		case <-p.stop:
			return
		case e := <-p.serfCh:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue // user events and queries are not ours
			}
			typ, ok := translate(me.Type)
			if !ok {
				continue
			}
			for _, m := range me.Members {
				p.push(Event{Type: typ, Member: member(m)})
			}
		}
	}
}

func (p *Pool) push(e Event) {
	for {
		select {
		case p.events <- e:
			return
		default:
		}
		select {
		case <-p.events:
			if p.dropped.Add(1) == 1 {
				p.log.Warn("gossip event reader is behind; dropping oldest events")
			}
		default:
		}
	}
}

func translate(t serf.EventType) (EventType, bool) {
	switch t {
	case serf.EventMemberJoin:
		return EventJoin, true
	case serf.EventMemberUpdate:
		return EventUpdate, true
	case serf.EventMemberLeave:
		return EventLeave, true
	case serf.EventMemberFailed:
		return EventFailed, true
	case serf.EventMemberReap:
		return EventReap, true
	default:
		return 0, false
	}
}

// wireName is the name a member goes by inside serf and memberlist. Serf
// reconnects to a failed member by joining "name/host:port", and
// memberlist splits that at the first slash, so a name holding a slash
// (ours do: "agent/a1") could never be reconnected and a healed partition
// stayed split until someone else gossiped it back. Slashes (and the
// escape character) are therefore percent-escaped on the wire.
func wireName(name string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(name)
}

// localName reverses wireName.
func localName(wire string) string {
	if !strings.Contains(wire, "%") {
		return wire
	}
	var b strings.Builder
	for i := 0; i < len(wire); i++ {
		if wire[i] == '%' && i+2 < len(wire) {
			switch wire[i+1 : i+3] {
			case "2F":
				b.WriteByte('/')
				i += 2
				continue
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			}
		}
		b.WriteByte(wire[i])
	}
	return b.String()
}

func member(m serf.Member) Member {
	return Member{
		Name:   localName(m.Name),
		Tags:   decodeTags(m.Tags),
		Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
		Status: status(m.Status),
	}
}

// Addr returns our gossip host:port as advertised to the pool (the actual
// port when BindAddr asked for port 0).
func (p *Pool) Addr() string {
	n := p.serf.Memberlist().LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// isSelf reports whether addr names our own gossip endpoint.
func (p *Pool) isSelf(addr string) bool {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	local := p.serf.Memberlist().LocalNode()
	if ps != strconv.Itoa(int(local.Port)) {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return false
		}
		for _, cand := range ips {
			if cand.Equal(local.Addr) {
				return true
			}
		}
		return false
	}
	return ip.Equal(local.Addr) || ip.IsUnspecified()
}

func (p *Pool) others(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if a != "" && !p.isSelf(a) {
			out = append(out, a)
		}
	}
	return out
}

// Join contacts addrs (our own address is skipped) and returns how many
// answered. It fails only when none did; with nothing but ourselves to
// contact it returns (0, nil).
func (p *Pool) Join(addrs []string) (int, error) {
	targets := p.others(addrs)
	if len(targets) == 0 {
		return 0, nil
	}
	n, err := p.serf.Join(targets, true)
	if n == 0 && err != nil {
		return 0, fmt.Errorf("gossip: join %v: %w", targets, err)
	}
	return n, nil
}

// JoinRetry calls Join with exponential backoff (100 ms doubling to 2 s)
// until at least one other member answers, or ctx ends. A list holding only
// our own address returns nil at once: we are the first member.
func (p *Pool) JoinRetry(ctx context.Context, addrs []string) error {
	if len(p.others(addrs)) == 0 {
		return nil
	}
	backoff := 100 * time.Millisecond
	for {
		n, err := p.Join(addrs)
		if n > 0 {
			return nil
		}
		p.log.Debug("gossip join failed; retrying", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gossip: join %v: %w (last error: %v)", addrs, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Members returns every member we know of, including ourselves and failed
// or left members not yet reaped, sorted by name.
func (p *Pool) Members() []Member {
	ms := p.serf.Members()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, member(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ErrNoAnswer is wrapped by Ping when the member did not answer in time.
var ErrNoAnswer = errors.New("gossip: no answer to ping")

// Ping probes one member directly, outside the failure detector: it sends
// a memberlist ping to addr (host:port of the member's gossip endpoint)
// and waits for the ack, retrying once per probe timeout of the profile
// (100 ms local, 500 ms LAN) until one answers or ctx ends. name is the
// member's NodeName; only a member by that name answers (empty: whoever
// listens at addr). It returns the round-trip time of the answered ping.
// The pool's view of the member is not changed by it.
func (p *Pool) Ping(ctx context.Context, name, addr string) (time.Duration, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, fmt.Errorf("gossip: ping %s: %w", addr, err)
	}
	ml := p.serf.Memberlist()
	var last error
	for ctx.Err() == nil {
		start := time.Now()
		rtt, err := ml.Ping(wireName(name), ua)
		if err == nil {
			if rtt <= 0 {
				// memberlist stamps the send after sending; on loopback the
				// ack can be stamped first. Report the time we waited.
				rtt = max(time.Since(start), time.Nanosecond)
			}
			return rtt, nil
		}
		last = err
		var nr memberlist.NoPingResponseError
		if !errors.As(err, &nr) {
			// A send error (no route, ...) returns at once: pace retries.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	return 0, fmt.Errorf("gossip: ping %s at %s: %w (%v)", name, addr, ErrNoAnswer, last)
}

// Events returns the membership change channel. It is closed by Shutdown.
func (p *Pool) Events() <-chan Event { return p.events }

// Dropped returns how many events were discarded because the reader of
// Events fell behind.
func (p *Pool) Dropped() uint64 { return p.dropped.Load() }

// LocalMember returns ourselves.
func (p *Pool) LocalMember() Member { return member(p.serf.LocalMember()) }

// SetTags replaces our tags and gossips them (others see EventUpdate).
func (p *Pool) SetTags(t Tags) error {
	m, err := t.encode()
	if err != nil {
		return err
	}
	if err := p.serf.SetTags(m); err != nil {
		return fmt.Errorf("gossip: set tags: %w", err)
	}
	return nil
}

// Leave announces a graceful departure and waits for it to propagate. The
// member must still be shut down afterwards. It is bounded by the
// profile's broadcast timeout: with ProfileLocal it returns within about
// 1.2 s even when no other member is left to hear it (ProfileLAN: serf's
// defaults, about 11 s).
func (p *Pool) Leave() error {
	if err := p.serf.Leave(); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Shutdown stops the member and closes the Events channel. Without a
// prior Leave, the rest of the pool sees us fail. It is safe to call twice.
func (p *Pool) Shutdown() error {
	var err error
	p.shutdownOnce.Do(func() {
		if e := p.serf.Shutdown(); e != nil {
			err = fmt.Errorf("gossip: shutdown: %w", e)
		}
		close(p.stop)
		<-p.pumped
	})
	return err
}
