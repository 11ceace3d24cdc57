package devcluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/agora-sched/agora/freeport"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/tlsconf"
)

// Options configures a dev cluster. Zero values take defaults.
type Options struct {
	// Masters is the number of masters; default 3.
	Masters int
	// BasePort fixes ports (see the package doc); 0 picks free ports.
	BasePort int
	// DataDir holds the masters' data dirs; "" makes a temp dir that Stop
	// removes.
	DataDir string
	// GossipProfile defaults to gossip.ProfileLocal.
	GossipProfile gossip.Profile
	// RaftProfile defaults to master.RaftProfileFast.
	RaftProfile string
	// Logger receives every master's logs; nil means slog.Default().
	Logger *slog.Logger
	// MasterConfig, optional, adjusts each master's config before New.
	MasterConfig func(*master.Config)
	// TLS turns on mutual TLS: Start makes a CA in Dir()/tls and gives
	// each master and agent a certificate for its role (see tls.go).
	TLS bool
	// GossipKeyring, optional, encrypts gossip between the masters and
	// the agents; the first key is the primary.
	GossipKeyring [][]byte
	// Auth, optional, turns on authentication and ACLs (see auth.go).
	Auth *Auth
	// OnNew, optional, is called with each master (also on Restart) after
	// New and before Start: the place for test hooks (AddLeaderTaskForTest, OnApplyForTest).
	OnNew func(i int, m *master.Master)
}

// Cluster is a running dev cluster.
type Cluster struct {
	opts    Options
	dir     string
	tempDir bool
	ca      *tlsconf.CA // nil without TLS
	cfgs    []master.Config

	mu      sync.Mutex
	masters []*master.Master
	alive   []bool
	stopFns []func()
	stopped bool
}

// Start starts the masters and returns once all are listening (a leader
// may not be elected yet: see WaitLeader). ctx bounds startup only; the
// masters run until Stop.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Masters <= 0 {
		o.Masters = 3
	}
	if o.GossipProfile == "" {
		o.GossipProfile = gossip.ProfileLocal
	}
	if o.RaftProfile == "" {
		o.RaftProfile = master.RaftProfileFast
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Cluster{opts: o, dir: o.DataDir}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "agora-dev-")
		if err != nil {
			return nil, fmt.Errorf("devcluster: temp dir: %w", err)
		}
		c.dir, c.tempDir = d, true
	}
	if err := c.setupTLS(); err != nil {
		return nil, err
	}
	var httpAddrs, raftAddrs, gossipAddrs []string
	for i := range o.Masters {
		if o.BasePort > 0 {
			httpAddrs = append(httpAddrs, loopback(o.BasePort+i))
			raftAddrs = append(raftAddrs, loopback(o.BasePort+100+i))
			gossipAddrs = append(gossipAddrs, loopback(o.BasePort+200+i))
			continue
		}
		h, err := FreeTCPPort()
		if err != nil {
			return nil, err
		}
		r, err := FreeTCPPort()
		if err != nil {
			return nil, err
		}
		g, err := FreeGossipPort()
		if err != nil {
			return nil, err
		}
		httpAddrs, raftAddrs, gossipAddrs = append(httpAddrs, loopback(h)), append(raftAddrs, loopback(r)), append(gossipAddrs, loopback(g))
	}
	for i := range o.Masters {
		id := "m" + strconv.Itoa(i+1)
		cfg := master.Config{
			ID:              id,
			DataDir:         filepath.Join(c.dir, id),
			HTTPAddr:        httpAddrs[i],
			RaftAddr:        raftAddrs[i],
			GossipAddr:      gossipAddrs[i],
			Join:            gossipAddrs,
			BootstrapExpect: o.Masters,
			GossipProfile:   o.GossipProfile,
			RaftProfile:     o.RaftProfile,
			GossipKeyring:   o.GossipKeyring,
			Logger:          o.Logger,
			// A test cluster promotes a new master sooner than the
			// defaults (10s stable, polled every 2s).
			AutopilotStabilization: 2 * time.Second,
			AutopilotInterval:      time.Second,
		}
		if err := o.Auth.config(&cfg, c.dir); err != nil {
			return nil, err
		}
		if o.MasterConfig != nil {
			o.MasterConfig(&cfg)
		}
		if err := c.masterTLS(&cfg); err != nil {
			return nil, err
		}
		c.cfgs = append(c.cfgs, cfg)
		c.masters = append(c.masters, nil)
		c.alive = append(c.alive, false)
	}
	for i := range c.cfgs {
		if err := c.start(ctx, i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// FreeTCPPort returns a loopback TCP port no other user of package
// freeport holds, outside the kernel's ephemeral range.
func FreeTCPPort() (int, error) { return freeport.TCP("127.0.0.1") }

// FreeTCPPorts returns the first of n consecutive loopback ports, every
// one of them free for TCP and held like FreeTCPPort's: an agent's ports
// resource. Only the first being free is not enough: a task binds any port
// of the range, and a master's or another agent's port inside it made a
// pod fail on every launch (a NATS pod in a CI run).
func FreeTCPPorts(n int) (int, error) {
	offsets := make([]int, n)
	for i := range offsets {
		offsets[i] = i
	}
	return freeport.Block("127.0.0.1", offsets, false)
}

// FreeGossipPort returns a loopback port free for both TCP and UDP, held
// like FreeTCPPort's.
func FreeGossipPort() (int, error) { return freeport.TCPUDP("127.0.0.1") }

func (c *Cluster) start(ctx context.Context, i int) error {
	cfg := c.configs()[i]
	m, err := master.New(cfg)
	if err != nil {
		return err
	}
	if c.opts.OnNew != nil {
		c.opts.OnNew(i, m)
	}
	if err := m.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("devcluster: start %s: %w", cfg.ID, err)
	}
	c.mu.Lock()
	c.masters[i], c.alive[i] = m, true
	c.mu.Unlock()
	return nil
}

// Dir returns the directory holding the masters' data dirs.
func (c *Cluster) Dir() string { return c.dir }

// Masters returns the masters, killed ones included (index i is master i).
func (c *Cluster) Masters() []*master.Master {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*master.Master(nil), c.masters...)
}

