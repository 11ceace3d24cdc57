package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	"go.etcd.io/bbolt"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/logging"
	"github.com/agora-sched/agora/raftlog"
	"github.com/agora-sched/agora/tlsconf"
)

// Raft profiles accepted in Config.RaftProfile.
const (
	// RaftProfileDefault uses raft.DefaultConfig timings.
	RaftProfileDefault = "default"
	// RaftProfileFast uses 600 ms heartbeat and election timeouts and a
	// 400 ms leader lease, for loopback clusters. (It was 300/300/150 ms:
	// on a loaded 2-core machine under the race detector a leader stalled
	// past its 150 ms lease now and then and stepped down mid-test, the
	// cause of rare red test runs.)
	RaftProfileFast = "fast"
)

// Gossip tag keys a master sets in gossip.Tags.Extra.
const (
	// TagRaft carries the master's Raft address.
	TagRaft = "raft"
	// TagCluster carries the cluster name.
	TagCluster = "cluster"
)

// Config configures a Master. Zero values take the defaults documented on
// each field.
type Config struct {
	// ID is the master's stable id and its Raft server id. Required.
	ID string
	// DataDir holds the Raft log, stable store and snapshots. Required.
	DataDir string
	// HTTPAddr is host:port for the HTTP listener (port 0 picks one).
	HTTPAddr string
	// RaftAddr is host:port for the Raft TCP transport; it must be an
	// address other masters can reach (not 0.0.0.0).
	RaftAddr string
	// GossipAddr is host:port for gossip (UDP and TCP).
	GossipAddr string
	// Join lists gossip addresses of masters; retried until one answers.
	// Our own address may be in it.
	Join []string
	// BootstrapExpect is how many masters must be alive in gossip before
	// the one with the lowest id bootstraps Raft. 0 never bootstraps (the
	// master waits to be added to an existing cluster).
	BootstrapExpect int
	// Cluster names the cluster; default "agora". Agents must match.
	Cluster string
	// GossipProfile selects gossip timings; default gossip.ProfileLAN.
	GossipProfile gossip.Profile
	// RaftProfile is RaftProfileDefault (the default) or RaftProfileFast.
	RaftProfile string
	// AgentGoneTimeout is how long an unreachable agent is kept before it
	// is marked gone; default 10m.
	AgentGoneTimeout time.Duration
	// AgentReregisterTimeout is how long an agent that stopped for a
	// restart (RESTARTING) may stay away before it is marked unreachable,
	// counted from its goodbye (or the start of leadership, if later);
	// default 10m, as Mesos' agent_reregister_timeout.
	AgentReregisterTimeout time.Duration
	// AgentRemovalRate caps unreachable markings per second; default 10.
	AgentRemovalRate float64
	// LivenessGrace delays liveness decisions after winning leadership;
	// default 10s with the lan gossip profile, 3s with local.
	LivenessGrace time.Duration
	// FrameworkReconnectGrace is how long a new leader waits for a
	// framework whose stream was on another master to subscribe again
	// before it records the framework disconnected (which starts its
	// failover timeout and rescinds its offers); default the larger of
	// LivenessGrace and 10s: a framework may first have to pass over a
	// silent master (one client attempt deadline, 5s) and back off.
	FrameworkReconnectGrace time.Duration
	// OfferTimeout is how long an offer lives; default 60s.
	OfferTimeout time.Duration
	// HeartbeatInterval is the framework stream heartbeat; default 15s.
	HeartbeatInterval time.Duration
	// DefaultFailoverTimeout applies when a framework gives 0; default
	// one week.
	DefaultFailoverTimeout time.Duration
	// AllocationInterval batches allocation rounds; default 5ms.
	AllocationInterval time.Duration
	// PreemptionWindow is how long, after the last victim of a preemption
	// ended, the freed resources are offered to the demanding framework
	// only; default 10s.
	PreemptionWindow time.Duration
	// TLS, optional, turns on mutual TLS: the HTTP listener, the Raft
	// transport and calls to other masters (see tls.go). Its certificate
	// must be valid for master.<Cluster>.agora. Nil means plaintext.
	TLS *tlsconf.Bundle
	// GossipKeyring, optional, encrypts gossip (AES-GCM); every key is
	// 16, 24 or 32 bytes and the first is the primary. Rotate keys online
	// with the GossipKeyring operator call.
	GossipKeyring [][]byte
	// Limits bound request sizes, accepts, tasks and frameworks, and the
	// rates of framework calls per principal (limits.go).
	Limits Limits
	// Auth, optional, turns on authentication: every API call must carry
	// a bearer token or client certificate that Auth maps to a principal
	// (see auth.go). Nil means callers are not authenticated.
	Auth *auth.Authenticator
	// ACL, optional, restricts what each principal may do; it needs Auth.
	// Nil runs open: every caller may do everything (one WARN at start).
	ACL *auth.ACL
	// AuditLog, optional, is a file to which every write and every refused
	// call is appended as a JSON line (see audit.go).
	AuditLog string
	// AutopilotStabilization is how long a new master must be healthy (in
	// gossip, heard from, caught up) as a non-voter before autopilot makes
	// it a voter; default 10s.
	AutopilotStabilization time.Duration
	// AutopilotDeadServerCleanup is how long a master may be failed or
	// gone in gossip before autopilot removes it from the Raft
	// configuration (never a majority of the voters, never below
	// AutopilotMinQuorum); default 5m, negative never removes.
	AutopilotDeadServerCleanup time.Duration
	// AutopilotLastContactThreshold: a master the leader has not heard
	// from for longer is unhealthy; default 2s.
	AutopilotLastContactThreshold time.Duration
	// AutopilotMaxTrailingLogs: a master more entries behind the leader
	// is unhealthy; default 500.
	AutopilotMaxTrailingLogs uint64
	// AutopilotMinQuorum: autopilot never removes a dead master when
	// fewer voters would remain; default 0 (only the majority rule).
	AutopilotMinQuorum uint
	// AutopilotInterval is how often autopilot polls the masters and
	// reconciles the configuration; default 2s.
	AutopilotInterval time.Duration
	// Logger receives the master's logs, raft's and gossip's included;
	// nil means slog.Default().
	Logger *slog.Logger
	// Now is the master's clock: it stamps every command and drives the
	// leader's deadlines; nil means time.Now. Tests inject their own.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.ID == "" {
		return errors.New("master: config: id is required")
	}
	if c.DataDir == "" {
		return errors.New("master: config: data dir is required")
	}
	if c.HTTPAddr == "" || c.RaftAddr == "" || c.GossipAddr == "" {
		return errors.New("master: config: http, raft and gossip addresses are required")
	}
	if c.BootstrapExpect < 0 {
		return errors.New("master: config: bootstrap expect must not be negative")
	}
	if c.Cluster == "" {
		c.Cluster = "agora"
	}
	if c.GossipProfile == "" {
		c.GossipProfile = gossip.ProfileLAN
	}
	if c.RaftProfile == "" {
		c.RaftProfile = RaftProfileDefault
	}
	if c.RaftProfile != RaftProfileDefault && c.RaftProfile != RaftProfileFast {
		return fmt.Errorf("master: config: unknown raft profile %q (want %q or %q)", c.RaftProfile, RaftProfileDefault, RaftProfileFast)
	}
	if c.AgentGoneTimeout <= 0 {
		c.AgentGoneTimeout = 10 * time.Minute
	}
	if c.AgentReregisterTimeout <= 0 {
		c.AgentReregisterTimeout = 10 * time.Minute
	}
	if c.AgentRemovalRate <= 0 {
		c.AgentRemovalRate = 10
	}
	if c.LivenessGrace <= 0 {
		c.LivenessGrace = 10 * time.Second
		if c.GossipProfile == gossip.ProfileLocal {
			c.LivenessGrace = 3 * time.Second
		}
	}
	if c.FrameworkReconnectGrace <= 0 {
		c.FrameworkReconnectGrace = max(c.LivenessGrace, 10*time.Second)
	}
	if c.OfferTimeout <= 0 {
		c.OfferTimeout = 60 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 15 * time.Second
	}
	if c.DefaultFailoverTimeout <= 0 {
		c.DefaultFailoverTimeout = 7 * 24 * time.Hour
	}
	if c.AllocationInterval <= 0 {
		c.AllocationInterval = 5 * time.Millisecond
	}
	if c.PreemptionWindow <= 0 {
		c.PreemptionWindow = 10 * time.Second
	}
	c.Limits.setDefaults()
	c.autopilotDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ACL != nil && c.Auth == nil {
		return errors.New("master: config: an ACL needs authentication (an auth file)")
	}
	return c.checkTLS()
}

