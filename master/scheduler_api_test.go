package master_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// --- harness ---

// schedCluster is what scheduler tests talk to: the handlers over the
// FSM-backed master.Harness (no Raft), or an in-process 3-master cluster for
// what needs Raft, leader changes or the leader's expiry. Agents are fakes
// registered with fsm commands; LivenessGrace is long so that the liveness
// loop never marks them unreachable (they are not in gossip).
type schedCluster struct {
	t testing.TB
	c *devcluster.Cluster
	h *master.Harness
}

// schedLeader is the master a scheduler test talks to.
type schedLeader interface {
	Apply(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error)
	State() *fsm.State
	HTTPURL() string
	ID() string
}

// startSchedHarness serves the handlers over an FSM without Raft.
func startSchedHarness(t testing.TB, tweak func(*master.Config)) *schedCluster {
	h := master.NewHarness(t, testLogger(), func(cfg *master.Config) {
		cfg.LivenessGrace = time.Hour
		if tweak != nil {
			tweak(cfg)
		}
	})
	return &schedCluster{t: t, h: h}
}

func startSchedCluster(t testing.TB, tweak func(*master.Config)) *schedCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{
		Masters: 3,
		Logger:  testLogger(),
		MasterConfig: func(cfg *master.Config) {
			cfg.LivenessGrace = time.Hour
			if tweak != nil {
				tweak(cfg)
			}
		},
	})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return &schedCluster{t: t, c: c}
}

func (sc *schedCluster) leader() schedLeader {
	if sc.h != nil {
		return sc.h
	}
	return sc.master()
}

// master is the cluster's leader.
func (sc *schedCluster) master() *master.Master {
	sc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := sc.c.WaitLeader(ctx)
	if err != nil {
		sc.t.Fatal(err)
	}
	return l
}

func (sc *schedCluster) apply(ct fsm.CommandType, msg proto.Message) fsm.Result {
	sc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := sc.leader().Apply(ctx, ct, msg)
	if err != nil {
		sc.t.Fatalf("apply %v: %v", ct, err)
	}
	return res
}

// registerAgent registers a fake agent with unreserved resources.
func (sc *schedCluster) registerAgent(id, spec string) {
	sc.t.Helper()
	sc.apply(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{
		Agent: &agorav1.Agent{Id: id, Hostname: "host-" + id, Resources: resourcepb.ToProto("", resources.MustParse(spec)),
			Attributes: map[string]string{"rack": "r1"}},
		Now: timestamppb.Now(),
	})
}

// retireAgent marks an agent gone so that later subtests are not offered it.
func (sc *schedCluster) retireAgent(id string) {
	sc.t.Helper()
	sc.apply(fsm.CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: id, Now: timestamppb.Now()})
}

// taskStatus sends an agent status update for a task.
func (sc *schedCluster) taskStatus(agentID, fid, tid string, state agorav1.TaskState) string {
	sc.t.Helper()
	uuid := master.NewID()
	sc.apply(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: agentID, Now: timestamppb.Now(),
		Statuses: []*agorav1.TaskStatus{{TaskId: tid, FrameworkId: fid, AgentId: agentID, State: state, Uuid: uuid}}})
	return uuid
}

func (sc *schedCluster) client() agorav1connect.SchedulerServiceClient {
	return agorav1connect.NewSchedulerServiceClient(http.DefaultClient, sc.leader().HTTPURL())
}

// quiesce waits until the leader's applied index stops moving (allocation
// rounds triggered by earlier changes have landed) and returns it.
func (sc *schedCluster) quiesce() uint64 {
	sc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last, stable := uint64(0), 0
	for time.Now().Before(deadline) {
		idx := sc.leader().State().Index()
		if idx == last {
			stable++
			if stable >= 4 {
				return idx
			}
		} else {
			last, stable = idx, 0
		}
		time.Sleep(25 * time.Millisecond)
	}
	sc.t.Fatal("cluster never quiesced")
	return 0
}

func (sc *schedCluster) waitFor(what string, cond func(st *fsm.State) error) {
	sc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(sc.leader().State()); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	sc.t.Fatalf("%s: %v", what, err)
}

// fwStream is a framework's subscription as a test sees it.
type fwStream struct {
	cancel context.CancelFunc
	events chan *agorav1.SubscribeResponse
	done   chan struct{}

	mu  sync.Mutex
	err error

	fid, token string
}

// subscribe opens a stream at url and waits for SUBSCRIBED.
func schedSubscribe(t testing.TB, url string, info *agorav1.FrameworkInfo) *fwStream {
	t.Helper()
	f, err := schedTrySubscribe(url, info)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(f.cancel)
	return f
}

func schedTrySubscribe(url string, info *agorav1.FrameworkInfo) (*fwStream, error) {
	return schedTrySubscribeReq(url, &agorav1.SubscribeRequest{FrameworkInfo: info})
}

func schedTrySubscribeReq(url string, req *agorav1.SubscribeRequest) (*fwStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cl := agorav1connect.NewSchedulerServiceClient(http.DefaultClient, url)
	s, err := cl.Subscribe(ctx, connect.NewRequest(req))
	if err != nil {
		cancel()
		return nil, err
	}
	f := &fwStream{cancel: cancel, events: make(chan *agorav1.SubscribeResponse, 4096), done: make(chan struct{})}
	if !s.Receive() {
		cancel()
		return nil, fmt.Errorf("stream ended before SUBSCRIBED: %w", s.Err())
	}
	sub := s.Msg().GetSubscribed()
	if sub == nil {
		cancel()
		return nil, fmt.Errorf("first event is %v, want SUBSCRIBED", s.Msg())
	}
	f.fid, f.token = sub.GetFrameworkId(), sub.GetStreamToken()
	go func() {
		defer close(f.done)
		for s.Receive() {
			f.events <- s.Msg()
		}
		f.mu.Lock()
		f.err = s.Err()
		f.mu.Unlock()
		_ = s.Close()
	}()
	return f, nil
}

