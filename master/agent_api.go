package master

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Limits of the agent API.
const (
	maxAssignmentWait   = 30 * time.Second
	maxAgentAttributes  = 64
	maxAttributeBytes   = 256
	maxStatusesPerCall  = 1024
	maxReportedTasks    = 100_000
	maxAgentStringBytes = 1024
)

var agentIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// agentServer implements AgentService: registration, status updates and
// the agents' blocking assignment queries.
type agentServer struct {
	agorav1connect.UnimplementedAgentServiceHandler
	m backend
}

func invalidArg(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// RegisterAgent validates a registration at the edge and commits it.
func (s *agentServer) RegisterAgent(ctx context.Context, req *connect.Request[agorav1.RegisterAgentRequest]) (*connect.Response[agorav1.RegisterAgentResponse], error) {
	r := req.Msg
	agent, err := s.validateRegistration(r)
	if err != nil {
		return nil, err
	}
	st, err := s.m.ReadState(ctx, false)
	if err != nil {
		return nil, err
	}
	if cur, ok := st.Agent(r.GetAgentId()); ok && sameAgentActive(cur) && !sameEndpoint(cur, r) {
		return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf(
			"agent %s is already registered and active from %s (gossip %s); a second agent with this id from %s (gossip %s) is refused",
			r.GetAgentId(), orNone(cur.GetAddress()), orNone(cur.GetGossipAddress()), orNone(r.GetAddress()), orNone(r.GetGossipAddress())))
	}
	res, err := s.m.Apply(ctx, fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{
		Agent: agent,
		Now:   timestamppb.New(s.m.Now()),
		Tasks: r.GetTasks(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.RegisterAgentResponse{MasterId: s.m.ID(), Index: res.Index}), nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// sameAgentActive reports whether a registered agent still counts as alive.
func sameAgentActive(a *agorav1.Agent) bool {
	return a.GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE || a.GetState() == agorav1.AgentState_AGENT_STATE_DRAINING
}

// sameEndpoint reports whether a registration comes from where the agent
// was registered from.
func sameEndpoint(a *agorav1.Agent, r *agorav1.RegisterAgentRequest) bool {
	return a.GetAddress() == r.GetAddress() && a.GetGossipAddress() == r.GetGossipAddress()
}

// validateRegistration checks a request and builds the agent record.
func (s *agentServer) validateRegistration(r *agorav1.RegisterAgentRequest) (*agorav1.Agent, error) {
	id := r.GetAgentId()
	if !agentIDRE.MatchString(id) {
		return nil, invalidArg("invalid agent id %q: want ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$", id)
	}
	cluster := r.GetCluster()
	if cluster == "" {
		cluster = "agora"
	}
	if want := s.m.Config().Cluster; cluster != want {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("agent %s is for cluster %s but masters run cluster %s", id, cluster, want))
	}
	if r.GetHostname() == "" {
		return nil, invalidArg("agent %s: hostname is empty", id)
	}
	for name, v := range map[string]string{"address": r.GetAddress(), "gossip address": r.GetGossipAddress(), "hostname": r.GetHostname(), "version": r.GetVersion()} {
		if len(v) > maxAgentStringBytes {
			return nil, invalidArg("agent %s: %s longer than %d bytes", id, name, maxAgentStringBytes)
		}
	}
	pools, err := resourcepb.FromProto(r.GetResources())
	if err != nil {
		return nil, invalidArg("agent %s: resources: %w", id, err)
	}
	for role := range pools {
		if role != "" {
			return nil, invalidArg("agent %s: resources must be unreserved, got resources reserved for role %q", id, role)
		}
	}
	if pools.IsEmpty() {
		return nil, invalidArg("agent %s: offers no resources", id)
	}
	if len(r.GetAttributes()) > maxAgentAttributes {
		return nil, invalidArg("agent %s: %d attributes, at most %d allowed", id, len(r.GetAttributes()), maxAgentAttributes)
	}
	for k, v := range r.GetAttributes() {
		if k == "" || len(k) > 64 || len(v) > maxAttributeBytes {
			return nil, invalidArg("agent %s: bad attribute %q: keys 1-64 bytes, values at most %d bytes", id, k, maxAttributeBytes)
		}
	}
	if len(r.GetTasks()) > maxReportedTasks {
		return nil, invalidArg("agent %s: reports %d tasks, at most %d allowed", id, len(r.GetTasks()), maxReportedTasks)
	}
	for _, t := range r.GetTasks() {
		if t.GetTaskId() == "" || t.GetFrameworkId() == "" {
			return nil, invalidArg("agent %s: a reported task lacks its task or framework id", id)
		}
		if t.GetAgentId() != "" && t.GetAgentId() != id {
			return nil, invalidArg("agent %s: reported task %s names agent %s", id, t.GetTaskId(), t.GetAgentId())
		}
		if _, ok := agorav1.TaskState_name[int32(t.GetState())]; !ok || t.GetState() == agorav1.TaskState_TASK_STATE_UNSPECIFIED {
			return nil, invalidArg("agent %s: reported task %s has invalid state %d", id, t.GetTaskId(), t.GetState())
		}
	}
	return &agorav1.Agent{
		Id:            id,
		Address:       r.GetAddress(),
		GossipAddress: r.GetGossipAddress(),
		Hostname:      r.GetHostname(),
		Resources:     pools.ToProto(),
		Attributes:    r.GetAttributes(),
		Version:       r.GetVersion(),
		State:         agorav1.AgentState_AGENT_STATE_ACTIVE,
	}, nil
}

// agentReportable lists the states an agent may report.
func agentReportable(st agorav1.TaskState) bool {
	switch st {
	case agorav1.TaskState_TASK_STATE_STAGING, agorav1.TaskState_TASK_STATE_STARTING,
		agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLING,
		agorav1.TaskState_TASK_STATE_FINISHED, agorav1.TaskState_TASK_STATE_FAILED,
		agorav1.TaskState_TASK_STATE_KILLED, agorav1.TaskState_TASK_STATE_ERROR,
		agorav1.TaskState_TASK_STATE_LOST, agorav1.TaskState_TASK_STATE_DROPPED:
		return true
	}
	return false
}

// UpdateStatus checks status updates against the leader's state and
// commits them in one command. Updates already committed (a retry after a
// lost answer) and updates of tasks already terminal are answered as done
// without proposing anything, so a retried update is committed once.
func (s *agentServer) UpdateStatus(ctx context.Context, req *connect.Request[agorav1.UpdateStatusRequest]) (*connect.Response[agorav1.UpdateStatusResponse], error) {
	r := req.Msg
	id := r.GetAgentId()
	if !agentIDRE.MatchString(id) {
		return nil, invalidArg("invalid agent id %q", id)
	}
	if len(r.GetStatuses()) == 0 {
		return nil, invalidArg("agent %s: no status updates given", id)
	}
	if len(r.GetStatuses()) > maxStatusesPerCall {
		return nil, invalidArg("agent %s: %d status updates in one call, at most %d allowed", id, len(r.GetStatuses()), maxStatusesPerCall)
	}
	for _, st := range r.GetStatuses() {
		if st.GetUuid() == "" {
			return nil, invalidArg("agent %s: status update of task %s has no uuid", id, st.GetTaskId())
		}
		if !agentReportable(st.GetState()) {
			return nil, invalidArg("agent %s: status update of task %s has state %s, which agents may not report", id, st.GetTaskId(), st.GetState())
		}
		if st.GetAgentId() != "" && st.GetAgentId() != id {
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("agent %s may not report status for agent %s", id, st.GetAgentId()))
		}
	}
	state, err := s.m.ReadState(ctx, false)
	if err != nil {
		return nil, err
	}
	agent, ok := state.Agent(id)
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("agent %s is not registered", id))
	}
	if !sameAgentActive(agent) {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("agent %s is %s; it must register again before reporting status", id, agentStateName(agent.GetState())))
	}
	// The agent sends its updates in order; an update at or before the
	// one a task already carries was committed by an earlier call.
	type tk struct{ fw, task string }
	lastCommitted := map[tk]int{}
	for i, st := range r.GetStatuses() {
		t, ok := state.Task(st.GetFrameworkId(), st.GetTaskId())
		if !ok {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("task %s of framework %s is unknown", st.GetTaskId(), st.GetFrameworkId()))
		}
		if t.GetAgentId() != id {
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("task %s runs on agent %s, not on agent %s", st.GetTaskId(), t.GetAgentId(), id))
		}
		if t.GetStatus().GetUuid() == st.GetUuid() {
			lastCommitted[tk{st.GetFrameworkId(), st.GetTaskId()}] = i
		}
	}
	var fresh []*agorav1.TaskStatus
	for i, st := range r.GetStatuses() {
		k := tk{st.GetFrameworkId(), st.GetTaskId()}
		if last, ok := lastCommitted[k]; ok && i <= last {
			continue
		}
		t, _ := state.Task(k.fw, k.task)
		if fsm.IsTerminal(t.GetState()) {
			s.m.Logger().Debug("ignoring status update of a terminal task", "agent", id, "task", k.task, "state", st.GetState(), "task_state", t.GetState())
			continue
		}
		if st.GetAgentId() == "" {
			st.AgentId = id
		}
		fresh = append(fresh, st)
	}
	if len(fresh) == 0 {
		return connect.NewResponse(&agorav1.UpdateStatusResponse{Index: state.Index()}), nil
	}
	res, err := s.m.Apply(ctx, fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{
		AgentId:  id,
		Statuses: fresh,
		Now:      timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.UpdateStatusResponse{Index: res.Index}), nil
}