// Master returns master i.
func (c *Cluster) Master(i int) *master.Master {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.masters[i]
}

// Alive reports whether master i is running (not killed or stopped).
func (c *Cluster) Alive(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alive[i]
}

// Configs returns the masters' configs.
func (c *Cluster) Configs() []master.Config { return c.configs() }

// configs copies the masters' configs (AddMaster appends to them).
func (c *Cluster) configs() []master.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]master.Config(nil), c.cfgs...)
}

// Addrs returns the masters' HTTP URLs.
func (c *Cluster) Addrs() []string {
	cfgs := c.configs()
	out := make([]string, len(cfgs))
	for i, cfg := range cfgs {
		out[i] = c.scheme() + cfg.HTTPAddr
	}
	return out
}

// JoinAddrs returns the masters' gossip addresses (what agents join).
func (c *Cluster) JoinAddrs() []string {
	cfgs := c.configs()
	out := make([]string, len(cfgs))
	for i, cfg := range cfgs {
		out[i] = cfg.GossipAddr
	}
	return out
}

// Leader returns the running master that leads with its leadership
// established, or nil.
func (c *Cluster) Leader() *master.Master {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.masters {
		if c.alive[i] && m.LeaderReady() {
			return m
		}
	}
	return nil
}

// LeaderIndex returns the index of Leader(), or -1.
func (c *Cluster) LeaderIndex() int {
	l := c.Leader()
	for i, m := range c.Masters() {
		if l != nil && m == l {
			return i
		}
	}
	return -1
}

// WaitLeader waits until a running master leads with its leadership
// established and every running master knows it.
func (c *Cluster) WaitLeader(ctx context.Context) (*master.Master, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if l := c.Leader(); l != nil && c.allAgree(l.ID()) {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("devcluster: no leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Cluster) allAgree(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.masters {
		if !c.alive[i] {
			continue
		}
		if lid, url := m.Leader(); lid != id || url == "" {
			return false
		}
	}
	return true
}

// Kill stops master i abruptly (no leave, no leadership transfer).
func (c *Cluster) Kill(i int) {
	m, alive := func() (*master.Master, bool) {
		c.mu.Lock()
		defer c.mu.Unlock() // a bad index must not leave the lock held (Stop would hang)
		m, alive := c.masters[i], c.alive[i]
		c.alive[i] = false
		return m, alive
	}()
	if alive {
		m.Kill()
	}
}

// Restart kills master i if it runs, then starts it again from its data
// dir with the same id and addresses.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	c.Kill(i)
	return c.start(ctx, i)
}

// onStop registers fn to run at the start of Stop (before the masters
// stop), for add-ons such as agents.
func (c *Cluster) onStop(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopFns = append(c.stopFns, fn)
}

// Stop shuts every running master down gracefully (in parallel) and
// removes the data dir when Start created it. Safe to call twice.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	fns := c.stopFns
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	c.StopMasters()
	// Agents stopped here keep their tasks (a stop is a restart); the
	// cluster's end is theirs too.
	KillTasksUnder(c.dir)
	if c.tempDir {
		// Volumes bind-mounted into sandboxes of tasks that outlive their
		// agents would keep the directory (and leak a mount each).
		_ = UnmountUnder(c.dir)
		_ = os.RemoveAll(c.dir)
	}
}

// StopMasters shuts every running master down gracefully and together
// (master.ShutdownAll: no leadership hand-over, nothing logged as an
// error), leaving data dirs in place (Restart brings them back).
func (c *Cluster) StopMasters() {
	c.mu.Lock()
	var running []*master.Master
	for i, m := range c.masters {
		if !c.alive[i] {
			continue
		}
		c.alive[i] = false
		running = append(running, m)
	}
	c.mu.Unlock()
	_ = master.ShutdownAll(running...)
}
