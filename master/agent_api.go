package master

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// Limits of the agent API: sizes of one call, and the blocking wait. The
// FSM judges the content of a registration and of status updates.
const (
	maxAssignmentWait  = 30 * time.Second
	maxStatusesPerCall = 1024
	maxReportedTasks   = 100_000
)

// agentServer implements AgentService: registration, status updates and
// the agents' blocking assignment queries.
type agentServer struct {
	agorav1connect.UnimplementedAgentServiceHandler
	m backend

	statusOnce sync.Once
	statuses   *coalescer[*agorav1.StatusUpdateCommand]

	// waiters wakes each agent's long poll when its own assignment
	// changes (agent_wait.go).
	waiters assignWaiters
	// polls and conns follow agents' long polls and their connections,
	// to tell when an agent's process died (agent_gone.go).
	polls pollWatch
	conns agentConns
}

// statusBatchesInFlight bounds the StatusUpdateBatch entries being committed
// at once, proposed in queue order (an agent's later update of a task must
// not commit before an earlier one). With one at a time the status path
// carried at most one entry of 4,096 updates per commit: at 1M tasks agents'
// status calls waited past their deadline and were sent again (issue 13).
const statusBatchesInFlight = 4

// statusCoalescer groups concurrent UpdateStatus calls into one entry.
func (s *agentServer) statusCoalescer() *coalescer[*agorav1.StatusUpdateCommand] {
	s.statusOnce.Do(func() {
		s.statuses = newCoalescer(s.m, fsm.CmdStatusUpdate, fsm.CmdStatusUpdateBatch, statusBatchesInFlight, false, func(us []*agorav1.StatusUpdateCommand) proto.Message {
			return &agorav1.StatusUpdateBatchCommand{Updates: us}
		})
	})
	return s.statuses
}