func (f *fwStream) call() *agorav1.FrameworkCall {
	return &agorav1.FrameworkCall{FrameworkId: f.fid, StreamToken: f.token}
}

// next returns the next event for which match is true, skipping others.
func (f *fwStream) next(t testing.TB, what string, match func(*agorav1.SubscribeResponse) bool) *agorav1.SubscribeResponse {
	t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-f.events:
			if match(ev) {
				return ev
			}
		case <-f.done:
			// Drain what was received before the end.
			select {
			case ev := <-f.events:
				if match(ev) {
					return ev
				}
				continue
			default:
			}
			t.Fatalf("waiting for %s: stream ended: %v", what, f.endErr())
		case <-timeout.C:
			t.Fatalf("waiting for %s: timed out", what)
		}
	}
}

// offerOn waits for an offer on the agent.
func (f *fwStream) offerOn(t testing.TB, agentID string) *agorav1.Offer {
	t.Helper()
	var got *agorav1.Offer
	f.next(t, "offer on "+agentID, func(ev *agorav1.SubscribeResponse) bool {
		for _, o := range ev.GetOffers().GetOffers() {
			if o.GetAgentId() == agentID {
				got = o
				return true
			}
		}
		return false
	})
	return got
}

func (f *fwStream) endErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// waitEnd waits for the stream to end and returns its error.
func (f *fwStream) waitEnd(t testing.TB) error {
	t.Helper()
	select {
	case <-f.done:
		return f.endErr()
	case <-time.After(15 * time.Second):
		t.Fatal("stream did not end")
		return nil
	}
}

func schedLaunchOp(agentID string, tasks ...*agorav1.TaskInfo) *agorav1.Operation {
	for _, t := range tasks {
		if t.AgentId == "" {
			t.AgentId = agentID
		}
	}
	return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: tasks}
}

func schedTask(id, spec string) *agorav1.TaskInfo {
	return &agorav1.TaskInfo{TaskId: id, Name: id, Resources: resourcepb.ToProto("", resources.MustParse(spec)),
		Command: &agorav1.CommandInfo{Value: "sleep 1000"}}
}

func schedInfo(name string, roles ...string) *agorav1.FrameworkInfo {
	return &agorav1.FrameworkInfo{Name: name, Roles: roles}
}

func schedPtr(v float64) *float64 { return &v }

