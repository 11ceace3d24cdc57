package master

import (
	"context"
	"sort"
	"strings"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// operatorServer implements agora.v1.OperatorService.
type operatorServer struct {
	agorav1connect.UnimplementedOperatorServiceHandler
	m *Master
}

var _ agorav1connect.OperatorServiceHandler = (*operatorServer)(nil)

// GetStatus answers from this master's local view, leader or not, so that
// operators can see a cluster without a leader.
func (s *operatorServer) GetStatus(_ context.Context, _ *connect.Request[agorav1.GetStatusRequest]) (*connect.Response[agorav1.GetStatusResponse], error) {
	m := s.m
	st := m.fsm.State()
	rs := m.raftStats()
	resp := &agorav1.GetStatusResponse{
		Masters: m.masterViews(),
		Raft: &agorav1.RaftStatus{
			Term: rs.term, CommitIndex: rs.commit, AppliedIndex: rs.applied,
			LastSnapshotIndex: rs.lastSnapshot, State: strings.ToLower(rs.state),
		},
		Counts:     counts(st),
		AnsweredBy: m.cfg.ID,
		Cluster:    m.cfg.Cluster,
	}
	if id, url := m.Leader(); id != "" {
		resp.Leader = &agorav1.Master{Id: id, HttpAddress: url, State: agorav1.MasterState_MASTER_STATE_LEADER}
		for _, v := range resp.Masters {
			if v.GetId() == id {
				resp.Leader = v
			}
		}
	}
	return connect.NewResponse(resp), nil
}

func counts(st *fsm.State) *agorav1.Counts {
	c := &agorav1.Counts{
		AgentsByState: make(map[string]uint64),
		TasksByState:  make(map[string]uint64),
	}
	agents := st.Agents()
	c.Agents = uint64(len(agents))
	for _, a := range agents {
		c.AgentsByState[enumName(a.GetState().String(), "AGENT_STATE_")]++
	}
	tasks := st.Tasks()
	c.Tasks = uint64(len(tasks))
	for _, t := range tasks {
		c.TasksByState[enumName(t.GetState().String(), "TASK_STATE_")]++
		if !t.GetAcknowledged() && t.GetStatus().GetUuid() != "" {
			c.TasksUnacknowledged++
		}
	}
	c.Frameworks = uint64(len(st.Frameworks()))
	c.Offers = uint64(len(st.Offers()))
	c.Roles = uint64(len(st.Roles()))
	c.Reservations = uint64(len(st.Reservations()))
	c.Volumes = uint64(len(st.Volumes()))
	return c
}

// enumName turns "TASK_STATE_RUNNING" into "running".
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

// masterViews merges the local Raft configuration with gossip and the
// replicated master records. Live masters of our cluster that are not in
// the configuration yet are listed with suffrage "none".
func (m *Master) masterViews() []*agorav1.Master {
	leaderID, _ := m.Leader()
	alive := make(map[string]peer)
	if m.pool != nil {
		for _, p := range m.aliveMasters() {
			alive[p.id] = p
		}
	}
	recorded := make(map[string]*agorav1.Master)
	for _, r := range m.fsm.State().Masters() {
		recorded[r.GetId()] = r
	}
	var out []*agorav1.Master
	seen := make(map[string]bool)
	view := func(id, raftAddr, suffrage string) *agorav1.Master {
		v := &agorav1.Master{Id: id, RaftAddress: raftAddr, Suffrage: suffrage}
		if r, ok := recorded[id]; ok {
			v.HttpAddress, v.GossipAddress = r.GetHttpAddress(), r.GetGossipAddress()
			if v.RaftAddress == "" {
				v.RaftAddress = r.GetRaftAddress()
			}
		}
		p, isAlive := alive[id]
		if isAlive {
			v.HttpAddress, v.GossipAddress = m.urlOf(p.httpAddr), p.gossipAddr
		}
		switch {
		case id == leaderID:
			v.State = agorav1.MasterState_MASTER_STATE_LEADER
		case id == m.cfg.ID && m.raft.State() == raft.Candidate:
			v.State = agorav1.MasterState_MASTER_STATE_CANDIDATE
		case id == m.cfg.ID && m.raft.State() == raft.Follower:
			v.State = agorav1.MasterState_MASTER_STATE_FOLLOWER
		case isAlive && leaderID != "":
			v.State = agorav1.MasterState_MASTER_STATE_FOLLOWER
		default:
			v.State = agorav1.MasterState_MASTER_STATE_UNKNOWN
		}
		if id == m.cfg.ID {
			v.HttpAddress = m.httpURL
		}
		return v
	}
	if f := m.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			id := string(srv.ID)
			seen[id] = true
			out = append(out, view(id, string(srv.Address), suffrageName(srv.Suffrage)))
		}
	}
	for id, p := range alive {
		if !seen[id] {
			out = append(out, view(id, p.raftAddr, "none"))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return strings.ToLower(s.String())
}

// SetRole creates or replaces a role. ValidateRole is the FSM's own check of
// a role, which needs no state: called here too so that a follower answers
// bad input itself instead of redirecting it.
func (s *operatorServer) SetRole(ctx context.Context, req *connect.Request[agorav1.SetRoleRequest]) (*connect.Response[agorav1.SetRoleResponse], error) {
	role := req.Msg.GetRole()
	if rej := fsm.ValidateRole(role); rej != nil {
		return nil, RejectionError(rej)
	}
	res, err := s.m.Apply(ctx, fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: role})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.SetRoleResponse{Index: res.Index}), nil
}