// Master is one agora master. Build it with New, then Start it.
type Master struct {
	stopping atomic.Bool // set when teardown starts; Apply refuses from then on
	// clusterStop is set by ShutdownAll: the whole cluster is going away,
	// so there is no one to hand leadership to.
	clusterStop atomic.Bool
	cfg         Config
	log         *slog.Logger
	fsm         *fsm.FSM

	mu         sync.Mutex
	started    bool
	applyHooks []func(index uint64, events []fsm.Event)
	subs       map[int]chan gossip.Event
	nextSub    int

	// Set by Start.
	store   *raftlog.Store
	raft    *raft.Raft
	trans   *RaftTransport
	pool    *gossip.Pool
	httpLn  net.Listener
	srv     *http.Server
	httpURL string
	hadRaft bool
	metrics *masterMetrics

	agentSrv *agentServer
	schedSrv *schedulerServer
	leader   *leader
	batch    *batcher     // coalesces batchable writes (coalesce.go)
	explain  explainStore // the last traced allocation round (explain.go)
	verdicts verdictStore // the last preemption pass (preemption.go)
	sec      *security    // authentication, ACL and audit log (auth.go)
	// autopilot runs while we lead (autopilot.go); nil otherwise.
	autopilot  atomic.Pointer[autopilot.Autopilot]
	apDelegate atomic.Pointer[apDelegate]
	// snaps is Raft's snapshot store (snapshot_api.go reads it).
	snaps raft.SnapshotStore
	// releadCh asks the leader loop to restart the leader work (after a
	// snapshot restore replaced the state under it).
	releadCh chan struct{}
	// watch starts an election at once when the leader's process is gone
	// (leaderwatch.go).
	watch *leaderWatch

	// readyTerm is the term in which our leadership barrier completed.
	readyTerm atomic.Uint64
	readyMu   sync.Mutex
	readyCh   chan struct{}

	reconcileCh chan struct{}
	bootCh      chan struct{}

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
	stopped  chan struct{}
	// quit is closed when the master begins to stop (before Raft shuts
	// down): waits on Raft futures end then (see waitFuture).
	quit     chan struct{}
	quitOnce sync.Once
}

