package master_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/agora-sched/agora/rpc/resourcepb"
)

func agLogger() *slog.Logger {
	if os.Getenv("AGORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// waitFor polls cond every 20 ms until it returns nil or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() error) {
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

// startAgentCluster starts masters (with opts applied) and waits for a
// leader.
func startAgentCluster(tb testing.TB, o devcluster.Options) (*devcluster.Cluster, *master.Master) {
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

func registration(id string) *agorav1.RegisterAgentRequest {
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

// quiesce waits until the leader's index stays put for a few polls, so
// that a later comparison measures only what the test does.
func quiesce(tb testing.TB, m *master.Master) uint64 {
	tb.Helper()
	var last uint64
	stable := 0
	waitFor(tb, 10*time.Second, "state quiet", func() error {
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

// launchTask creates framework fw (subscribing it) and launches one task
// on agentID by applying Raft commands directly, as the scheduler API
// would: SubscribeFramework, OffersCreated (or an offer the allocator
// made), Accept with one LAUNCH.
func launchTask(tb testing.TB, c *devcluster.Cluster, fw, agentID, taskID, command, res string) {
	tb.Helper()
	need := resources.MustParse(res)
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tryLaunch(ctx, c, fw, agentID, taskID, command, need)
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

func tryLaunch(ctx context.Context, c *devcluster.Cluster, fw, agentID, taskID, command string, need resources.Resources) error {
	m, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	if _, err := m.Apply(ctx, fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework: &agorav1.Framework{Id: fw, Info: &agorav1.FrameworkInfo{Name: "test-" + fw, Roles: []string{"*"}},
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

func wantCode(tb testing.TB, what string, err error, code connect.Code, msgPart string) {
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
	c, m := startAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // agents here have no gossip member
	}})
	ctx := context.Background()
	cl := client.New(m.HTTPURL()).Agent
	if _, err := cl.RegisterAgent(ctx, connect.NewRequest(registration("a1"))); err != nil {
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
		{"wrong cluster", func(r *agorav1.RegisterAgentRequest) { r.Cluster = "prod" }, connect.CodeFailedPrecondition, "agent is for cluster prod but masters run cluster agora"},
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
	before := quiesce(t, m)
	for _, tc := range regs {
		r := registration("a1")
		tc.mutate(r)
		_, err := cl.RegisterAgent(ctx, connect.NewRequest(r))
		wantCode(t, "register: "+tc.name, err, tc.code, tc.message)
	}
	if a, _ := m.State().Agent("a1"); a.GetAddress() != registration("a1").Address || len(m.State().Agents()) != 1 {
		t.Errorf("refused registrations changed the agents: %v", m.State().Agents())
	}

	// Oversized: the master reads at most 4 MiB per message.
	big := registration("a9")
	big.Attributes = map[string]string{"blob": strings.Repeat("x", 5<<20)}
	_, err := cl.RegisterAgent(ctx, connect.NewRequest(big))
	wantCode(t, "oversized registration", err, connect.CodeResourceExhausted, "")
	if _, ok := m.State().Agent("a9"); ok {
		t.Error("oversized registration registered the agent")
	}

	// Status updates: unknown agent, unknown task.
	st := func(agent, fw, task, uuid string) *agorav1.UpdateStatusRequest {
		return &agorav1.UpdateStatusRequest{AgentId: agent, Statuses: []*agorav1.TaskStatus{{
			TaskId: task, FrameworkId: fw, State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: uuid,
		}}}
	}
	_, err = cl.UpdateStatus(ctx, connect.NewRequest(st("ghost", "fw", "t1", "u1")))
	wantCode(t, "status from unknown agent", err, connect.CodeNotFound, "not registered")
	_, err = cl.UpdateStatus(ctx, connect.NewRequest(st("a1", "fw", "nope", "u1")))
	wantCode(t, "status of unknown task", err, connect.CodeNotFound, "unknown")
	if got := m.State().Index(); got != before {
		t.Fatalf("refused calls changed the commit index: %d -> %d", before, got)
	}

	// A task on a1; a2 reports for it.
	if _, err := cl.RegisterAgent(ctx, connect.NewRequest(registration("a2"))); err != nil {
		t.Fatal(err)
	}
	// The task stays STAGING: no real agent runs here.
	launchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")
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
		wantCode(t, "status: "+tc.name, err, tc.code, tc.msg)
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
