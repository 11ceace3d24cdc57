package master

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/logging"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// Autopilot defaults (see the Config fields of the same names).
const (
	defaultAutopilotStabilization = 10 * time.Second
	defaultAutopilotDeadCleanup   = 5 * time.Minute
	defaultAutopilotLastContact   = 2 * time.Second
	defaultAutopilotTrailingLogs  = 500
	defaultAutopilotInterval      = 2 * time.Second
)

// Online master membership. The leader's reconcile loop (bootstrap.go)
// adds every master alive in gossip that is missing from the Raft
// configuration as a non-voter. hashicorp/raft-autopilot, run by the
// leader as one of its tasks, then does the rest:
//
//   - it asks every master for its Raft position (RaftServerStats) on each
//     update and judges it healthy when the master is alive in gossip, was
//     heard from by the leader within AutopilotLastContactThreshold, is on
//     the leader's term and at most AutopilotMaxTrailingLogs behind;
//   - a non-voter healthy for AutopilotStabilization is promoted to voter;
//   - a master failed or gone from gossip for AutopilotDeadServerCleanup is
//     removed from the configuration, unless that would remove a majority
//     of the voters or leave fewer than AutopilotMinQuorum.
//
// RaftHealth reports autopilot's state; RemovePeer refuses to remove the
// leader or a voter that quorum needs.

// apDelegate is agora's autopilot.ApplicationIntegration for one term of
// leadership.
type apDelegate struct {
	m   *Master
	ctx context.Context // the leadership
	hc  *http.Client

	mu          sync.Mutex
	failedSince map[raft.ServerID]time.Time
	removing    map[raft.ServerID]bool
}

var _ autopilot.ApplicationIntegration = (*apDelegate)(nil)

func (m *Master) autopilotConfig() *autopilot.Config {
	c := m.cfg
	return &autopilot.Config{
		CleanupDeadServers:      c.AutopilotDeadServerCleanup > 0,
		LastContactThreshold:    c.AutopilotLastContactThreshold,
		MaxTrailingLogs:         c.AutopilotMaxTrailingLogs,
		MinQuorum:               c.AutopilotMinQuorum,
		ServerStabilizationTime: c.AutopilotStabilization,
	}
}

// runAutopilot is the leader task that runs autopilot for one term.
func (l *leader) runAutopilot(ctx context.Context) {
	m := l.m
	d := &apDelegate{
		m: m, ctx: ctx, hc: m.peerStatsClient(),
		failedSince: make(map[raft.ServerID]time.Time),
		removing:    make(map[raft.ServerID]bool),
	}
	ap := autopilot.New(m.raft, d,
		autopilot.WithLogger(quietErrors{logging.HCLog(m.log, "raft")}),
		autopilot.WithUpdateInterval(m.cfg.AutopilotInterval),
		autopilot.WithReconcileInterval(m.cfg.AutopilotInterval),
	)
	m.apDelegate.Store(d)
	m.autopilot.Store(ap)
	ap.Start(ctx)
	<-ctx.Done()
	<-ap.Stop()
	m.autopilot.CompareAndSwap(ap, nil)
	m.apDelegate.CompareAndSwap(d, nil)
	if t, ok := d.hc.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

// peerStatsClient returns the client the autopilot uses to poll masters:
// like peerHTTPClient, but keeping connections (it calls every master
// every AutopilotInterval).
func (m *Master) peerStatsClient() *http.Client {
	t := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second, ForceAttemptHTTP2: true}
	if m.cfg.TLS != nil {
		t.TLSClientConfig = m.cfg.TLS.ClientConfig(m.cfg.Cluster)
	}
	return &http.Client{Transport: t}
}

func (d *apDelegate) AutopilotConfig() *autopilot.Config { return d.m.autopilotConfig() }

// NotifyState does nothing: RaftHealth reads the state when asked.
func (d *apDelegate) NotifyState(*autopilot.State) {}

// KnownServers lists every server of the Raft configuration (a server
// missing here would be removed at once as stale, with no wait) and every
// master of our cluster in gossip, with its gossip status, all of the
// voter type (every master may vote: the quorum arithmetic of dead server
// removal counts them). It records
// since when each one has not been alive.
func (d *apDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	m := d.m
	now := time.Now()
	out := make(map[raft.ServerID]*autopilot.Server)
	if f := m.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			out[s.ID] = &autopilot.Server{ID: s.ID, Name: string(s.ID), Address: s.Address, NodeStatus: autopilot.NodeFailed, RaftVersion: raft.ProtocolVersionMax, NodeType: autopilot.NodeVoter}
		}
	}
	for _, mem := range m.pool.Members() {
		t := mem.Tags
		if t.Role != gossip.RoleMaster || t.ID == "" || t.Extra[TagCluster] != m.cfg.Cluster || t.Extra[TagRaft] == "" {
			continue
		}
		id := raft.ServerID(t.ID)
		s, ok := out[id]
		if !ok {
			s = &autopilot.Server{ID: id, Name: t.ID, Address: raft.ServerAddress(t.Extra[TagRaft]), RaftVersion: raft.ProtocolVersionMax, NodeType: autopilot.NodeVoter}
			out[id] = s
		}
		switch mem.Status {
		case gossip.StatusAlive:
			s.NodeStatus = autopilot.NodeAlive
		case gossip.StatusLeft:
			s.NodeStatus = autopilot.NodeLeft
		default:
			s.NodeStatus = autopilot.NodeFailed
		}
		s.Meta = map[string]string{"http": t.HTTPAddr}
	}
	self := raft.ServerID(m.cfg.ID)
	if s, ok := out[self]; ok {
		s.NodeStatus = autopilot.NodeAlive
		s.IsLeader = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, s := range out {
		if s.NodeStatus == autopilot.NodeAlive {
			delete(d.failedSince, id)
		} else if _, ok := d.failedSince[id]; !ok {
			d.failedSince[id] = now
		}
	}
	for id := range d.failedSince {
		if _, ok := out[id]; !ok {
			delete(d.failedSince, id)
		}
	}
	return out
}