func schedWantCode(t testing.TB, what string, err error, code connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

// --- tests ---

// TestSchedulerAPI runs the framework API's behaviour against the handlers
// over the FSM-backed harness: no Raft, no cluster.
func TestSchedulerAPI(t *testing.T) {
	sc := startSchedHarness(t, func(c *master.Config) { c.HeartbeatInterval = 200 * time.Millisecond })
	t.Run("offers launch status reconcile", func(t *testing.T) { testOffersLaunch(t, sc) })
	t.Run("acknowledge a list", func(t *testing.T) { testAcknowledgeBatch(t, sc) })
	t.Run("batched updates", func(t *testing.T) { testBatchedUpdates(t, sc) })
	t.Run("bad input changes nothing", func(t *testing.T) { testBadInput(t, sc) })
	t.Run("decline filter", func(t *testing.T) { testDeclineFilter(t, sc) })
	t.Run("suppress and revive", func(t *testing.T) { testSuppressRevive(t, sc) })
	t.Run("stream replacement", func(t *testing.T) { testReplacement(t, sc) })
	t.Run("bad subscriptions", func(t *testing.T) { testBadSubscribe(t, sc) })
}

func testOffersLaunch(t *testing.T, sc *schedCluster) {
	sc.registerAgent("ag-launch", "cpus:4;mem:2048;ports:[31000-31009]")
	defer sc.retireAgent("ag-launch")
	f := schedSubscribe(t, sc.leader().HTTPURL(), schedInfo("launcher", "web"))
	defer schedTeardown(t, sc, f)
	o := f.offerOn(t, "ag-launch")
	if o.GetFrameworkId() != f.fid || o.GetRole() != "web" || o.GetHostname() != "host-ag-launch" || o.GetAttributes()["rack"] != "r1" {
		t.Fatalf("offer = %v", o)
	}
	if !o.GetExpiresAt().AsTime().After(o.GetCreatedAt().AsTime()) {
		t.Fatalf("offer expires %v before it was created %v", o.GetExpiresAt().AsTime(), o.GetCreatedAt().AsTime())
	}
	ctx := context.Background()
	cl := sc.client()
	_, err := cl.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{o.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", schedTask("t1", "cpus:1;mem:256"))}, RefuseSeconds: schedPtr(0)}))
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	st := sc.leader().State()
	tk, ok := st.Task(f.fid, "t1")
	if !ok || tk.GetState() != agorav1.TaskState_TASK_STATE_STAGING || tk.GetAgentId() != "ag-launch" {
		t.Fatalf("task = %v", tk)
	}
	if _, ok := st.Offer(o.GetId()); ok {
		t.Fatal("accepted offer still outstanding")
	}
	// The unused part comes back as a new offer.
	if o2 := f.offerOn(t, "ag-launch"); o2.GetId() == o.GetId() {
		t.Fatal("re-offer has the accepted offer's id")
	}

	// An agent status update reaches the stream with its uuid; it is resent
	// until acknowledged (the heartbeat interval is short here).
	uuid := sc.taskStatus("ag-launch", f.fid, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	isUpdate := func(ev *agorav1.SubscribeResponse) bool { return ev.GetUpdate().GetStatus().GetUuid() == uuid }
	f.next(t, "RUNNING update", isUpdate)
	f.next(t, "RUNNING update resent", isUpdate)
	f.next(t, "heartbeat", func(ev *agorav1.SubscribeResponse) bool { return ev.GetHeartbeat() != nil })
	if _, err := cl.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: f.call(), AgentId: "ag-launch", TaskId: "t1", Uuid: uuid})); err != nil {
		t.Fatalf("acknowledge: %v", err)
	}
	if tk, _ := sc.leader().State().Task(f.fid, "t1"); !tk.GetAcknowledged() {
		t.Fatal("acknowledgement not recorded")
	}

	// A newer update supersedes it; acknowledging the old one again (a
	// framework that saw a resend late) succeeds and logs nothing.
	newer := sc.taskStatus("ag-launch", f.fid, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	before := sc.quiesce()
	if _, err := cl.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: f.call(), AgentId: "ag-launch", TaskId: "t1", Uuid: uuid})); err != nil {
		t.Fatalf("acknowledge a superseded update: %v", err)
	}
	if idx := sc.leader().State().Index(); idx != before {
		t.Fatalf("acknowledging a superseded update moved the index from %d to %d", before, idx)
	}
	if tk, _ := sc.leader().State().Task(f.fid, "t1"); tk.GetStatus().GetUuid() != newer || tk.GetAcknowledged() {
		t.Fatalf("after acknowledging the superseded update the task is %v, want %s unacknowledged", tk, newer)
	}
	if _, err := cl.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: f.call(), AgentId: "ag-launch", TaskId: "t1", Uuid: newer})); err != nil {
		t.Fatalf("acknowledge the newer update: %v", err)
	}

	// Reconcile: explicit (known and unknown task), then implicit.
	rec, err := cl.Reconcile(ctx, connect.NewRequest(&agorav1.ReconcileRequest{Call: f.call(),
		Tasks: []*agorav1.ReconcileTask{{TaskId: "t1"}, {TaskId: "ghost", AgentId: "ag-launch"}}}))
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	got := rec.Msg.GetStatuses()
	if len(got) != 2 || got[0].GetState() != agorav1.TaskState_TASK_STATE_RUNNING || got[1].GetState() != agorav1.TaskState_TASK_STATE_LOST ||
		got[0].GetUuid() != "" || got[1].GetUuid() != "" {
		t.Fatalf("reconcile statuses = %v", got)
	}
	f.next(t, "reconcile update for ghost", func(ev *agorav1.SubscribeResponse) bool {
		s := ev.GetUpdate().GetStatus()
		return s.GetTaskId() == "ghost" && s.GetUuid() == "" && s.GetState() == agorav1.TaskState_TASK_STATE_LOST
	})
	rec, err = cl.Reconcile(ctx, connect.NewRequest(&agorav1.ReconcileRequest{Call: f.call()}))
	if err != nil || len(rec.Msg.GetStatuses()) != 1 || rec.Msg.GetStatuses()[0].GetTaskId() != "t1" {
		t.Fatalf("implicit reconcile = %v, %v", rec, err)
	}

	// Kill marks the task for the agent.
	if _, err := cl.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: f.call(), TaskId: "t1"})); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if tk, _ := sc.leader().State().Task(f.fid, "t1"); !tk.GetKillRequested() {
		t.Fatal("kill not recorded")
	}
}

// teardown ends a test's framework so that it takes no offers from later
// subtests.
func schedTeardown(t *testing.T, sc *schedCluster, f *fwStream) {
	t.Helper()
	_, err := sc.client().Teardown(context.Background(), connect.NewRequest(&agorav1.TeardownRequest{Call: f.call()}))
	if err != nil && connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("teardown: %v", err)
	}
}