// RegisterAgent commits a registration; the FSM judges it. Only the
// cluster name (this master's configuration) and the call's size are
// checked here.
func (s *agentServer) RegisterAgent(ctx context.Context, req *connect.Request[agorav1.RegisterAgentRequest]) (*connect.Response[agorav1.RegisterAgentResponse], error) {
	r := req.Msg
	id := r.GetAgentId()
	if err := s.m.security().ownAgent(ctx, id); err != nil {
		return nil, err
	}
	cluster := r.GetCluster()
	if cluster == "" {
		cluster = "agora"
	}
	if want := s.m.Config().Cluster; cluster != want {
		return nil, precondition("agent %s is for cluster %s but masters run cluster %s", id, cluster, want)
	}
	if len(r.GetTasks()) > maxReportedTasks {
		return nil, invalid("agent %s: reports %d tasks, at most %d allowed", id, len(r.GetTasks()), maxReportedTasks)
	}
	res, err := s.m.Apply(ctx, fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{
		Agent: &agorav1.Agent{
			Id:            id,
			Address:       r.GetAddress(),
			GossipAddress: r.GetGossipAddress(),
			Hostname:      r.GetHostname(),
			Resources:     r.GetResources(),
			Attributes:    r.GetAttributes(),
			Version:       r.GetVersion(),
			Simulated:     r.GetSimulated(),
		},
		Now:   timestamppb.New(s.m.Now()),
		Tasks: r.GetTasks(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.RegisterAgentResponse{MasterId: s.m.ID(), Index: res.Index}), nil
}

// sameAgentActive reports whether a registered agent still counts as alive.
func sameAgentActive(a *agorav1.Agent) bool {
	return agentUp(a.GetState())
}

// agentUp reports whether an agent in state s is registered and running:
// ACTIVE, or drained (DRAINING, DRAINED) but still up.
func agentUp(s agorav1.AgentState) bool {
	switch s {
	case agorav1.AgentState_AGENT_STATE_ACTIVE, agorav1.AgentState_AGENT_STATE_DRAINING, agorav1.AgentState_AGENT_STATE_DRAINED:
		return true
	}
	return false
}

// UpdateStatus commits an agent's status updates in one command; the FSM
// judges them. Updates already committed (a retry after a lost answer) and
// updates of tasks that already ended change nothing, and a call made only
// of those is answered at the current index without proposing anything.
// Concurrent calls (of many agents) are coalesced into one entry, each
// call judged on its own (statusCoalescer).
func (s *agentServer) UpdateStatus(ctx context.Context, req *connect.Request[agorav1.UpdateStatusRequest]) (*connect.Response[agorav1.UpdateStatusResponse], error) {
	r := req.Msg
	if err := s.m.security().ownAgent(ctx, r.GetAgentId()); err != nil {
		return nil, err
	}
	if len(r.GetStatuses()) > maxStatusesPerCall {
		return nil, invalid("agent %s: %d status updates in one call, at most %d allowed", r.GetAgentId(), len(r.GetStatuses()), maxStatusesPerCall)
	}
	res, err := s.statusCoalescer().submit(ctx, &agorav1.StatusUpdateCommand{
		AgentId:  r.GetAgentId(),
		Statuses: r.GetStatuses(),
		Now:      timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.UpdateStatusResponse{Index: res.Index}), nil
}

// GetAssignments answers from this master's local state (any master
// serves it): it waits until the agent's assignment (its record, its live
// tasks and their kills, its volumes; not the statuses it reported itself
// nor acknowledgements, see assignVersion) differs from the one it holds,
// or the wait (at most 30 s) ends, and then answers the whole assignment
// at the current index. The
// assignment the agent holds is the one this master last answered it at
// min_index (or the current one when the state is at min_index); when this
// master cannot tell (min_index came from another master), it answers as
// soon as the state passes min_index. known is false when the agent must
// register (unknown, unreachable or gone).
func (s *agentServer) GetAssignments(ctx context.Context, req *connect.Request[agorav1.GetAssignmentsRequest]) (*connect.Response[agorav1.GetAssignmentsResponse], error) {
	r := req.Msg
	id := r.GetAgentId()
	if !fsm.ValidAgentID(id) {
		return nil, invalid("invalid agent id %q", id)
	}
	if err := s.m.security().ownAgent(ctx, id); err != nil {
		return nil, err
	}
	w := r.GetWaitSeconds()
	if w != w || w < 0 { // NaN or negative
		return nil, invalid("wait_seconds %g must be a number >= 0", w)
	}
	wait := maxAssignmentWait
	if w < maxAssignmentWait.Seconds() {
		wait = time.Duration(w * float64(time.Second))
	}
	// The poll's connection closing hints that the agent died (agent_gone.go).
	s.pollBegins(ctx, id)
	defer s.polls.end(id)
	state, base, held, err := s.waitAssignment(ctx, id, r.GetMinIndex(), wait)
	if err != nil {
		return nil, err
	}
	resp := connect.NewResponse(&agorav1.GetAssignmentsResponse{Index: state.Index()})
	nameLeader(s.m, resp.Header())
	out := resp.Msg
	v := assignVersionOf(state, id)
	out.Known = v.agent != nil && sameAgentActive(v.agent)
	s.waiters.answered(id, state, v, out.Known)
	if !out.Known {
		return resp, nil
	}
	if r.GetOmitUnchanged() && held && v.equal(base) {
		// The agent holds this assignment already (a wait that ended with
		// nothing new): at 10,000 agents these answers were most of the
		// agent service's work, each one the agent's whole task list.
		out.Unchanged = true
		return resp, nil
	}
	for _, t := range state.TasksByAgent(id) {
		if !fsm.IsTerminal(t.GetState()) {
			out.Tasks = append(out.Tasks, t)
		}
	}
	out.Volumes = v.vols
	return resp, nil
}

// waitAssignment returns the local state once the agent's assignment
// differs from the one it holds at minIndex (assignWaiters), or once the
// state passes minIndex when that one is not known here, or the latest
// state when wait ends. held reports whether this master knows the
// assignment the agent holds (base).
func (s *agentServer) waitAssignment(ctx context.Context, id string, minIndex uint64, wait time.Duration) (st *fsm.State, base assignVersion, held bool, err error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := s.m.FSM().Changed()
		st := s.m.State()
		base, ok := s.waiters.baseline(id, minIndex, st)
		if !ok && st.Index() > minIndex {
			return st, assignVersion{}, false, nil
		}
		if ok {
			if !assignVersionOf(st, id).equal(base) {
				return st, base, true, nil
			}
			st, err := s.waitAgent(ctx, id, base, timer)
			return st, base, true, err
		}
		// Behind minIndex (a follower catching up): wait for the next state.
		select {
		case <-changed:
		case <-timer.C:
			return s.m.State(), assignVersion{}, false, nil
		case <-ctx.Done():
			return nil, assignVersion{}, false, ctxError(ctx.Err())
		case <-s.m.Done():
			return nil, assignVersion{}, false, s.stopping()
		}
	}
}

// waitAgent waits until the agent's assignment differs from base.
func (s *agentServer) waitAgent(ctx context.Context, id string, base assignVersion, timer *time.Timer) (*fsm.State, error) {
	x := s.waiters.add(s.m, id, base)
	defer s.waiters.remove(x)
	if st := s.m.State(); !assignVersionOf(st, id).equal(base) {
		return st, nil
	}
	select {
	case <-x.ch:
		return s.m.State(), nil
	case <-timer.C:
		return s.m.State(), nil
	case <-ctx.Done():
		return nil, ctxError(ctx.Err())
	case <-s.m.Done():
		return nil, s.stopping()
	}
}

func (s *agentServer) stopping() error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s is shutting down", s.m.ID()))
}

// StopAgent commits an agent's goodbye (AgentStopped); the FSM judges it.
// Stopping for a restart makes the agent RESTARTING: its tasks keep
// running, unseen by frameworks, and the leader's liveness task waits
// Config.AgentReregisterTimeout before it treats the agent as lost.
func (s *agentServer) StopAgent(ctx context.Context, req *connect.Request[agorav1.StopAgentRequest]) (*connect.Response[agorav1.StopAgentResponse], error) {
	r := req.Msg
	if err := s.m.security().ownAgent(ctx, r.GetAgentId()); err != nil {
		return nil, err
	}
	res, err := s.m.Apply(ctx, fsm.CmdAgentStopped, &agorav1.AgentStoppedCommand{
		AgentId:      r.GetAgentId(),
		Now:          timestamppb.New(s.m.Now()),
		Decommission: r.GetDecommission(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.StopAgentResponse{Index: res.Index}), nil
}