// failedFor is how long the leader has seen server id not alive.
func (d *apDelegate) failedFor(id raft.ServerID) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	since, ok := d.failedSince[id]
	if !ok {
		return 0
	}
	return time.Since(since)
}

// FetchServerStats asks each live master for its Raft position, in
// parallel, within ctx (autopilot bounds it by half its interval). Our
// own position is read locally.
func (d *apDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := make(map[raft.ServerID]*autopilot.ServerStats)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, s := range servers {
		if id == raft.ServerID(d.m.cfg.ID) {
			st := localServerStats(d.m.raft)
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: msDuration(st.GetLastContactMs()), LastTerm: st.GetLastTerm(), LastIndex: st.GetLastIndex()}
			mu.Unlock()
			continue
		}
		httpAddr := s.Meta["http"]
		if s.NodeStatus != autopilot.NodeAlive || httpAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := agorav1connect.NewOperatorServiceClient(d.hc, d.m.urlOf(httpAddr))
			resp, err := c.RaftServerStats(ctx, connect.NewRequest(&agorav1.RaftServerStatsRequest{}))
			if err != nil {
				d.m.log.Debug("autopilot: fetching raft stats failed", "peer", id, "err", err)
				return
			}
			st := resp.Msg
			if st.GetId() != string(id) {
				d.m.log.Warn("autopilot: master answered stats with another id", "peer", id, "answered", st.GetId())
				return
			}
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: msDuration(st.GetLastContactMs()), LastTerm: st.GetLastTerm(), LastIndex: st.GetLastIndex()}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// RemoveFailedServer removes a master that autopilot found failed (and
// removable without losing quorum) once it has been failed for the dead
// server cleanup time. Autopilot asks again on each reconcile, so a
// master not yet failed long enough is removed on a later pass.
func (d *apDelegate) RemoveFailedServer(s *autopilot.Server) {
	m := d.m
	wait := m.cfg.AutopilotDeadServerCleanup
	if wait <= 0 || d.failedFor(s.ID) < wait {
		return
	}
	d.mu.Lock()
	if d.removing[s.ID] {
		d.mu.Unlock()
		return
	}
	d.removing[s.ID] = true
	d.mu.Unlock()
	go func() {
		defer func() {
			d.mu.Lock()
			delete(d.removing, s.ID)
			d.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
		defer cancel()
		m.log.Info("autopilot: removing dead master", "peer", s.ID, "failed_for", d.failedFor(s.ID).Round(time.Millisecond))
		if err := m.waitFuture(m.raft.RemoveServer(s.ID, 0, 10*time.Second)); err != nil {
			if ctx.Err() == nil {
				m.log.Warn("autopilot: removing dead master failed", "peer", s.ID, "err", err)
			}
			return
		}
		if _, err := m.Apply(ctx, fsm.CmdRemoveMaster, &agorav1.RemoveMasterCommand{Id: string(s.ID)}); err != nil && connect.CodeOf(err) != connect.CodeNotFound && ctx.Err() == nil {
			m.log.Warn("forgetting removed master's record failed", "peer", s.ID, "err", err)
		}
	}()
}

// localServerStats is this master's own Raft position.
func localServerStats(r *raft.Raft) *agorav1.RaftServerStatsResponse {
	s := r.Stats()
	out := &agorav1.RaftServerStatsResponse{LastContactMs: -1}
	out.LastTerm, _ = strconv.ParseUint(s["last_log_term"], 10, 64)
	out.LastIndex, _ = strconv.ParseUint(s["last_log_index"], 10, 64)
	switch lc := s["last_contact"]; lc {
	case "never", "":
	case "0":
		out.LastContactMs = 0
	default:
		if d, err := time.ParseDuration(lc); err == nil {
			out.LastContactMs = d.Milliseconds()
		}
	}
	return out
}

func msDuration(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// quietErrors logs autopilot's errors as warnings: it reports a state
// update cut short by the end of leadership ("context canceled") and a
// reconcile that raced an election as errors, which they are not for an
// operator (a failed membership change is retried on the next pass).
type quietErrors struct{ hclog.Logger }

func (q quietErrors) Error(msg string, args ...any) { q.Logger.Warn(msg, args...) }

func (q quietErrors) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Error {
		level = hclog.Warn
	}
	q.Logger.Log(level, msg, args...)
}

func (q quietErrors) Named(name string) hclog.Logger { return quietErrors{q.Logger.Named(name)} }

func (q quietErrors) With(args ...any) hclog.Logger { return quietErrors{q.Logger.With(args...)} }

func (q quietErrors) ResetNamed(name string) hclog.Logger {
	return quietErrors{q.Logger.ResetNamed(name)}
}

func (c *Config) autopilotDefaults() {
	if c.AutopilotStabilization <= 0 {
		c.AutopilotStabilization = defaultAutopilotStabilization
	}
	if c.AutopilotDeadServerCleanup == 0 {
		c.AutopilotDeadServerCleanup = defaultAutopilotDeadCleanup
	}
	if c.AutopilotLastContactThreshold <= 0 {
		c.AutopilotLastContactThreshold = defaultAutopilotLastContact
	}
	if c.AutopilotMaxTrailingLogs == 0 {
		c.AutopilotMaxTrailingLogs = defaultAutopilotTrailingLogs
	}
	if c.AutopilotInterval <= 0 {
		c.AutopilotInterval = defaultAutopilotInterval
	}
}
