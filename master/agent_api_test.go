package master_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

func agLogger() *slog.Logger {
	if os.Getenv("AGORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// agWaitFor polls cond every 20 ms until it returns nil or d passes.
func agWaitFor(tb testing.TB, d time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agStartAgentCluster starts masters (with opts applied) and waits for a
// leader.
func agStartAgentCluster(tb testing.TB, o devcluster.Options) (*devcluster.Cluster, *master.Master) {
	tb.Helper()
	if o.DataDir == "" {
		o.DataDir = tb.TempDir()
	}
	if o.Logger == nil {
		o.Logger = agLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Stop)
	l, err := c.WaitLeader(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return c, l
}

func agRegistration(id string) *agorav1.RegisterAgentRequest {
	return &agorav1.RegisterAgentRequest{
		AgentId:       id,
		Address:       "127.0.0.1:5" + fmt.Sprint(len(id)),
		GossipAddress: "127.0.0.1:6000",
		Hostname:      "host-" + id,
		Resources:     resourcepb.ToProto("", resources.MustParse("cpus:4;mem:4096;disk:1000;ports:[31000-31099]")),
		Attributes:    map[string]string{"rack": "r1"},
		Version:       "test",
		Cluster:       "agora",
	}
}

// agQuiesce waits until the leader's index stays put for a few polls, so
// that a later comparison measures only what the test does.
func agQuiesce(tb testing.TB, m *master.Master) uint64 {
	tb.Helper()
	var last uint64
	stable := 0
	agWaitFor(tb, 10*time.Second, "state quiet", func() error {
		idx := m.State().Index()
		if idx == last {
			stable++
		} else {
			stable, last = 0, idx
		}
		if stable < 5 {
			return fmt.Errorf("index still moving (%d)", idx)
		}
		return nil
	})
	return last
}

// agLaunchTask creates framework fw (subscribing it) and launches one task
// on agentID by applying Raft commands directly, as the scheduler API
// would: SubscribeFramework, OffersCreated (or an offer the allocator
// made), Accept with one LAUNCH.
func agLaunchTask(tb testing.TB, c *devcluster.Cluster, fw, agentID, taskID, command, res string) {
	tb.Helper()
	need := resources.MustParse(res)
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := agTryLaunch(ctx, c, fw, agentID, taskID, command, need)
		cancel()
		if err == nil {
			return
		}
		lastErr = err
		if connect.CodeOf(err) == connect.CodeAlreadyExists {
			return // an earlier attempt committed
		}
	}
	tb.Fatalf("launch task %s on %s: %v", taskID, agentID, lastErr)
}

func agTryLaunch(ctx context.Context, c *devcluster.Cluster, fw, agentID, taskID, command string, need resources.Resources) error {
	m, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	if _, err := m.Apply(ctx, fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework: &agorav1.Framework{Id: fw, Info: &agorav1.FrameworkInfo{Name: "test-" + fw, Roles: []string{"*"}, FailoverTimeoutSeconds: 3600},
			StreamToken: master.NewID()},
		Now: timestamppb.New(m.Now()),
	}); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	// The allocator may offer the agent to our framework at once; use its
	// offer if there is one, else make our own.
	offerID := ""
	deadline := time.Now().Add(300 * time.Millisecond)
	for offerID == "" && time.Now().Before(deadline) {
		for _, o := range m.State().OffersByFramework(fw) {
			p, err := resourcepb.FromProto(o.GetResources())
			if err == nil && o.GetAgentId() == agentID && p[""].Contains(need) {
				offerID = o.GetId()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if offerID == "" {
		offerID = master.NewID()
		res, err := m.Apply(ctx, fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{
			Offers: []*agorav1.Offer{{
				Id: offerID, FrameworkId: fw, AgentId: agentID, Role: "*",
				Resources: resourcepb.ToProto("", need),
				ExpiresAt: timestamppb.New(m.Now().Add(time.Minute)),
			}},
			Now: timestamppb.New(m.Now()),
		})
		if err != nil {
			return fmt.Errorf("offer: %w", err)
		}
		if !slices.Contains(res.IDs, offerID) {
			return errors.New("offer dropped by the fsm")
		}
	}
	_, err = m.Apply(ctx, fsm.CmdAccept, &agorav1.AcceptCommand{
		FrameworkId: fw,
		OfferIds:    []string{offerID},
		Operations: []*agorav1.Operation{{
			Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH,
			Tasks: []*agorav1.TaskInfo{{
				TaskId: taskID, Name: taskID, AgentId: agentID,
				Resources: resourcepb.ToProto("", need),
				Command:   &agorav1.CommandInfo{Value: command},
			}},
		}},
		Now: timestamppb.New(m.Now()),
	})
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	return nil
}

func agWantCode(tb testing.TB, what string, err error, code connect.Code, msgPart string) {
	tb.Helper()
	if err == nil {
		tb.Errorf("%s: no error, want %v", what, code)
		return
	}
	if got := connect.CodeOf(err); got != code {
		tb.Errorf("%s: code %v (%v), want %v", what, got, err, code)
		return
	}
	if msgPart != "" && !strings.Contains(err.Error(), msgPart) {
		tb.Errorf("%s: error %q does not mention %q", what, err, msgPart)
	}
}

func TestAgentAPIBadInput(t *testing.T) {
	c, m := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // agents here have no gossip member
	}})
	ctx := context.Background()
	cl := client.New(m.HTTPURL()).Agent
	if _, err := cl.RegisterAgent(ctx, connect.NewRequest(agRegistration("a1"))); err != nil {
		t.Fatal(err)
	}

	type badRegistration struct {
		name    string
		mutate  func(r *agorav1.RegisterAgentRequest)
		code    connect.Code
		message string
	}
	res := func(spec string) []*agorav1.Resource { return resourcepb.ToProto("", resources.MustParse(spec)) }
	regs := []badRegistration{
		{"bad id", func(r *agorav1.RegisterAgentRequest) { r.AgentId = "-x/y" }, connect.CodeInvalidArgument, "invalid agent id"},
		{"wrong cluster", func(r *agorav1.RegisterAgentRequest) { r.Cluster = "prod" }, connect.CodeFailedPrecondition, "is for cluster prod but masters run cluster agora"},
		{"no hostname", func(r *agorav1.RegisterAgentRequest) { r.Hostname = "" }, connect.CodeInvalidArgument, "hostname"},
		{"no resources", func(r *agorav1.RegisterAgentRequest) { r.Resources = nil }, connect.CodeInvalidArgument, "no resources"},
		{"negative scalar", func(r *agorav1.RegisterAgentRequest) {
			r.Resources = append(res("mem:10"), &agorav1.Resource{Name: "cpus", Scalar: -1})
		}, connect.CodeInvalidArgument, "negative"},
		{"overlapping ranges", func(r *agorav1.RegisterAgentRequest) {
			r.Resources = append(res("cpus:1"), &agorav1.Resource{Name: "ports", Ranges: []*agorav1.Range{{Begin: 1, End: 10}, {Begin: 5, End: 20}}})
		}, connect.CodeInvalidArgument, "overlap"},
		{"resource given twice", func(r *agorav1.RegisterAgentRequest) {
			r.Resources = append(res("cpus:1"), &agorav1.Resource{Name: "cpus", Scalar: 2})
		}, connect.CodeInvalidArgument, "twice"},
		{"mixed kinds", func(r *agorav1.RegisterAgentRequest) {
			r.Resources = []*agorav1.Resource{{Name: "gpus", Scalar: 1, Set: []string{"g0"}}}
		}, connect.CodeInvalidArgument, "mixes"},
		{"bad name", func(r *agorav1.RegisterAgentRequest) {
			r.Resources = []*agorav1.Resource{{Name: "CPUs!", Scalar: 1}}
		}, connect.CodeInvalidArgument, "name"},
		{"reserved resources", func(r *agorav1.RegisterAgentRequest) {
			r.Resources = []*agorav1.Resource{{Name: "cpus", Scalar: 1, Role: "web"}}
		}, connect.CodeInvalidArgument, "unreserved"},
		{"duplicate id from another address", func(r *agorav1.RegisterAgentRequest) {
			r.Address = "10.9.9.9:5000"
		}, connect.CodeAlreadyExists, "already registered"},
	}
	before := agQuiesce(t, m)
	for _, tc := range regs {
		r := agRegistration("a1")
		tc.mutate(r)
		_, err := cl.RegisterAgent(ctx, connect.NewRequest(r))
		agWantCode(t, "register: "+tc.name, err, tc.code, tc.message)
	}
	if a, _ := m.State().Agent("a1"); a.GetAddress() != agRegistration("a1").Address || len(m.State().Agents()) != 1 {
		t.Errorf("refused registrations changed the agents: %v", m.State().Agents())
	}

	// Oversized: the master reads at most 4 MiB per message.
	big := agRegistration("a9")
	big.Attributes = map[string]string{"blob": strings.Repeat("x", 5<<20)}
	_, err := cl.RegisterAgent(ctx, connect.NewRequest(big))
	agWantCode(t, "oversized agRegistration", err, connect.CodeResourceExhausted, "")
	if _, ok := m.State().Agent("a9"); ok {
		t.Error("oversized agRegistration registered the agent")
	}

	// Status updates: unknown agent, unknown task.
	st := func(agent, fw, task, uuid string) *agorav1.UpdateStatusRequest {
		return &agorav1.UpdateStatusRequest{AgentId: agent, Statuses: []*agorav1.TaskStatus{{
			TaskId: task, FrameworkId: fw, State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: uuid,
		}}}
	}
	_, err = cl.UpdateStatus(ctx, connect.NewRequest(st("ghost", "fw", "t1", "u1")))
	agWantCode(t, "status from unknown agent", err, connect.CodeNotFound, "not registered")
	_, err = cl.UpdateStatus(ctx, connect.NewRequest(st("a1", "fw", "nope", "u1")))
	agWantCode(t, "status of unknown task", err, connect.CodeNotFound, "unknown")
	if got := m.State().Index(); got != before {
		t.Fatalf("refused calls changed the commit index: %d -> %d", before, got)
	}

	// A task on a1; a2 reports for it.
	if _, err := cl.RegisterAgent(ctx, connect.NewRequest(agRegistration("a2"))); err != nil {
		t.Fatal(err)
	}
	// The task stays STAGING: no real agent runs here.
	agLaunchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")
	task, ok := m.State().Task("fw1", "t1")
	if !ok {
		t.Fatal("task t1 not created")
	}
	uuidBefore := task.GetStatus().GetUuid()
	for _, tc := range []struct {
		name string
		req  *agorav1.UpdateStatusRequest
		code connect.Code
		msg  string
	}{
		{"wrong agent", st("a2", "fw1", "t1", "u2"), connect.CodePermissionDenied, "runs on agent a1"},
		{"status names another agent", &agorav1.UpdateStatusRequest{AgentId: "a2", Statuses: []*agorav1.TaskStatus{{TaskId: "t1", FrameworkId: "fw1", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u3"}}}, connect.CodePermissionDenied, ""},
		{"no uuid", st("a1", "fw1", "t1", ""), connect.CodeInvalidArgument, "uuid"},
		{"bad state", &agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{TaskId: "t1", FrameworkId: "fw1", State: agorav1.TaskState(99), Uuid: "u4"}}}, connect.CodeInvalidArgument, "state"},
		{"master-only state", &agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{TaskId: "t1", FrameworkId: "fw1", State: agorav1.TaskState_TASK_STATE_GONE, Uuid: "u5"}}}, connect.CodeInvalidArgument, "state"},
		{"no statuses", &agorav1.UpdateStatusRequest{AgentId: "a1"}, connect.CodeInvalidArgument, "no status"},
		{"one bad in a batch", &agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{
			{TaskId: "t1", FrameworkId: "fw1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u6"},
			{TaskId: "t404", FrameworkId: "fw1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u7"},
		}}, connect.CodeNotFound, "t404"},
	} {
		_, err := cl.UpdateStatus(ctx, connect.NewRequest(tc.req))
		agWantCode(t, "status: "+tc.name, err, tc.code, tc.msg)
	}
	if task, _ := m.State().Task("fw1", "t1"); task.GetStatus().GetUuid() != uuidBefore || task.GetState() != agorav1.TaskState_TASK_STATE_STAGING {
		t.Errorf("refused status updates changed task t1: %v", task)
	}

	// The right agent succeeds, and a resend is committed once.
	good := st("a1", "fw1", "t1", "u-good")
	r1, err := cl.UpdateStatus(ctx, connect.NewRequest(good))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := cl.UpdateStatus(ctx, connect.NewRequest(good))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Msg.GetIndex() != r1.Msg.GetIndex() {
		t.Errorf("a resent status update was proposed again: index %d then %d", r1.Msg.GetIndex(), r2.Msg.GetIndex())
	}
	if task, _ := m.State().Task("fw1", "t1"); task.GetStatus().GetUuid() != "u-good" || task.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
		t.Errorf("task t1 after a good update: %v", task)
	}
}

