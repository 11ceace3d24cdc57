package ui_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
	"github.com/agora-sched/agora/service"
	"github.com/agora-sched/agora/ui"
)

// world is an FSM driven by commands, as Raft would drive it, and a fake
// ui.Source over it.
type world struct {
	tb  testing.TB
	f   *fsm.FSM
	idx uint64
	now time.Time

	// What the fake Source answers besides the state.
	raftState, leaderID, leaderURL string
	masters                        []ui.MasterView
	services                       []ui.Service
	explain                        *agorav1.ExplainFrameworkResponse
	explainErr                     error
	logs                           map[string]string // "fid/tid/stream" -> text
	done                           chan struct{}
}

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func newWorld(tb testing.TB) *world {
	return &world{tb: tb, f: fsm.New(fsm.Config{}), now: t0, raftState: "leader", leaderID: "m1",
		leaderURL: "http://127.0.0.1:1", logs: map[string]string{}, done: make(chan struct{})}
}

func (w *world) ts() *timestamppb.Timestamp { return timestamppb.New(w.now) }

func (w *world) apply(t fsm.CommandType, m proto.Message) fsm.Result {
	w.tb.Helper()
	w.idx++
	res, err := w.f.ApplyMessage(w.idx, t, m)
	if err != nil {
		w.tb.Fatal(err)
	}
	if res.Err != nil {
		w.tb.Fatalf("%s rejected: %v", t, res.Err)
	}
	return res
}

func res(spec string) []*agorav1.Resource { return resourcepb.ToProto("", resources.MustParse(spec)) }

func (w *world) agent(id, spec string, attrs map[string]string) {
	w.apply(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: w.ts(), Agent: &agorav1.Agent{
		Id: id, Hostname: "host-" + id, Address: "127.0.0.1:9", Resources: res(spec), Attributes: attrs}})
}

func (w *world) framework(id, principal string, roles []string, caps ...agorav1.Capability) {
	w.apply(fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: w.ts(), Framework: &agorav1.Framework{
		Id: id, StreamToken: "tok-" + id, Info: &agorav1.FrameworkInfo{Id: id, Name: "name-" + id, Principal: principal,
			Roles: roles, Capabilities: caps, FailoverTimeoutSeconds: 3600}}})
}

// offers makes one offer per agent to fid of spec, in one command.
func (w *world) offers(fid, role, spec string, agents []string, revocable bool) []string {
	var os []*agorav1.Offer
	for _, a := range agents {
		w.idx++ // ids unique across calls
		os = append(os, &agorav1.Offer{Id: fmt.Sprintf("o-%d-%s", w.idx, a), FrameworkId: fid, AgentId: a, Role: role,
			Resources: res(spec), Revocable: revocable, ExpiresAt: timestamppb.New(w.now.Add(time.Minute))})
	}
	r := w.apply(fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: w.ts(), Offers: os})
	if len(r.IDs) != len(agents) {
		w.tb.Fatalf("offers kept %d of %d", len(r.IDs), len(agents))
	}
	return r.IDs
}

// launch accepts offer with tasks tasks of spec named prefix-i.
func (w *world) launch(fid, offer, agent, prefix string, n int, spec string) {
	op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
	for i := range n {
		op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: fmt.Sprintf("%s-%d", prefix, i), Name: prefix, AgentId: agent,
			Resources: res(spec), Command: &agorav1.CommandInfo{Value: "sleep 3600"}})
	}
	w.apply(fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: fid, OfferIds: []string{offer}, Now: w.ts(),
		Operations: []*agorav1.Operation{op}})
}

func (w *world) status(agent, fid, tid string, st agorav1.TaskState, reason string) {
	w.idx++
	w.apply(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: agent, Now: w.ts(), Statuses: []*agorav1.TaskStatus{{
		TaskId: tid, FrameworkId: fid, AgentId: agent, State: st, Reason: reason, Uuid: fmt.Sprintf("u-%d", w.idx),
		Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Timestamp: w.ts()}}})
}