func testBadInput(t *testing.T, sc *schedCluster) {
	sc.registerAgent("ag-bad", "cpus:2;mem:1024")
	defer sc.retireAgent("ag-bad")
	url := sc.leader().HTTPURL()
	a := schedSubscribe(t, url, schedInfo("alpha", "web"))
	defer schedTeardown(t, sc, a)
	oa := a.offerOn(t, "ag-bad")
	b := schedSubscribe(t, url, schedInfo("beta", "web"))
	defer schedTeardown(t, sc, b)
	ctx := context.Background()
	cl := sc.client()

	// alpha launches t1 with part of its offer; the rest goes to beta.
	if _, err := cl.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: a.call(), OfferIds: []string{oa.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", schedTask("t1", "cpus:1;mem:256"))}, RefuseSeconds: schedPtr(3600)})); err != nil {
		t.Fatalf("accept: %v", err)
	}
	ob := b.offerOn(t, "ag-bad")
	uuid := sc.taskStatus("ag-bad", a.fid, "t1", agorav1.TaskState_TASK_STATE_RUNNING)

	// A declined and a rescinded offer of beta, to accept later.
	if _, err := cl.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: b.call(), OfferIds: []string{ob.GetId()}, RefuseSeconds: schedPtr(0)})); err != nil {
		t.Fatalf("decline: %v", err)
	}
	declined := ob
	ob = b.offerOn(t, "ag-bad")
	sc.apply(fsm.CmdRescindOffers, &agorav1.RescindOffersCommand{OfferIds: []string{ob.GetId()}, Reason: "test"})
	rescinded := ob
	b.next(t, "RESCIND", func(ev *agorav1.SubscribeResponse) bool { return ev.GetRescind().GetOfferId() == rescinded.GetId() })
	ob = b.offerOn(t, "ag-bad")

	accept := func(f *fwStream, offers []string, ops ...*agorav1.Operation) error {
		_, err := cl.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: offers, Operations: ops}))
		return err
	}
	launch := func(tasks ...*agorav1.TaskInfo) *agorav1.Operation { return schedLaunchOp("", tasks...) }
	demand := func(f *fwStream, ds ...*agorav1.Demand) error {
		_, err := cl.Demand(ctx, connect.NewRequest(&agorav1.DemandRequest{Call: f.call(), Demands: ds}))
		return err
	}
	reservation := func(typ agorav1.OperationType, role string) *agorav1.Operation {
		r := resourcepb.ToProto(role, resources.MustParse("cpus:0.5"))
		return &agorav1.Operation{Type: typ, Resources: r}
	}
	withAgent := func(ti *agorav1.TaskInfo, agent string) *agorav1.TaskInfo { ti.AgentId = agent; return ti }
	noResources := schedTask("empty", "cpus:1")
	noResources.Resources = nil

	cases := []struct {
		name string
		call func() error
		code connect.Code
		msg  string
	}{
		{"accept another framework's offer", func() error { return accept(a, []string{ob.GetId()}, launch(schedTask("x", "cpus:0.1"))) }, connect.CodePermissionDenied, "another framework"},
		{"accept a used offer", func() error { return accept(a, []string{oa.GetId()}, launch(schedTask("x", "cpus:0.1"))) }, connect.CodeFailedPrecondition, "accepted"},
		{"accept a declined offer", func() error { return accept(b, []string{declined.GetId()}, launch(schedTask("x", "cpus:0.1"))) }, connect.CodeFailedPrecondition, "declined"},
		{"accept a rescinded offer", func() error { return accept(b, []string{rescinded.GetId()}, launch(schedTask("x", "cpus:0.1"))) }, connect.CodeFailedPrecondition, "rescinded"},
		{"accept an unknown offer", func() error { return accept(b, []string{"nope"}, launch(schedTask("x", "cpus:0.1"))) }, connect.CodeNotFound, "unknown offer"},
		{"launch more than the offer holds", func() error { return accept(b, []string{ob.GetId()}, launch(schedTask("x", "cpus:64"))) }, connect.CodeFailedPrecondition, "not enough"},
		{"two tasks with one id", func() error {
			return accept(b, []string{ob.GetId()}, launch(schedTask("dup", "cpus:0.1"), schedTask("dup", "cpus:0.1")))
		}, connect.CodeInvalidArgument, "twice"},
		{"task on an unknown agent", func() error {
			return accept(b, []string{ob.GetId()}, launch(withAgent(schedTask("x", "cpus:0.1"), "no-such-agent")))
		}, connect.CodeNotFound, "unknown agent"},
		{"task without resources", func() error { return accept(b, []string{ob.GetId()}, launch(noResources)) }, connect.CodeInvalidArgument, "no resources"},
		{"no operations", func() error { return accept(b, []string{ob.GetId()}) }, connect.CodeInvalidArgument, "no operations"},
		{"reserve for a role not the framework's", func() error {
			return accept(b, []string{ob.GetId()}, reservation(agorav1.OperationType_OPERATION_TYPE_RESERVE, "db"))
		}, connect.CodePermissionDenied, "not a role"},
		{"unreserve another role's reservation", func() error {
			return accept(b, []string{ob.GetId()}, reservation(agorav1.OperationType_OPERATION_TYPE_UNRESERVE, "db"))
		}, connect.CodePermissionDenied, "role db"},
		{"kill another framework's task", func() error {
			_, err := cl.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: b.call(), TaskId: "t1", AgentId: "ag-bad"}))
			return err
		}, connect.CodePermissionDenied, "another framework"},
		{"kill an unknown task", func() error {
			_, err := cl.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: b.call(), TaskId: "ghost"}))
			return err
		}, connect.CodeNotFound, "unknown task"},
		{"acknowledge an unknown uuid", func() error {
			_, err := cl.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: a.call(), AgentId: "ag-bad", TaskId: "t1", Uuid: "not-" + uuid}))
			return err
		}, connect.CodeNotFound, "unknown status update"},
		{"decline with negative refuse_seconds", func() error {
			_, err := cl.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: b.call(), OfferIds: []string{ob.GetId()}, RefuseSeconds: schedPtr(-1)}))
			return err
		}, connect.CodeInvalidArgument, "refuse_seconds"},
		{"decline with huge refuse_seconds", func() error {
			_, err := cl.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: b.call(), OfferIds: []string{ob.GetId()}, RefuseSeconds: schedPtr(1e12)}))
			return err
		}, connect.CodeInvalidArgument, "refuse_seconds"},
		{"accept with NaN refuse_seconds", func() error {
			_, err := cl.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: b.call(), OfferIds: []string{ob.GetId()},
				Operations: []*agorav1.Operation{launch(schedTask("x", "cpus:0.1"))}, RefuseSeconds: schedPtr(math.NaN())}))
			return err
		}, connect.CodeInvalidArgument, "refuse_seconds"},
		{"stale stream token", func() error {
			call := &agorav1.FrameworkCall{FrameworkId: b.fid, StreamToken: "forged"}
			_, err := cl.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: call, OfferIds: []string{ob.GetId()}}))
			return err
		}, connect.CodePermissionDenied, "stale stream token"},
		{"unknown framework", func() error {
			call := &agorav1.FrameworkCall{FrameworkId: "ghost", StreamToken: "x"}
			_, err := cl.Revive(ctx, connect.NewRequest(&agorav1.ReviveRequest{Call: call}))
			return err
		}, connect.CodeNotFound, "unknown framework"},
		{"suppress a role not the framework's", func() error {
			_, err := cl.Suppress(ctx, connect.NewRequest(&agorav1.SuppressRequest{Call: b.call(), Roles: []string{"db"}}))
			return err
		}, connect.CodePermissionDenied, "not a role"},
		{"demand a negative amount", func() error {
			return demand(b, &agorav1.Demand{Role: "web", Count: 1, Resources: []*agorav1.Resource{{Name: "cpus", Scalar: -1}}})
		}, connect.CodeInvalidArgument, "positive finite"},
		{"demand NaN", func() error {
			return demand(b, &agorav1.Demand{Role: "web", Count: 1, Resources: []*agorav1.Resource{{Name: "cpus", Scalar: math.NaN()}}})
		}, connect.CodeInvalidArgument, "positive finite"},
		{"demand no tasks", func() error {
			return demand(b, &agorav1.Demand{Role: "web", Count: 0, Resources: resourcepb.ToProto("", resources.MustParse("cpus:1"))})
		}, connect.CodeInvalidArgument, "count"},
		{"demand for a role not the framework's", func() error {
			return demand(b, &agorav1.Demand{Role: "db", Count: 1, Resources: resourcepb.ToProto("", resources.MustParse("cpus:1"))})
		}, connect.CodePermissionDenied, "not a role"},
	}
	before := sc.quiesce()
	for _, c := range cases {
		err := c.call()
		schedWantCode(t, c.name, err, c.code)
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: message %q does not mention %q", c.name, err.Error(), c.msg)
		}
		if idx := sc.leader().State().Index(); idx != before {
			t.Fatalf("%s: the applied index moved from %d to %d", c.name, before, idx)
		}
	}
	// The offers used above are still intact and usable.
	if err := accept(b, []string{ob.GetId()}, launch(schedTask("ok", "cpus:0.5"))); err != nil {
		t.Fatalf("valid accept after the bad ones: %v", err)
	}

	// A demand larger than the whole cluster is accepted (one entry), and
	// nothing follows from it: the index settles.
	before = sc.quiesce()
	if err := demand(b, &agorav1.Demand{Role: "web", Count: 1, Resources: resourcepb.ToProto("", resources.MustParse("cpus:100000"))}); err != nil {
		t.Fatalf("a demand larger than the cluster: %v", err)
	}
	if after := sc.quiesce(); after != before+1 {
		t.Fatalf("a demand larger than the cluster moved the index from %d to %d, want one entry", before, after)
	}
	fw, _ := sc.leader().State().Framework(b.fid)
	if len(fw.GetDemand()) != 1 {
		t.Fatalf("demand not recorded: %v", fw.GetDemand())
	}
	// The same demand again changes nothing; suppress clears it.
	if err := demand(b, fw.GetDemand()...); err != nil {
		t.Fatalf("the same demand again: %v", err)
	}
	if idx := sc.leader().State().Index(); idx != before+1 {
		t.Fatalf("repeating a demand moved the index to %d", idx)
	}
}

