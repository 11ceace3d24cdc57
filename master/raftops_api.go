package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// membershipTimeout bounds a configuration change when the caller's
// context has none.
const membershipTimeout = 10 * time.Second

func changeTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return membershipTimeout
}

// RemovePeer removes a master from the Raft configuration (leader only).
// It refuses (FailedPrecondition, nothing changed) to remove the leader
// (transfer leadership first) and a voter whose removal would leave fewer
// live voters than the smaller configuration's quorum. A removed master
// that is still alive in gossip is added back by the leader as a
// non-voter.
func (s *operatorServer) RemovePeer(ctx context.Context, req *connect.Request[agorav1.RemovePeerRequest]) (*connect.Response[agorav1.RemovePeerResponse], error) {
	m := s.m
	id := req.Msg.GetId()
	if id == "" {
		return nil, invalid("peer id is required")
	}
	if _, err := m.ReadyState(ctx); err != nil {
		return nil, err
	}
	f := m.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, m.raftError(err)
	}
	if err := m.checkRemovable(f.Configuration(), id); err != nil {
		return nil, err
	}
	if err := m.waitFuture(m.raft.RemoveServer(raft.ServerID(id), f.Index(), changeTimeout(ctx))); err != nil {
		return nil, m.raftError(err)
	}
	m.log.Info("removed master from raft configuration", "peer", id)
	if _, err := m.Apply(ctx, fsm.CmdRemoveMaster, &agorav1.RemoveMasterCommand{Id: id}); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		m.log.Warn("forgetting removed master's record failed", "peer", id, "err", err)
	}
	return connect.NewResponse(&agorav1.RemovePeerResponse{}), nil
}

// checkRemovable judges a removal against the configuration: NotFound
// for a master not in it, FailedPrecondition for the leader and for a
// voter quorum needs. A voter counts as live when it is alive in gossip.
func (m *Master) checkRemovable(conf raft.Configuration, id string) error {
	var target *raft.Server
	voters := 0
	for i, srv := range conf.Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
		if string(srv.ID) == id {
			target = &conf.Servers[i]
		}
	}
	if target == nil {
		return notFound("master %q is not in the raft configuration", id)
	}
	if id == m.cfg.ID {
		return precondition("master %s is the leader: hand leadership over first (agora raft transfer-leader), then remove it", id)
	}
	if target.Suffrage != raft.Voter {
		return nil
	}
	live := m.liveMasters()
	remaining := voters - 1
	quorum := remaining/2 + 1
	liveLeft := 0
	var dead []string
	for _, srv := range conf.Servers {
		if srv.Suffrage != raft.Voter || srv.ID == target.ID {
			continue
		}
		if live[string(srv.ID)] {
			liveLeft++
		} else {
			dead = append(dead, string(srv.ID))
		}
	}
	if liveLeft < quorum {
		return precondition("removing voter %s would leave %d live voters of %d, below the quorum of %d (not live: %v); remove a dead master or bring masters back first",
			id, liveLeft, remaining, quorum, dead)
	}
	return nil
}

// liveMasters reports which masters are alive in gossip (a voter that is
// alive can vote, even while autopilot judges it behind). We are always
// live.
func (m *Master) liveMasters() map[string]bool {
	live := map[string]bool{m.cfg.ID: true}
	for _, p := range m.aliveMasters() {
		live[p.id] = true
	}
	return live
}

// AddPeer adds a master as a non-voter; autopilot promotes it.
func (s *operatorServer) AddPeer(ctx context.Context, req *connect.Request[agorav1.AddPeerRequest]) (*connect.Response[agorav1.AddPeerResponse], error) {
	m := s.m
	id, addr := req.Msg.GetId(), req.Msg.GetRaftAddress()
	if id == "" || addr == "" {
		return nil, invalid("peer id and raft address are required")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, invalid("raft address %q: %v", addr, err)
	}
	if _, err := m.ReadyState(ctx); err != nil {
		return nil, err
	}
	f := m.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, m.raftError(err)
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == id && string(srv.Address) == addr {
			return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("master %s is already in the raft configuration (%s)", id, suffrageName(srv.Suffrage)))
		}
		if string(srv.ID) != id && string(srv.Address) == addr {
			return nil, precondition("raft address %s belongs to master %s; remove it first", addr, srv.ID)
		}
	}
	if err := m.verifyRaftPeer(ctx, addr); err != nil {
		return nil, connect.NewError(connect.CodePermissionDenied, err)
	}
	fut := m.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), f.Index(), changeTimeout(ctx))
	if err := m.waitFuture(fut); err != nil {
		return nil, m.raftError(err)
	}
	m.log.Info("operator added master as a non-voter", "peer", id, "raft", addr)
	return connect.NewResponse(&agorav1.AddPeerResponse{Index: fut.Index()}), nil
}