// New validates cfg and builds a Master. Nothing is bound until Start.
func New(cfg Config) (*Master, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := &Master{
		cfg:         cfg,
		log:         cfg.Logger.With("master", cfg.ID),
		subs:        make(map[int]chan gossip.Event),
		readyCh:     make(chan struct{}),
		reconcileCh: make(chan struct{}, 1),
		bootCh:      make(chan struct{}, 1),
		releadCh:    make(chan struct{}, 1),
		stopped:     make(chan struct{}),
		quit:        make(chan struct{}),
	}
	m.httpURL = m.urlOf(cfg.HTTPAddr)
	m.fsm = fsm.New(fsm.Config{Logger: m.log.With("component", "fsm"), OnApply: m.dispatchApply})
	m.sec = newSecurity(cfg)
	m.leader = newLeader(m)
	m.watch = newLeaderWatch(m)
	m.batch = newBatcher(m)
	m.agentSrv = &agentServer{m: m}
	m.schedSrv = newSchedulerServer(m)
	m.applyHooks = append(m.applyHooks, m.schedSrv.OnApply)
	m.metrics = newMasterMetrics(m)
	m.schedSrv.metrics = m.metrics
	m.applyHooks = append(m.applyHooks, m.metrics.onApply)
	return m, nil
}

// NewID returns a random 128-bit id in hex.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("master: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

func (m *Master) dispatchApply(index uint64, events []fsm.Event) {
	// applyHooks is frozen once Start has run and Apply cannot run before.
	for _, fn := range m.applyHooks {
		fn(index, events)
	}
}