func TestGetAssignmentsFromAnyMaster(t *testing.T) {
	c, leader := agStartAgentCluster(t, devcluster.Options{Masters: 3, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // agents here have no gossip member
	}})
	ctx := context.Background()
	var follower *master.Master
	for _, m := range c.Masters() {
		if m != leader {
			follower = m
			break
		}
	}
	// A plain Connect client, pinned to the follower: rpc/client would
	// move to the leader the follower names in its answers.
	fc := agorav1connect.NewAgentServiceClient(http.DefaultClient, follower.HTTPURL())
	assignments := func(minIndex uint64, wait float64) *agorav1.GetAssignmentsResponse {
		t.Helper()
		resp, err := fc.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a1", MinIndex: minIndex, WaitSeconds: wait}))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header().Get(master.LeaderHeader); got != leader.HTTPURL() {
			t.Fatalf("the follower's answer names leader %q, want %q", got, leader.HTTPURL())
		}
		return resp.Msg
	}
	if got := assignments(0, 0); got.GetKnown() {
		t.Fatalf("unknown agent: known = true")
	}
	reg, err := client.New(leader.HTTPURL()).Agent.RegisterAgent(ctx, connect.NewRequest(agRegistration("a1")))
	if err != nil {
		t.Fatal(err)
	}
	// A blocking query from before the agRegistration returns once the
	// follower applies it.
	got := assignments(reg.Msg.GetIndex()-1, 20)
	if !got.GetKnown() || got.GetIndex() < reg.Msg.GetIndex() {
		t.Fatalf("after agRegistration at %d the follower answers known=%v index=%d", reg.Msg.GetIndex(), got.GetKnown(), got.GetIndex())
	}

	done := make(chan *agorav1.GetAssignmentsResponse, 1)
	idx := follower.State().Index()
	go func() {
		resp, err := fc.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a1", MinIndex: idx, WaitSeconds: 25}))
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		done <- resp.Msg
	}()
	agLaunchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")
	select {
	case resp := <-done:
		if resp == nil {
			t.FailNow()
		}
		if resp.GetIndex() <= idx {
			t.Errorf("blocking query returned index %d, want > %d", resp.GetIndex(), idx)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("blocking query did not return after new commits")
	}
	agWaitFor(t, 10*time.Second, "task t1 assigned to a1", func() error {
		got := assignments(0, 0)
		if len(got.GetTasks()) != 1 || got.GetTasks()[0].GetId() != "t1" || got.GetTasks()[0].GetCommand().GetValue() != "sleep 1" {
			return fmt.Errorf("assignments %v", got.GetTasks())
		}
		return nil
	})

	// An unreachable agent must register again.
	if _, err := leader.Apply(ctx, fsm.CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: "a1", Now: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	agWaitFor(t, 10*time.Second, "unreachable agent answered known=false", func() error {
		if got := assignments(0, 0); got.GetKnown() {
			return errors.New("known = true")
		}
		return nil
	})
	if _, err := client.New(follower.HTTPURL()).Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{
		TaskId: "t1", FrameworkId: "fw1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "late",
	}}})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("status update from an unreachable agent: %v, want FailedPrecondition", err)
	}
}