// DeleteRole removes a role's configuration.
func (s *operatorServer) DeleteRole(ctx context.Context, req *connect.Request[agorav1.DeleteRoleRequest]) (*connect.Response[agorav1.DeleteRoleResponse], error) {
	res, err := s.m.Apply(ctx, fsm.CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: req.Msg.GetName()})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DeleteRoleResponse{Index: res.Index}), nil
}

func (s *operatorServer) ListRoles(ctx context.Context, req *connect.Request[agorav1.ListRolesRequest]) (*connect.Response[agorav1.ListRolesResponse], error) {
	st, err := s.m.ReadState(ctx, req.Msg.GetRead().GetStale())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ListRolesResponse{Roles: st.Roles()}), nil
}

func (s *operatorServer) ListPeers(ctx context.Context, req *connect.Request[agorav1.ListPeersRequest]) (*connect.Response[agorav1.ListPeersResponse], error) {
	if _, err := s.m.ReadState(ctx, req.Msg.GetRead().GetStale()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ListPeersResponse{Peers: s.m.masterViews()}), nil
}

func (s *operatorServer) ListAgents(ctx context.Context, req *connect.Request[agorav1.ListAgentsRequest]) (*connect.Response[agorav1.ListAgentsResponse], error) {
	st, err := s.m.ReadState(ctx, req.Msg.GetRead().GetStale())
	if err != nil {
		return nil, err
	}
	agents := st.Agents()
	out := make([]*agorav1.AgentView, 0, len(agents))
	for _, a := range agents {
		u := st.AgentUsage(a.GetId())
		out = append(out, &agorav1.AgentView{
			Agent:    a,
			Used:     u.Used.ToProto(),
			Offered:  u.Offered.ToProto(),
			Reserved: u.Reserved.ToProto(),
		})
	}
	return connect.NewResponse(&agorav1.ListAgentsResponse{Agents: out}), nil
}

func (s *operatorServer) ListTasks(ctx context.Context, req *connect.Request[agorav1.ListTasksRequest]) (*connect.Response[agorav1.ListTasksResponse], error) {
	st, err := s.m.ReadState(ctx, req.Msg.GetRead().GetStale())
	if err != nil {
		return nil, err
	}
	fid, aid := req.Msg.GetFrameworkId(), req.Msg.GetAgentId()
	var tasks []*agorav1.Task
	switch {
	case fid != "":
		tasks = st.TasksByFramework(fid)
	case aid != "":
		tasks = st.TasksByAgent(aid)
	default:
		tasks = st.Tasks()
	}
	if fid != "" && aid != "" {
		kept := tasks[:0:0]
		for _, t := range tasks {
			if t.GetAgentId() == aid {
				kept = append(kept, t)
			}
		}
		tasks = kept
	}
	return connect.NewResponse(&agorav1.ListTasksResponse{Tasks: tasks}), nil
}

func (s *operatorServer) ListFrameworks(ctx context.Context, req *connect.Request[agorav1.ListFrameworksRequest]) (*connect.Response[agorav1.ListFrameworksResponse], error) {
	st, err := s.m.ReadState(ctx, req.Msg.GetRead().GetStale())
	if err != nil {
		return nil, err
	}
	fws := st.Frameworks()
	out := make([]*agorav1.Framework, 0, len(fws))
	for _, fw := range fws {
		// The stream's identity stays inside the masters: it is not the
		// secret a framework's calls carry, but nothing outside needs it.
		c := proto.CloneOf(fw)
		c.StreamToken = ""
		out = append(out, c)
	}
	return connect.NewResponse(&agorav1.ListFrameworksResponse{Frameworks: out}), nil
}

func (s *operatorServer) ListOffers(ctx context.Context, req *connect.Request[agorav1.ListOffersRequest]) (*connect.Response[agorav1.ListOffersResponse], error) {
	st, err := s.m.ReadState(ctx, req.Msg.GetRead().GetStale())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ListOffersResponse{Offers: st.Offers()}), nil
}

func (s *operatorServer) ListReservations(ctx context.Context, req *connect.Request[agorav1.ListReservationsRequest]) (*connect.Response[agorav1.ListReservationsResponse], error) {
	st, err := s.m.ReadState(ctx, req.Msg.GetRead().GetStale())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ListReservationsResponse{Reservations: st.Reservations(), Volumes: st.Volumes()}), nil
}

// TeardownFramework ends a framework on an operator's request.
func (s *operatorServer) TeardownFramework(ctx context.Context, req *connect.Request[agorav1.TeardownFrameworkRequest]) (*connect.Response[agorav1.TeardownFrameworkResponse], error) {
	if s.m.authOn() {
		st, err := s.m.ReadyState(ctx)
		if err != nil {
			return nil, err
		}
		if fw, ok := st.Framework(req.Msg.GetFrameworkId()); ok {
			if err := s.m.sec.mayTeardown(ctx, fw); err != nil {
				return nil, err
			}
		}
	}
	_, err := s.m.applyChange(ctx, fsm.CmdTeardownFramework, &agorav1.TeardownFrameworkCommand{
		FrameworkId: req.Msg.GetFrameworkId(),
		Reason:      "torn down by an operator",
		Now:         timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.TeardownFrameworkResponse{}), nil
}