// Start opens the Raft storage, starts Raft, binds the HTTP listener,
// joins the gossip pool in the background and starts the bootstrap and
// leadership loops. Listeners are bound when it returns. Cancelling ctx
// shuts the master down gracefully.
func (m *Master) Start(ctx context.Context) (err error) {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("master: already started")
	}
	m.started = true
	m.mu.Unlock()

	life, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	defer func() {
		if err != nil {
			m.teardown(false)
		}
	}()

	if err := m.startRaft(); err != nil {
		return err
	}
	m.goFn(m.watchLeaders)
	ln, err := net.Listen("tcp", m.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("master: listen http %s: %w", m.cfg.HTTPAddr, err)
	}
	m.httpLn = ln
	m.httpURL = m.urlOf(ln.Addr().String())
	ln = m.secureListener(ln)

	pool, err := gossip.New(gossip.Config{
		NodeName: "master/" + m.cfg.ID,
		BindAddr: m.cfg.GossipAddr,
		Tags: gossip.Tags{
			Role:     gossip.RoleMaster,
			ID:       m.cfg.ID,
			HTTPAddr: ln.Addr().String(),
			Extra:    map[string]string{TagRaft: string(m.raftAddr()), TagCluster: m.cfg.Cluster},
		},
		Profile: m.cfg.GossipProfile,
		Keyring: m.cfg.GossipKeyring,
		Logger:  m.cfg.Logger.With("master", m.cfg.ID),
	})
	if err != nil {
		return fmt.Errorf("master: gossip: %w", err)
	}
	m.pool = pool

	if m.cfg.AuditLog != "" {
		if m.sec.audit, err = openAuditLog(m.cfg.AuditLog, m.cfg.ID, m.cfg.Now, m.log.Warn); err != nil {
			return err
		}
	}
	if m.cfg.ACL == nil {
		m.log.Warn("no ACL file: agora runs open, every caller may make every call", "authentication", m.authOn())
	}
	m.srv = m.newHTTPServer()

	m.goFn(func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("http server stopped", "err", err)
		}
	})
	m.goFn(m.pumpGossip)
	m.goFn(func() {
		if err := m.pool.JoinRetry(life, m.cfg.Join); err != nil {
			m.log.Debug("gossip join abandoned", "err", err)
			return
		}
		m.log.Info("joined gossip pool", "join", m.cfg.Join)
	})
	m.goFn(func() { m.bootstrapLoop(life) })
	m.goFn(func() { m.leaderLoop(life) })
	m.goFn(func() { m.watch.run(life) })
	// Not in m.wg: teardown waits for m.wg and may run on this goroutine.
	go func() {
		select {
		case <-ctx.Done():
			_ = m.Shutdown()
		case <-life.Done():
		}
	}()
	m.log.Info("master started", "http", m.httpURL, "raft", m.raftAddr(), "gossip", m.pool.Addr(),
		"existing_state", m.hadRaft, "raft_profile", m.cfg.RaftProfile, "gossip_profile", m.cfg.GossipProfile)
	return nil
}

func (m *Master) goFn(fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
}

// NewRaftConfig returns the Raft configuration agora uses for a server id
// and a profile (RaftProfileDefault or RaftProfileFast). Benchmarks use it
// to run bare Raft with the same settings.
func NewRaftConfig(id, profile string, logger *slog.Logger) (*raft.Config, error) {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(id)
	c.SnapshotThreshold = 8192
	c.TrailingLogs = 10240
	c.SnapshotInterval = 30 * time.Second
	c.BatchApplyCh = true
	c.Logger = logging.HCLog(logger, "raft")
	switch profile {
	case RaftProfileDefault, "":
	case RaftProfileFast:
		c.HeartbeatTimeout = 600 * time.Millisecond
		c.ElectionTimeout = 600 * time.Millisecond
		c.LeaderLeaseTimeout = 400 * time.Millisecond
	default:
		return nil, fmt.Errorf("master: unknown raft profile %q", profile)
	}
	if err := raft.ValidateConfig(c); err != nil {
		return nil, fmt.Errorf("master: raft config: %w", err)
	}
	return c, nil
}

// RaftStorage is a Raft log + stable store and snapshot store under one
// directory, as agora uses them: a bbolt file in raft-boltdb's format
// (package raftlog) with fsync, a log cache and a file snapshot store
// retaining 3 snapshots.
type RaftStorage struct {
	Bolt  *raftlog.Store
	Logs  raft.LogStore
	Snaps raft.SnapshotStore
}

// OpenRaftStorage opens (or creates) the Raft storage under dir.
func OpenRaftStorage(dir string, logger *slog.Logger) (*RaftStorage, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("master: raft dir: %w", err)
	}
	bolt, err := raftlog.Open(filepath.Join(dir, "raft.db"), &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("master: open raft store %s: %w", dir, err)
	}
	logs, err := raft.NewLogCache(512, bolt)
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("master: raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, logging.HCLog(logger, "raft-snapshots"))
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("master: raft snapshot store: %w", err)
	}
	return &RaftStorage{Bolt: bolt, Logs: logs, Snaps: snaps}, nil
}