func testDeclineFilter(t *testing.T, sc *schedCluster) {
	sc.registerAgent("ag-filter", "cpus:1;mem:512")
	defer sc.retireAgent("ag-filter")
	f := schedSubscribe(t, sc.leader().HTTPURL(), schedInfo("decliner", "web"))
	defer schedTeardown(t, sc, f)
	o := f.offerOn(t, "ag-filter")
	if _, err := sc.client().Decline(context.Background(), connect.NewRequest(&agorav1.DeclineRequest{
		Call: f.call(), OfferIds: []string{o.GetId()}, RefuseSeconds: schedPtr(0.3)})); err != nil {
		t.Fatalf("decline: %v", err)
	}
	fw, _ := sc.leader().State().Framework(f.fid)
	var until time.Time
	for _, flt := range fw.GetFilters() {
		if flt.GetAgentId() == "ag-filter" {
			until = flt.GetUntil().AsTime()
		}
	}
	if until.IsZero() {
		t.Fatalf("no filter recorded: %v", fw.GetFilters())
	}
	again := f.offerOn(t, "ag-filter")
	if created := again.GetCreatedAt().AsTime(); created.Before(until) {
		t.Fatalf("agent re-offered at %v, before the filter expired at %v", created, until)
	}
}

func testSuppressRevive(t *testing.T, sc *schedCluster) {
	sc.registerAgent("ag-supp", "cpus:1;mem:512")
	defer sc.retireAgent("ag-supp")
	url := sc.leader().HTTPURL()
	ctx := context.Background()
	cl := sc.client()
	a := schedSubscribe(t, url, schedInfo("quiet", "batch"))
	defer schedTeardown(t, sc, a)
	oa := a.offerOn(t, "ag-supp")
	if _, err := cl.Suppress(ctx, connect.NewRequest(&agorav1.SuppressRequest{Call: a.call()})); err != nil {
		t.Fatalf("suppress: %v", err)
	}
	b := schedSubscribe(t, url, schedInfo("witness", "batch"))
	defer schedTeardown(t, sc, b)
	if _, err := cl.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: a.call(), OfferIds: []string{oa.GetId()}, RefuseSeconds: schedPtr(0)})); err != nil {
		t.Fatalf("decline: %v", err)
	}
	// The round that offered the freed agent to the witness passed over the
	// suppressed framework.
	ob := b.offerOn(t, "ag-supp")
	if got := sc.leader().State().OffersByFramework(a.fid); len(got) != 0 {
		t.Fatalf("suppressed framework holds offers %v", got)
	}
	if _, err := cl.Revive(ctx, connect.NewRequest(&agorav1.ReviveRequest{Call: a.call()})); err != nil {
		t.Fatalf("revive: %v", err)
	}
	if _, err := cl.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: b.call(), OfferIds: []string{ob.GetId()}, RefuseSeconds: schedPtr(3600)})); err != nil {
		t.Fatalf("witness decline: %v", err)
	}
	if o := a.offerOn(t, "ag-supp"); o.GetFrameworkId() != a.fid {
		t.Fatalf("revived framework got %v", o)
	}
}