// BenchmarkRegisterAgents registers 1,000 agents through AgentService (no
// gossip, 8 concurrent callers, one master) and reports the throughput and
// the growth of the live heap per agent.
func BenchmarkRegisterAgents(b *testing.B) {
	_, m := agStartAgentCluster(b, devcluster.Options{Masters: 1, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour
	}})
	cl := client.New(m.HTTPURL()).Agent
	const agents, workers = 1000, 8
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		start := time.Now()
		ids := make(chan string)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for id := range ids {
					r := agRegistration(id)
					r.Address = "10.0.0.1:" + id
					if _, err := cl.RegisterAgent(ctx, connect.NewRequest(r)); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for j := range agents {
			ids <- fmt.Sprintf("bench-%d-%04d", i, j)
		}
		close(ids)
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/agents, "heap-B/agent")
		b.ReportMetric(float64(elapsed.Microseconds())/agents, "µs/registration")
		b.ReportMetric(agents/elapsed.Seconds(), "registrations/s")
		b.StartTimer()
	}
}

// TestGetAssignmentsWakesOnlyItsAgent: a long poll holding the agent's
// current assignment returns when that agent's tasks change, not when
// another agent's do.
func TestGetAssignmentsWakesOnlyItsAgent(t *testing.T) {
	c, leader := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // agents here have no gossip member
	}})
	ctx := context.Background()
	ac := client.New(leader.HTTPURL()).Agent
	for _, id := range []string{"a1", "a2"} {
		if _, err := ac.RegisterAgent(ctx, connect.NewRequest(agRegistration(id))); err != nil {
			t.Fatal(err)
		}
	}
	agQuiesce(t, leader)
	type answer struct {
		resp *agorav1.GetAssignmentsResponse
		err  error
	}
	// poll answers at once (min_index 0), then long-polls from that answer.
	poll := func(id string) <-chan answer {
		first, err := ac.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: id}))
		if err != nil {
			t.Fatal(err)
		}
		if !first.Msg.GetKnown() || len(first.Msg.GetTasks()) != 0 {
			t.Fatalf("%s before any launch: %v", id, first.Msg)
		}
		out := make(chan answer, 1)
		go func() {
			resp, err := ac.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{
				AgentId: id, MinIndex: first.Msg.GetIndex(), WaitSeconds: 25}))
			if err != nil {
				out <- answer{err: err}
				return
			}
			out <- answer{resp: resp.Msg}
		}()
		return out
	}
	p1, p2 := poll("a1"), poll("a2")
	agWaitFor(t, 10*time.Second, "both polls waiting", func() error {
		if n := leader.AssignmentPollsWaitingForTest(); n != 2 {
			return fmt.Errorf("%d polls waiting", n)
		}
		return nil
	})
	before := leader.State().Index()
	agLaunchTask(t, c, "fw1", "a2", "t2", "sleep 1", "cpus:1;mem:64")
	var got answer
	select {
	case got = <-p2:
	case <-time.After(20 * time.Second):
		t.Fatal("a2's poll did not return after a task was launched on a2")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if ts := got.resp.GetTasks(); len(ts) != 1 || ts[0].GetId() != "t2" {
		t.Fatalf("a2's poll answered %v, want task t2", got.resp)
	}
	// The pass that woke a2's poll checked a1's in the same state: a1's
	// assignment did not change, so it still waits, although the state
	// moved on (framework, offers, accept).
	if idx := leader.State().Index(); idx <= before+1 {
		t.Fatalf("index %d after the launch, want well past %d", idx, before)
	}
	select {
	case got = <-p1:
		t.Fatalf("a1's poll returned when only a2's tasks changed: %v %v", got.resp, got.err)
	default:
	}
	if n := leader.AssignmentPollsWaitingForTest(); n != 1 {
		t.Fatalf("%d polls waiting after a2's returned, want a1's", n)
	}
	agLaunchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")
	select {
	case got = <-p1:
	case <-time.After(20 * time.Second):
		t.Fatal("a1's poll did not return after a task was launched on a1")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if ts := got.resp.GetTasks(); len(ts) != 1 || ts[0].GetId() != "t1" {
		t.Fatalf("a1's poll answered %v, want task t1", got.resp)
	}
}

// TestGetAssignmentsWakesOnKillNotOnOwnReport: a long poll holding the
// agent's assignment is not answered for the RUNNING update the agent
// reported itself, and is answered when the task is killed, with the
// kill.
func TestGetAssignmentsWakesOnKillNotOnOwnReport(t *testing.T) {
	c, leader := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // the agent here has no gossip member
	}})
	ctx := context.Background()
	ac := client.New(leader.HTTPURL()).Agent
	if _, err := ac.RegisterAgent(ctx, connect.NewRequest(agRegistration("a1"))); err != nil {
		t.Fatal(err)
	}
	agQuiesce(t, leader)
	agLaunchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")
	first, err := ac.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a1"}))
	if err != nil {
		t.Fatal(err)
	}
	if ts := first.Msg.GetTasks(); len(ts) != 1 || ts[0].GetId() != "t1" || ts[0].GetKillRequested() {
		t.Fatalf("first answer %v, want t1 not killed", first.Msg)
	}
	type answer struct {
		resp *agorav1.GetAssignmentsResponse
		err  error
	}
	out := make(chan answer, 1)
	go func() {
		resp, err := ac.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{
			AgentId: "a1", MinIndex: first.Msg.GetIndex(), WaitSeconds: 25}))
		if err != nil {
			out <- answer{err: err}
			return
		}
		out <- answer{resp: resp.Msg}
	}()
	agWaitFor(t, 10*time.Second, "the poll waiting", func() error {
		if n := leader.AssignmentPollsWaitingForTest(); n != 1 {
			return fmt.Errorf("%d polls waiting", n)
		}
		return nil
	})
	rep, err := ac.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{
		TaskId: "t1", FrameworkId: "fw1", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: master.NewID(),
		Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}}}))
	if err != nil {
		t.Fatal(err)
	}
	// The watcher checks within assignCheckInterval (10 ms) of a commit:
	// give it fifty times that to (wrongly) answer the report.
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		select {
		case got := <-out:
			t.Fatalf("the poll was answered after the agent's own RUNNING report (at %d): %v %v", rep.Msg.GetIndex(), got.resp, got.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	kill, err := leader.Apply(ctx, fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw1", TaskId: "t1", Now: timestamppb.New(leader.Now())})
	if err != nil {
		t.Fatal(err)
	}
	var got answer
	select {
	case got = <-out:
	case <-time.After(20 * time.Second):
		t.Fatal("the poll was not answered after the task was killed")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if got.resp.GetIndex() < kill.Index {
		t.Fatalf("the poll was answered at %d, before the kill at %d (the agent's own report at %d woke it)", got.resp.GetIndex(), kill.Index, rep.Msg.GetIndex())
	}
	if ts := got.resp.GetTasks(); len(ts) != 1 || !ts[0].GetKillRequested() {
		t.Fatalf("answer %v, want t1 with its kill", got.resp)
	}
}

// TestGetAssignmentsOmitUnchanged: a poll with omit_unchanged whose wait
// ends with the assignment the agent holds (here after the agent's own
// RUNNING report, which is no change) is answered unchanged, without the
// task list; without omit_unchanged the same poll lists the tasks; a
// changed assignment is answered in full either way; a poll from an index
// this master cannot place is answered in full.
func TestGetAssignmentsOmitUnchanged(t *testing.T) {
	c, leader := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // the agent here has no gossip member
	}})
	ctx := context.Background()
	ac := client.New(leader.HTTPURL()).Agent
	if _, err := ac.RegisterAgent(ctx, connect.NewRequest(agRegistration("a1"))); err != nil {
		t.Fatal(err)
	}
	agQuiesce(t, leader)
	agLaunchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")
	get := func(min uint64, wait float64, omit bool) *agorav1.GetAssignmentsResponse {
		t.Helper()
		resp, err := ac.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{
			AgentId: "a1", MinIndex: min, WaitSeconds: wait, OmitUnchanged: omit}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	first := get(0, 0, true)
	if first.GetUnchanged() || len(first.GetTasks()) != 1 {
		t.Fatalf("first answer (min_index 0) %v, want t1 in full", first)
	}
	if _, err := ac.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{
		TaskId: "t1", FrameworkId: "fw1", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: master.NewID(),
		Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}}})); err != nil {
		t.Fatal(err)
	}
	same := get(first.GetIndex(), 0.05, true)
	if !same.GetUnchanged() || len(same.GetTasks()) != 0 || !same.GetKnown() || same.GetIndex() <= first.GetIndex() {
		t.Fatalf("poll after the agent's own report with omit_unchanged: %v, want unchanged, known, no tasks, index past %d", same, first.GetIndex())
	}
	full := get(first.GetIndex(), 0.05, false)
	if full.GetUnchanged() || len(full.GetTasks()) != 1 || full.GetTasks()[0].GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("the same poll without omit_unchanged: %v, want t1 RUNNING in full", full)
	}
	// From the unchanged answer's index: the master remembers what it said.
	if again := get(same.GetIndex(), 0.05, true); !again.GetUnchanged() {
		t.Fatalf("poll from the unchanged answer's index: %v, want unchanged", again)
	}
	// An index this master never answered and is not at: answered in full.
	if odd := get(same.GetIndex()-1, 0.05, true); odd.GetUnchanged() || len(odd.GetTasks()) != 1 {
		t.Fatalf("poll from an index the master cannot place: %v, want a full answer", odd)
	}
	if _, err := leader.Apply(ctx, fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw1", TaskId: "t1", Now: timestamppb.New(leader.Now())}); err != nil {
		t.Fatal(err)
	}
	killed := get(same.GetIndex(), 5, true)
	if killed.GetUnchanged() || len(killed.GetTasks()) != 1 || !killed.GetTasks()[0].GetKillRequested() {
		t.Fatalf("poll after a kill with omit_unchanged: %v, want t1 with its kill in full", killed)
	}
}