func (m *Master) startRaft() error {
	conf, err := NewRaftConfig(m.cfg.ID, m.cfg.RaftProfile, m.log)
	if err != nil {
		return err
	}
	st, err := OpenRaftStorage(filepath.Join(m.cfg.DataDir, "raft"), m.log)
	if err != nil {
		return err
	}
	m.store = st.Bolt
	m.snaps = st.Snaps
	has, err := raft.HasExistingState(st.Logs, st.Bolt, st.Snaps)
	if err != nil {
		return fmt.Errorf("master: inspect raft state: %w", err)
	}
	m.hadRaft = has
	trans, err := m.newRaftTransport()
	if err != nil {
		return err
	}
	r, err := raft.NewRaft(conf, m.fsm, st.Logs, st.Bolt, st.Snaps, trans)
	if err != nil {
		_ = trans.Close()
		return fmt.Errorf("master: start raft: %w", err)
	}
	m.raft = r
	m.trans = trans
	return nil
}

func (m *Master) raftAddr() raft.ServerAddress {
	return raft.ServerAddress(m.cfg.RaftAddr)
}

// Shutdown stops the master gracefully: leader work stops, leadership is
// handed to another voter when we lead, the gossip pool is told we leave,
// Raft stops and the HTTP server drains. Safe to call more than once.
func (m *Master) Shutdown() error {
	m.teardown(true)
	return m.stopErr
}

// ShutdownAll stops masters that go away together (the whole cluster:
// agora dev on Ctrl-C, a test's cleanup). A master stopping alone hands
// leadership over first; masters stopping together must not: the new
// leader would replicate to, and followers would campaign against, masters
// already gone, and a clean stop would log raft ERRORs. So: every master
// stops proposing, the leader's Raft stops first (no more heartbeats), the
// followers' Raft right after (well within an election timeout), and only
// then does each master leave gossip and close its listeners, in parallel.
func ShutdownAll(ms ...*Master) error {
	for _, m := range ms {
		m.clusterStop.Store(true)
		m.stopping.Store(true)
		m.beginStop()
	}
	stopRaft := func(m *Master) {
		if m.raft != nil {
			_ = m.raft.Shutdown().Error() // teardown reports its errors
		}
	}
	var followers []*Master
	for _, m := range ms {
		if m.raft != nil && m.raft.State() == raft.Leader {
			stopRaft(m)
		} else {
			followers = append(followers, m)
		}
	}
	var wg sync.WaitGroup
	for _, m := range followers {
		wg.Add(1)
		go func() { defer wg.Done(); stopRaft(m) }()
	}
	wg.Wait()
	errs := make([]error, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = m.Shutdown() }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Kill stops the master abruptly, as a crash would look to the others:
// listeners close, Raft stops without a leadership transfer and gossip
// stops without a leave. The data dir stays usable for a restart.
func (m *Master) Kill() {
	m.teardown(false)
}

// Done is closed once the master has stopped.
func (m *Master) Done() <-chan struct{} { return m.stopped }

// beginStop ends every wait on a Raft future (waitFuture): the master is
// stopping.
func (m *Master) beginStop() { m.quitOnce.Do(func() { close(m.quit) }) }

func (m *Master) teardown(graceful bool) {
	m.beginStop()
	m.stopOnce.Do(func() {
		defer close(m.stopped)
		// From here on this master proposes nothing: streams and loops that
		// end because we stop must not write (a framework whose stream is
		// cut by our shutdown has not disconnected from the cluster).
		m.stopping.Store(true)
		var errs []error
		if !graceful {
			m.closeHTTP(false)
		}
		if m.cancel != nil {
			m.cancel() // stops the loops; leader runs are cancelled and awaited
		}
		if graceful && !m.clusterStop.Load() && m.raft != nil && m.raft.State() == raft.Leader && m.otherVoters() > 0 {
			if err := m.raft.LeadershipTransfer().Error(); err != nil {
				m.log.Warn("leadership transfer before shutdown failed", "err", err)
			}
		}
		if graceful && m.pool != nil {
			if err := m.pool.Leave(); err != nil {
				m.log.Warn("gossip leave failed", "err", err)
			}
		}
		if graceful {
			m.closeHTTP(true)
		}
		if m.raft != nil {
			// In-flight RPCs to peers that vanished would hold raft's
			// shutdown for a whole dial timeout: end them first.
			if m.trans != nil {
				m.trans.Abort()
			}
			if err := m.raft.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("master: raft shutdown: %w", err))
			}
		}
		if m.pool != nil {
			if err := m.pool.Shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
		m.wg.Wait()
		if err := m.sec.audit.close(); err != nil {
			errs = append(errs, err)
		}
		if m.store != nil {
			if err := m.store.Close(); err != nil {
				errs = append(errs, fmt.Errorf("master: close raft store: %w", err))
			}
		}
		m.stopErr = errors.Join(errs...)
		m.log.Info("master stopped", "graceful", graceful)
	})
}