func agentStateName(s agorav1.AgentState) string {
	switch s {
	case agorav1.AgentState_AGENT_STATE_ACTIVE:
		return "active"
	case agorav1.AgentState_AGENT_STATE_DRAINING:
		return "draining"
	case agorav1.AgentState_AGENT_STATE_UNREACHABLE:
		return "unreachable"
	case agorav1.AgentState_AGENT_STATE_GONE:
		return "gone"
	}
	return s.String()
}

// GetAssignments answers from this master's local state (any master
// serves it): it waits until the state passes min_index or the wait (at
// most 30 s) ends. known is false when the agent must register (unknown,
// unreachable or gone).
func (s *agentServer) GetAssignments(ctx context.Context, req *connect.Request[agorav1.GetAssignmentsRequest]) (*connect.Response[agorav1.GetAssignmentsResponse], error) {
	r := req.Msg
	id := r.GetAgentId()
	if !agentIDRE.MatchString(id) {
		return nil, invalidArg("invalid agent id %q", id)
	}
	w := r.GetWaitSeconds()
	if w != w || w < 0 { // NaN or negative
		return nil, invalidArg("wait_seconds %g must be a number >= 0", w)
	}
	wait := maxAssignmentWait
	if w < maxAssignmentWait.Seconds() {
		wait = time.Duration(w * float64(time.Second))
	}
	state, err := s.waitIndex(ctx, r.GetMinIndex(), wait)
	if err != nil {
		return nil, err
	}
	out := &agorav1.GetAssignmentsResponse{Index: state.Index()}
	agent, ok := state.Agent(id)
	out.Known = ok && sameAgentActive(agent)
	if !out.Known {
		return connect.NewResponse(out), nil
	}
	for _, t := range state.TasksByAgent(id) {
		if !fsm.IsTerminal(t.GetState()) {
			out.Tasks = append(out.Tasks, t)
		}
	}
	out.Volumes = state.VolumesByAgent(id)
	return connect.NewResponse(out), nil
}

// waitIndex returns the local state once its index passes minIndex, or
// the latest state when wait ends.
func (s *agentServer) waitIndex(ctx context.Context, minIndex uint64, wait time.Duration) (*fsm.State, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := s.m.FSM().Changed()
		st := s.m.State()
		if st.Index() > minIndex {
			return st, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return s.m.State(), nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
			}
			return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
		case <-s.m.Done():
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s is shutting down", s.m.ID()))
		}
	}
}