func testReplacement(t *testing.T, sc *schedCluster) {
	sc.registerAgent("ag-repl", "cpus:1;mem:512")
	defer sc.retireAgent("ag-repl")
	url := sc.leader().HTTPURL()
	first := schedSubscribe(t, url, schedInfo("failover", "web"))
	o := first.offerOn(t, "ag-repl")
	second := schedSubscribe(t, url, &agorav1.FrameworkInfo{Id: first.fid, Name: "failover", Roles: []string{"web"}})
	defer schedTeardown(t, sc, second)
	if second.fid != first.fid || second.token == first.token {
		t.Fatalf("resubscription: id %s token %s (first %s %s)", second.fid, second.token, first.fid, first.token)
	}
	first.next(t, "replaced ERROR", func(ev *agorav1.SubscribeResponse) bool {
		return ev.GetError().GetMessage() == "replaced by a new subscription"
	})
	if err := first.waitEnd(t); err != nil {
		t.Fatalf("replaced stream ended with %v, want a clean end", err)
	}
	// The outstanding offer is sent again on the new stream.
	if got := second.offerOn(t, "ag-repl"); got.GetId() != o.GetId() {
		t.Fatalf("new stream got offer %s, want the outstanding %s", got.GetId(), o.GetId())
	}
	cl := sc.client()
	_, err := cl.Decline(context.Background(), connect.NewRequest(&agorav1.DeclineRequest{Call: first.call(), OfferIds: []string{o.GetId()}}))
	schedWantCode(t, "call with the replaced token", err, connect.CodePermissionDenied)
	if _, err := cl.Decline(context.Background(), connect.NewRequest(&agorav1.DeclineRequest{Call: second.call(), OfferIds: []string{o.GetId()}})); err != nil {
		t.Fatalf("call with the new token: %v", err)
	}
	if fw, _ := sc.leader().State().Framework(first.fid); fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
		t.Fatalf("framework state %v after replacement, want CONNECTED", fw.GetState())
	}
}

func testBadSubscribe(t *testing.T, sc *schedCluster) {
	url := sc.leader().HTTPURL()
	before := sc.quiesce()
	for _, c := range []struct {
		name string
		info *agorav1.FrameworkInfo
		code connect.Code
	}{
		{"no info", nil, connect.CodeInvalidArgument},
		{"empty name", &agorav1.FrameworkInfo{Name: " "}, connect.CodeInvalidArgument},
		{"bad role", &agorav1.FrameworkInfo{Name: "x", Roles: []string{"Bad Role"}}, connect.CodeInvalidArgument},
		{"negative failover", &agorav1.FrameworkInfo{Name: "x", FailoverTimeoutSeconds: -1}, connect.CodeInvalidArgument},
		{"NaN failover", &agorav1.FrameworkInfo{Name: "x", FailoverTimeoutSeconds: math.NaN()}, connect.CodeInvalidArgument},
		{"huge failover", &agorav1.FrameworkInfo{Name: "x", FailoverTimeoutSeconds: 1e15}, connect.CodeInvalidArgument},
		{"unknown id", &agorav1.FrameworkInfo{Name: "x", Id: "never-registered"}, connect.CodeNotFound},
	} {
		_, err := schedTrySubscribe(url, c.info)
		schedWantCode(t, c.name, err, c.code)
	}
	if idx := sc.leader().State().Index(); idx != before {
		t.Fatalf("bad subscriptions moved the index from %d to %d", before, idx)
	}
	// Torn down frameworks cannot come back.
	f := schedSubscribe(t, url, schedInfo("gone"))
	schedTeardown(t, sc, f)
	f.next(t, "teardown ERROR", func(ev *agorav1.SubscribeResponse) bool {
		return strings.Contains(ev.GetError().GetMessage(), "torn down")
	})
	_, err := schedTrySubscribe(url, &agorav1.FrameworkInfo{Id: f.fid, Name: "gone"})
	schedWantCode(t, "resubscribe a torn down framework", err, connect.CodeFailedPrecondition)
}

func schedLeaderRedirect(err error) (id, addr string) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return "", ""
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if lr, ok := v.(*agorav1.LeaderRedirect); ok {
			return lr.GetLeaderId(), lr.GetLeaderAddress()
		}
	}
	return "", ""
}

func schedIndexOf(c *devcluster.Cluster, m *master.Master) int {
	return slices.Index(c.Masters(), m)
}