// small builds the world the handler tests look at: 3 agents (a3
// drained), roles web and batch, a connected framework with tasks in
// several states, a disconnected one, a reservation, a volume, an offer.
func small(tb testing.TB) *world {
	w := newWorld(tb)
	w.apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "web", Weight: 2, Priority: 10, Guarantee: res("cpus:2")}})
	w.apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "batch", MaxUtilization: 0.9}})
	for _, a := range []string{"a1", "a2", "a3"} {
		w.agent(a, "cpus:8;mem:8192;disk:10000", map[string]string{"rack": "r-" + a})
	}
	w.framework("fw-web", "alice", []string{"web"})
	w.framework("fw-batch", "bob", []string{"batch"}, agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES)
	ids := w.offers("fw-web", "web", "cpus:2;mem:1024;disk:1000", []string{"a1", "a2"}, false)
	w.launch("fw-web", ids[0], "a1", "web", 3, "cpus:0.5;mem:256")
	// Reserve, create a volume and launch on it, in one accept on a2.
	w.apply(fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "fw-web", OfferIds: []string{ids[1]}, Now: w.ts(), Ids: []string{"resv-1"},
		Operations: []*agorav1.Operation{
			{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: resourcepb.ToProto("web", resources.MustParse("cpus:1;mem:512;disk:500")),
				Labels: map[string]string{"pod": "db-0"}},
			{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: []*agorav1.VolumeInfo{{Id: "vol-1", SizeMib: 200, ContainerPath: "data", Role: "web"}}},
		}})
	w.status("a1", "fw-web", "web-0", agorav1.TaskState_TASK_STATE_RUNNING, "")
	w.status("a1", "fw-web", "web-1", agorav1.TaskState_TASK_STATE_KILLED, "PREEMPTED")
	bids := w.offers("fw-batch", "batch", "cpus:1;mem:512", []string{"a3"}, true)
	w.launch("fw-batch", bids[0], "a3", "batch", 1, "cpus:1;mem:512")
	w.status("a3", "fw-batch", "batch-0", agorav1.TaskState_TASK_STATE_RUNNING, "")
	w.offers("fw-web", "web", "cpus:1;mem:256", []string{"a2"}, false)
	w.apply(fsm.CmdDrainAgent, &agorav1.DrainAgentCommand{AgentId: "a3", Now: w.ts(), Deadline: timestamppb.New(w.now.Add(time.Hour))})
	w.apply(fsm.CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{FrameworkId: "fw-batch", StreamToken: "tok-fw-batch", Now: w.ts()})
	w.now = w.now.Add(10 * time.Minute) // fw-batch has 50m of failover left
	w.masters = []ui.MasterView{
		{ID: "m1", URL: "http://127.0.0.1:1", Suffrage: "voter", State: "leader", Answered: true, AppliedIndex: w.idx},
		{ID: "m2", URL: "http://127.0.0.1:2", Suffrage: "voter", State: "follower", Answered: true, AppliedIndex: w.idx - 3, Lag: 3},
		{ID: "m3", URL: "http://127.0.0.1:3", Suffrage: "voter", State: "unknown"},
	}
	w.services = []ui.Service{{Name: "kv", FrameworkID: "fw-web", Version: 7, Status: service.Status{Name: "kv", Role: "web",
		Plan: service.PlanStatus{State: "IN_PROGRESS", Step: "deploy kv-db-1"},
		Pods: []service.PodStatus{
			{Name: "kv-db-0", State: "RUNNING", AgentID: "a2", TaskID: "kv-db-0-t1", Address: "127.0.0.1:31000", VolumeID: "vol-1", Ready: true},
			{Name: "kv-db-1", Index: 1, State: "PENDING"},
		}}}}
	w.logs["fw-web/web-0/stdout"] = "hello from web-0\n"
	return w
}

// --- ui.Source ---

func (w *world) View() ui.View {
	st := w.f.State()
	return ui.View{State: st, Self: "m1", Cluster: "test", RaftState: w.raftState, LeaderID: w.leaderID, LeaderURL: w.leaderURL,
		LeaderReady: w.raftState == "leader", Term: 2, CommitIndex: st.Index(), AppliedIndex: st.Index(), Now: w.now}
}

func (w *world) Masters(context.Context) []ui.MasterView { return w.masters }

func (w *world) Explain(_ context.Context, fid string) (*agorav1.ExplainFrameworkResponse, error) {
	if w.explainErr != nil {
		return nil, w.explainErr
	}
	if w.explain == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("no round yet"))
	}
	return w.explain, nil
}

func (w *world) Services(*fsm.State) ([]ui.Service, error) { return w.services, nil }

func (w *world) TaskLog(_ context.Context, _, fid, tid, stream string, max int) ([]byte, error) {
	s, ok := w.logs[fid+"/"+tid+"/"+stream]
	if !ok {
		return nil, errors.New("agent answered 404: no " + stream)
	}
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return []byte(s), nil
}

func (w *world) Done() <-chan struct{} { return w.done }