// closeHTTP stops the HTTP server: gracefully (drain for up to 2 s) or at
// once, closing open connections.
func (m *Master) closeHTTP(graceful bool) {
	switch {
	case m.srv != nil && graceful:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := m.srv.Shutdown(ctx); err != nil {
			_ = m.srv.Close()
		}
	case m.srv != nil:
		_ = m.srv.Close()
	case m.httpLn != nil:
		_ = m.httpLn.Close()
	}
}

func (m *Master) otherVoters() int {
	f := m.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(m.cfg.ID) {
			n++
		}
	}
	return n
}

// ID returns the master's id.
func (m *Master) ID() string { return m.cfg.ID }

// HTTPURL returns the master's HTTP base URL, "http://host:port".
func (m *Master) HTTPURL() string { return m.httpURL }

// Config returns the configuration with defaults filled in.
func (m *Master) Config() Config { return m.cfg }

// FSM returns the replicated state machine.
func (m *Master) FSM() *fsm.FSM { return m.fsm }

// State returns the local state, possibly stale.
func (m *Master) State() *fsm.State { return m.fsm.State() }

// Gossip returns the master's gossip pool (nil before Start).
func (m *Master) Gossip() *gossip.Pool { return m.pool }

// Raft returns the underlying Raft node (nil before Start), for tests and
// tooling; agora code goes through Apply and ReadState.
func (m *Master) Raft() *raft.Raft { return m.raft }

// Now is the leader's clock, used to stamp commands.
func (m *Master) Now() time.Time { return m.cfg.Now() }

// IsLeader reports whether this master is the Raft leader.
func (m *Master) IsLeader() bool {
	return m.raft != nil && m.raft.State() == raft.Leader
}

// LeaderReady reports whether this master leads and its leadership
// Barrier for the current term has completed (linearizable reads and
// leader-only work are running).
func (m *Master) LeaderReady() bool {
	return m.IsLeader() && m.readyTerm.Load() == m.raft.CurrentTerm()
}

// Leader returns the current leader's id and HTTP URL as this master sees
// them; both are "" when no leader is known.
func (m *Master) Leader() (id, httpURL string) {
	if m.raft == nil {
		return "", ""
	}
	_, lid := m.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	id = string(lid)
	return id, m.masterURL(id)
}

// masterURL finds a master's HTTP URL: ourselves, gossip tags, then the
// replicated master records. "" when unknown.
func (m *Master) masterURL(id string) string {
	if id == m.cfg.ID {
		return m.httpURL
	}
	if m.pool != nil {
		for _, mem := range m.pool.Members() {
			if mem.Tags.Role == gossip.RoleMaster && mem.Tags.ID == id && mem.Tags.HTTPAddr != "" {
				return m.urlOf(mem.Tags.HTTPAddr)
			}
		}
	}
	for _, rec := range m.fsm.State().Masters() {
		if rec.GetId() == id {
			return rec.GetHttpAddress()
		}
	}
	return ""
}

// SubscribeGossip returns a buffered copy of the gossip events seen from
// now on, and a function that ends the subscription. When the reader
// falls behind by more than the buffer, events are dropped (and logged);
// a reader that must not miss one resyncs from Gossip().Members().
func (m *Master) SubscribeGossip() (<-chan gossip.Event, func()) {
	ch := make(chan gossip.Event, 1024)
	m.mu.Lock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = ch
	m.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			if c, ok := m.subs[id]; ok {
				delete(m.subs, id)
				close(c)
			}
			m.mu.Unlock()
		})
	}
}

func (m *Master) pumpGossip() {
	defer func() {
		m.mu.Lock()
		for id, c := range m.subs {
			delete(m.subs, id)
			close(c)
		}
		m.mu.Unlock()
	}()
	for ev := range m.pool.Events() {
		m.mu.Lock()
		for _, c := range m.subs {
			select {
			case c <- ev:
			default:
				m.log.Warn("gossip subscriber is behind; event dropped", "event", ev.Type.String(), "member", ev.Member.Name)
			}
		}
		m.mu.Unlock()
		if ev.Member.Tags.Role == gossip.RoleMaster {
			poke(m.reconcileCh)
			poke(m.bootCh)
		}
	}
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