// TestSchedulerLeaderChange: losing leadership ends streams with
// Unavailable and the new leader's address; offers made before a leader
// change (transfer, then kill) are accepted at the next leader.
func TestSchedulerLeaderChange(t *testing.T) {
	sc := startSchedCluster(t, nil)
	sc.registerAgent("ag-lc", "cpus:4;mem:2048")
	old := sc.master()
	// A follower refuses with the leader's address.
	for _, m := range sc.c.Masters() {
		if m.IsLeader() {
			continue
		}
		_, err := schedTrySubscribe(m.HTTPURL(), schedInfo("x"))
		schedWantCode(t, "subscribe at a follower", err, connect.CodeUnavailable)
		if id, _ := schedLeaderRedirect(err); id != old.ID() {
			t.Fatalf("follower redirect names %q, want %s", id, old.ID())
		}
		break
	}
	f := schedSubscribe(t, old.HTTPURL(), schedInfo("survivor", "web"))
	o := f.offerOn(t, "ag-lc")

	if err := old.Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	err := f.waitEnd(t)
	schedWantCode(t, "stream end on leadership loss", err, connect.CodeUnavailable)
	id, addr := schedLeaderRedirect(err)
	if id == "" || id == old.ID() || addr == "" {
		t.Fatalf("redirect to %q at %q, want the new leader (old %s): %v", id, addr, old.ID(), err)
	}
	f2 := schedSubscribe(t, addr, &agorav1.FrameworkInfo{Id: f.fid, Name: "survivor", Roles: []string{"web"}})
	if got := f2.offerOn(t, "ag-lc"); got.GetId() != o.GetId() {
		t.Fatalf("after failover the outstanding offer is %s, want %s", got.GetId(), o.GetId())
	}
	cl := agorav1connect.NewSchedulerServiceClient(http.DefaultClient, addr)
	if _, err := cl.Accept(context.Background(), connect.NewRequest(&agorav1.AcceptRequest{Call: f2.call(), OfferIds: []string{o.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", schedTask("t1", "cpus:1;mem:128"))}, RefuseSeconds: schedPtr(0)})); err != nil {
		t.Fatalf("accept at the new leader: %v", err)
	}
	o2 := f2.offerOn(t, "ag-lc")

	// Kill the new leader outright: the stream breaks (a crash cannot say
	// goodbye, so the client sees a transport error); the framework finds
	// the next leader and accepts the offer made before the kill.
	second := sc.master()
	sc.c.Kill(schedIndexOf(sc.c, second))
	if err := f2.waitEnd(t); err == nil {
		t.Fatal("stream ended cleanly when its master was killed")
	}
	third := sc.master()
	if third == second {
		t.Fatal("killed master still leads")
	}
	f3 := schedSubscribe(t, third.HTTPURL(), &agorav1.FrameworkInfo{Id: f.fid, Name: "survivor", Roles: []string{"web"}})
	if got := f3.offerOn(t, "ag-lc"); got.GetId() != o2.GetId() {
		t.Fatalf("after the kill the outstanding offer is %s, want %s", got.GetId(), o2.GetId())
	}
	cl = agorav1connect.NewSchedulerServiceClient(http.DefaultClient, third.HTTPURL())
	if _, err := cl.Accept(context.Background(), connect.NewRequest(&agorav1.AcceptRequest{Call: f3.call(), OfferIds: []string{o2.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", schedTask("t2", "cpus:1;mem:128"))}})); err != nil {
		t.Fatalf("accept after the kill: %v", err)
	}
	st := third.State()
	for _, id := range []string{"t1", "t2"} {
		if tk, ok := st.Task(f.fid, id); !ok || tk.GetState() != agorav1.TaskState_TASK_STATE_STAGING {
			t.Fatalf("task %s = %v", id, tk)
		}
	}
}

// TestSchedulerTimeouts: offers expire (RESCIND, then FailedPrecondition on
// accept) and a framework that stays away past its failover timeout is
// torn down with its tasks killed.
func TestSchedulerTimeouts(t *testing.T) {
	sc := startSchedCluster(t, func(c *master.Config) { c.OfferTimeout = 500 * time.Millisecond })
	sc.registerAgent("ag-to", "cpus:2;mem:1024")
	f := schedSubscribe(t, sc.master().HTTPURL(), &agorav1.FrameworkInfo{Name: "brief", Roles: []string{"web"}, FailoverTimeoutSeconds: 1})
	o := f.offerOn(t, "ag-to")
	cl := sc.client()
	if _, err := cl.Accept(context.Background(), connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{o.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", schedTask("t1", "cpus:1;mem:128"))}, RefuseSeconds: schedPtr(0)})); err != nil {
		t.Fatalf("accept: %v", err)
	}
	// The re-offer of the rest expires and is rescinded.
	rest := f.offerOn(t, "ag-to")
	f.next(t, "RESCIND of the expired offer", func(ev *agorav1.SubscribeResponse) bool {
		return ev.GetRescind().GetOfferId() == rest.GetId() && ev.GetRescind().GetReason() == "expired"
	})
	_, err := cl.Accept(context.Background(), connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{rest.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", schedTask("t2", "cpus:0.5"))}}))
	schedWantCode(t, "accept an expired offer", err, connect.CodeFailedPrecondition)
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("message %q does not say expired", err)
	}

	fw, _ := sc.master().State().Framework(f.fid)
	if fw.GetInfo().GetFailoverTimeoutSeconds() != 1 {
		t.Fatalf("failover timeout stored as %v", fw.GetInfo().GetFailoverTimeoutSeconds())
	}
	f.cancel() // the scheduler goes away
	var disconnectedAt time.Time
	sc.waitFor("framework disconnected", func(st *fsm.State) error {
		fw, _ := st.Framework(f.fid)
		if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED && disconnectedAt.IsZero() {
			return fmt.Errorf("state %v", fw.GetState())
		}
		if disconnectedAt.IsZero() {
			disconnectedAt = fw.GetDisconnectedAt().AsTime()
		}
		return nil
	})
	sc.waitFor("framework torn down", func(st *fsm.State) error {
		fw, _ := st.Framework(f.fid)
		if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			return fmt.Errorf("state %v", fw.GetState())
		}
		tk, _ := st.Task(f.fid, "t1")
		if !tk.GetKillRequested() {
			return fmt.Errorf("task t1 = %v, want kill requested", tk)
		}
		return nil
	})
}

// TestSchedulerOrphanedFramework: a framework giving no failover timeout
// gets the configured default stored; a framework whose stream was on the
// old leader and that does not come back is marked disconnected by the new
// leader after the liveness grace, so its failover timeout starts.
func TestSchedulerOrphanedFramework(t *testing.T) {
	sc := startSchedCluster(t, func(c *master.Config) {
		c.DefaultFailoverTimeout = 42 * time.Second
		c.LivenessGrace = 300 * time.Millisecond
		c.FrameworkReconnectGrace = 300 * time.Millisecond
	})
	old := sc.master()
	f := schedSubscribe(t, old.HTTPURL(), schedInfo("defaults"))
	fw, _ := old.State().Framework(f.fid)
	if got := fw.GetInfo().GetFailoverTimeoutSeconds(); got != 42 {
		t.Fatalf("stored failover timeout %v, want 42", got)
	}
	if got := fw.GetInfo().GetRoles(); !slices.Equal(got, []string{"*"}) {
		t.Fatalf("roles %v, want [*]", got)
	}
	if err := old.Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	schedWantCode(t, "stream end on leadership loss", f.waitEnd(t), connect.CodeUnavailable)
	sc.waitFor("orphaned framework disconnected", func(st *fsm.State) error {
		fw, _ := st.Framework(f.fid)
		if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED {
			return fmt.Errorf("state %v", fw.GetState())
		}
		return nil
	})
	if sc.master() == old {
		t.Fatal("leadership did not move")
	}
}

// BenchmarkFreedToOffers measures the time from a task reaching a terminal
// status (its resources freed, committed) to the OFFERS event at the
// framework, on an idle 3-master cluster.
func BenchmarkFreedToOffers(b *testing.B) {
	sc := startSchedCluster(b, nil)
	sc.registerAgent("ag-bench", "cpus:1;mem:512")
	f := schedSubscribe(b, sc.master().HTTPURL(), schedInfo("bench", "web"))
	cl := sc.client()
	ctx := context.Background()
	o := f.offerOn(b, "ag-bench")
	var freed, status []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tid := fmt.Sprintf("t%d", i)
		if _, err := cl.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{o.GetId()},
			Operations: []*agorav1.Operation{schedLaunchOp("", schedTask(tid, "cpus:1;mem:512"))}, RefuseSeconds: schedPtr(0)})); err != nil {
			b.Fatalf("accept: %v", err)
		}
		start := time.Now()
		sc.taskStatus("ag-bench", f.fid, tid, agorav1.TaskState_TASK_STATE_FINISHED)
		committed := time.Now()
		o = f.offerOn(b, "ag-bench")
		freed = append(freed, time.Since(committed))
		status = append(status, time.Since(start))
	}
	b.StopTimer()
	pct := func(lat []time.Duration, p float64) float64 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	// freed: from the terminal status committed to OFFERS received.
	b.ReportMetric(pct(freed, 0.50), "freed-p50-ms")
	b.ReportMetric(pct(freed, 0.99), "freed-p99-ms")
	// status: from proposing the terminal status (includes its Raft commit).
	b.ReportMetric(pct(status, 0.50), "status-p50-ms")
	b.ReportMetric(pct(status, 0.99), "status-p99-ms")
}

// TestStreamSecretNotShown: nothing the operator API shows lets another
// client act for a framework. The secret a framework's calls carry is
// returned only in its own SUBSCRIBED; every operator read, rendered whole,
// lacks it; calls with what the reads (or a replica's state) hold are
// refused and change nothing.
func TestStreamSecretNotShown(t *testing.T) {
	sc := startSchedCluster(t, nil)
	sc.registerAgent("ag-secret", "cpus:2;mem:1024")
	l := sc.master()
	f := schedSubscribe(t, l.HTTPURL(), schedInfo("victim", "web"))
	o := f.offerOn(t, "ag-secret")
	if f.token == "" {
		t.Fatal("SUBSCRIBED carried no stream secret")
	}
	op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, l.HTTPURL())
	ctx := context.Background()
	var shown []proto.Message
	add := func(m proto.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("operator read: %v", err)
		}
		shown = append(shown, m)
	}
	fws, err := op.ListFrameworks(ctx, connect.NewRequest(&agorav1.ListFrameworksRequest{}))
	add(fws.Msg, err)
	st, err := op.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
	add(st.Msg, err)
	offers, err := op.ListOffers(ctx, connect.NewRequest(&agorav1.ListOffersRequest{}))
	add(offers.Msg, err)
	tasks, err := op.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
	add(tasks.Msg, err)
	agents, err := op.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
	add(agents.Msg, err)
	res, err := op.ListReservations(ctx, connect.NewRequest(&agorav1.ListReservationsRequest{}))
	add(res.Msg, err)
	for _, m := range shown {
		if strings.Contains(prototextString(m), f.token) {
			t.Fatalf("an operator read shows the stream secret: %T", m)
		}
	}
	var listed *agorav1.Framework
	for _, fw := range fws.Msg.GetFrameworks() {
		if fw.GetId() == f.fid {
			listed = fw
		}
	}
	if listed == nil {
		t.Fatal("framework not listed")
	}
	stored, _ := l.State().Framework(f.fid)
	before := sc.quiesce()
	for _, tok := range []string{listed.GetStreamToken(), stored.GetStreamToken()} {
		_, err := sc.client().Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{
			Call: &agorav1.FrameworkCall{FrameworkId: f.fid, StreamToken: tok}, OfferIds: []string{o.GetId()}}))
		if err == nil {
			t.Fatalf("a decline with token %q (from the operator API or a replica's state) succeeded", tok)
		}
		if c := connect.CodeOf(err); c != connect.CodePermissionDenied && c != connect.CodeInvalidArgument {
			t.Fatalf("decline with a shown token: %v, want PermissionDenied or InvalidArgument", err)
		}
	}
	if idx := l.State().Index(); idx != before {
		t.Fatalf("refused calls moved the index from %d to %d", before, idx)
	}
	// The owner's secret still works.
	if _, err := sc.client().Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: f.call(), OfferIds: []string{o.GetId()}})); err != nil {
		t.Fatalf("the owner's decline: %v", err)
	}
}

func prototextString(m proto.Message) string {
	b, _ := protojson.Marshal(m)
	return string(b)
}