// TransferLeader hands leadership to a voter (any, when id is "").
func (s *operatorServer) TransferLeader(ctx context.Context, req *connect.Request[agorav1.TransferLeaderRequest]) (*connect.Response[agorav1.TransferLeaderResponse], error) {
	m := s.m
	id := req.Msg.GetId()
	if _, err := m.ReadyState(ctx); err != nil {
		return nil, err
	}
	if id == m.cfg.ID {
		return connect.NewResponse(&agorav1.TransferLeaderResponse{LeaderId: id}), nil
	}
	f := m.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, m.raftError(err)
	}
	var fut raft.Future
	if id == "" {
		if m.otherVoters() == 0 {
			return nil, precondition("no other voter to hand leadership to")
		}
		fut = m.raft.LeadershipTransfer()
	} else {
		var target *raft.Server
		for i, srv := range f.Configuration().Servers {
			if string(srv.ID) == id {
				target = &f.Configuration().Servers[i]
			}
		}
		if target == nil {
			return nil, notFound("master %q is not in the raft configuration", id)
		}
		if target.Suffrage != raft.Voter {
			return nil, precondition("master %s is a %s, not a voter: it cannot lead", id, suffrageName(target.Suffrage))
		}
		fut = m.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := m.waitFuture(fut); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return nil, m.NotLeaderError()
		}
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("leadership transfer: %w", err))
	}
	// We learn the new leader from its first heartbeat.
	lid := m.awaitLeader(ctx, 5*time.Second)
	m.log.Info("leadership transferred by an operator", "to", lid)
	return connect.NewResponse(&agorav1.TransferLeaderResponse{LeaderId: lid}), nil
}

// RaftHealth reports autopilot's state (leader only).
func (s *operatorServer) RaftHealth(ctx context.Context, _ *connect.Request[agorav1.RaftHealthRequest]) (*connect.Response[agorav1.RaftHealthResponse], error) {
	m := s.m
	if _, err := m.ReadyState(ctx); err != nil {
		return nil, err
	}
	ap := m.autopilot.Load()
	if ap == nil {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s leads but autopilot has not started yet; retry", m.cfg.ID))
	}
	st := ap.GetState()
	if st == nil || len(st.Servers) == 0 {
		// Autopilot computes its first state when it starts; this is a
		// leader that has just won.
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s has no autopilot state yet; retry", m.cfg.ID))
	}
	return connect.NewResponse(healthView(m, st)), nil
}

func healthView(m *Master, st *autopilot.State) *agorav1.RaftHealthResponse {
	cfg := m.cfg
	out := &agorav1.RaftHealthResponse{
		Healthy:             st.Healthy,
		FailureTolerance:    int32(st.FailureTolerance),
		LeaderId:            string(st.Leader),
		StabilizationMs:     cfg.AutopilotStabilization.Milliseconds(),
		DeadServerCleanupMs: max(cfg.AutopilotDeadServerCleanup.Milliseconds(), -1),
		MinQuorum:           uint32(cfg.AutopilotMinQuorum),
	}
	for _, id := range st.Voters {
		out.Voters = append(out.Voters, string(id))
	}
	failedSince := m.deadSince()
	for id, srv := range st.Servers {
		v := &agorav1.RaftServerHealth{
			Id:            string(id),
			RaftAddress:   string(srv.Server.Address),
			NodeStatus:    string(srv.Server.NodeStatus),
			RaftState:     string(srv.State),
			Healthy:       srv.Health.Healthy,
			LastContactMs: -1,
			LastTerm:      srv.Stats.LastTerm,
			LastIndex:     srv.Stats.LastIndex,
		}
		if !srv.Health.StableSince.IsZero() {
			v.StableSince = timestamppb.New(srv.Health.StableSince)
		}
		if srv.Stats.LastContact >= 0 {
			v.LastContactMs = srv.Stats.LastContact.Milliseconds()
		}
		if since, ok := failedSince[id]; ok {
			v.FailedForMs = time.Since(since).Milliseconds()
		}
		out.Servers = append(out.Servers, v)
	}
	sort.Slice(out.Servers, func(i, j int) bool { return out.Servers[i].Id < out.Servers[j].Id })
	return out
}

// RaftServerStats is this master's own Raft position. Any master answers:
// the leader's autopilot asks each master for it.
func (s *operatorServer) RaftServerStats(context.Context, *connect.Request[agorav1.RaftServerStatsRequest]) (*connect.Response[agorav1.RaftServerStatsResponse], error) {
	st := localServerStats(s.m.raft)
	st.Id = s.m.cfg.ID
	return connect.NewResponse(st), nil
}

// deadSince reports since when the running autopilot has seen each
// master not alive in gossip; empty when autopilot is not running.
func (m *Master) deadSince() map[raft.ServerID]time.Time {
	d := m.apDelegate.Load()
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[raft.ServerID]time.Time, len(d.failedSince))
	for id, t := range d.failedSince {
		out[id] = t
	}
	return out
}

// awaitLeader waits until this master knows a leader, up to d; "" when
// none is known by then.
func (m *Master) awaitLeader(ctx context.Context, d time.Duration) string {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, id := m.raft.LeaderWithID(); id != "" {
			return string(id)
		}
		select {
		case <-ctx.Done():
			return ""
		case <-deadline.C:
			return ""
		case <-tick.C:
		}
	}
}
