package master_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestDrainAPI: hostile drain input is refused with a specific code and no
// log entry; a drain with a deadline makes the agent DRAINING, the leader's
// deadline task kills the remaining task (KILLING, kill reason DRAINED), the
// agent's KILLED carries DRAINED and leaves the agent DRAINED; undrain
// makes it ACTIVE.
func TestDrainAPI(t *testing.T) {
	c, m := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // agents here have no gossip member
	}})
	ctx := context.Background()
	cl := client.New(m.HTTPURL())
	for _, id := range []string{"a1", "a2"} {
		if _, err := cl.Agent.RegisterAgent(ctx, connect.NewRequest(agRegistration(id))); err != nil {
			t.Fatal(err)
		}
	}
	agLaunchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")

	before := agQuiesce(t, m)
	commit := func() uint64 {
		res, err := cl.Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetRaft().GetCommitIndex()
	}
	commitBefore := commit()
	past := timestamppb.New(time.Now().Add(-time.Minute))
	for _, tc := range []struct {
		name string
		call func() error
		code connect.Code
		msg  string
	}{
		{"drain of an unknown agent", func() error {
			_, err := cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "ghost"}))
			return err
		}, connect.CodeNotFound, "not registered"},
		{"drain with a deadline in the past", func() error {
			_, err := cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "a1", Deadline: past}))
			return err
		}, connect.CodeInvalidArgument, "in the past"},
		{"drain with an invalid deadline", func() error {
			_, err := cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "a1", Deadline: &timestamppb.Timestamp{Nanos: -1}}))
			return err
		}, connect.CodeInvalidArgument, "not a valid time"},
		{"drain of a bad id", func() error {
			_, err := cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "../x"}))
			return err
		}, connect.CodeInvalidArgument, "invalid agent id"},
		{"undrain of an agent not draining", func() error {
			_, err := cl.Operator.UndrainAgent(ctx, connect.NewRequest(&agorav1.UndrainAgentRequest{AgentId: "a1"}))
			return err
		}, connect.CodeFailedPrecondition, "not draining"},
		{"undrain of an unknown agent", func() error {
			_, err := cl.Operator.UndrainAgent(ctx, connect.NewRequest(&agorav1.UndrainAgentRequest{AgentId: "ghost"}))
			return err
		}, connect.CodeNotFound, "not registered"},
	} {
		agWantCode(t, tc.name, tc.call(), tc.code, tc.msg)
	}
	if got := m.State().Index(); got != before {
		t.Fatalf("refused drain calls changed the applied index: %d -> %d", before, got)
	}
	if got := commit(); got != commitBefore {
		t.Fatalf("refused drain calls changed the commit index: %d -> %d", commitBefore, got)
	}
	if a, _ := m.State().Agent("a1"); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE || a.GetDrain() != nil {
		t.Fatalf("a1 after refused calls: %v", a)
	}

	// Drain a1 with a deadline 2 s ahead: DRAINING at once, and the leader
	// kills t1 at the deadline.
	res, err := cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "a1", Deadline: timestamppb.New(time.Now().Add(2 * time.Second))}))
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Msg.GetAgent(); a.GetState() != agorav1.AgentState_AGENT_STATE_DRAINING || a.GetDrain().GetDeadline() == nil {
		t.Fatalf("drain answered %v", a)
	}
	agWaitFor(t, 30*time.Second, "t1 killed at the deadline", func() error {
		task, _ := m.State().Task("fw1", "t1")
		if !task.GetKillRequested() || task.GetKillReason() != fsm.ReasonDrained || task.GetState() != agorav1.TaskState_TASK_STATE_KILLING {
			return fmt.Errorf("t1: %v", task)
		}
		return nil
	})
	if task, _ := m.State().Task("fw1", "t1"); task.GetStatus().GetReason() != fsm.ReasonDrained {
		t.Fatalf("KILLING status: %v", task.GetStatus())
	}
	// The agent reports the kill: KILLED with reason DRAINED, a1 DRAINED.
	if _, err := cl.Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{
		TaskId: "t1", FrameworkId: "fw1", State: agorav1.TaskState_TASK_STATE_KILLED, Uuid: "u-killed", Reason: "killed on request: signal: terminated",
	}}})); err != nil {
		t.Fatal(err)
	}
	task, _ := m.State().Task("fw1", "t1")
	if task.GetState() != agorav1.TaskState_TASK_STATE_KILLED || task.GetStatus().GetReason() != fsm.ReasonDrained {
		t.Fatalf("t1 after KILLED: %v", task)
	}
	a, _ := m.State().Agent("a1")
	if a.GetState() != agorav1.AgentState_AGENT_STATE_DRAINED || !a.GetDrain().GetDeadlinePassed() {
		t.Fatalf("a1 after its last task ended: %v", a)
	}

	// Undrain: ACTIVE again.
	un, err := cl.Operator.UndrainAgent(ctx, connect.NewRequest(&agorav1.UndrainAgentRequest{AgentId: "a1"}))
	if err != nil {
		t.Fatal(err)
	}
	if a := un.Msg.GetAgent(); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE || a.GetDrain() != nil {
		t.Fatalf("undrain answered %v", a)
	}
}

// TestInverseOffersOnTheStream: a framework with a task on a drained agent
// hears an inverse offer live and again after resubscribing; its answer is
// recorded; bad answers are refused with a specific code and no change.
func TestInverseOffersOnTheStream(t *testing.T) {
	sc := startSchedHarness(t, nil)
	sc.registerAgent("a1", "cpus:4;mem:4096")
	sc.registerAgent("a2", "cpus:4;mem:4096")
	f := schedSubscribe(t, sc.leader().HTTPURL(), schedInfo("drainee", "web"))
	o := f.offerOn(t, "a1")
	ctx := context.Background()
	if _, err := sc.client().Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{o.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("a1", schedTask("t1", "cpus:1;mem:128"))}})); err != nil {
		t.Fatal(err)
	}

	// Answers before the drain, and for agents that do not qualify.
	before := sc.quiesce()
	for _, tc := range []struct {
		name  string
		agent string
		code  connect.Code
	}{
		{"answer for an agent not draining", "a1", connect.CodeFailedPrecondition},
		{"answer for an unknown agent", "ghost", connect.CodeNotFound},
		{"answer for a bad agent id", "../x", connect.CodeInvalidArgument},
	} {
		_, err := sc.client().AnswerInverseOffer(ctx, connect.NewRequest(&agorav1.AnswerInverseOfferRequest{Call: f.call(), AgentId: tc.agent, Accept: true}))
		schedWantCode(t, tc.name, err, tc.code)
	}
	_, err := sc.client().AnswerInverseOffer(ctx, connect.NewRequest(&agorav1.AnswerInverseOfferRequest{
		Call: &agorav1.FrameworkCall{FrameworkId: f.fid, StreamToken: "forged"}, AgentId: "a1", Accept: true}))
	schedWantCode(t, "answer with a forged token", err, connect.CodePermissionDenied)
	if got := sc.leader().State().Index(); got != before {
		t.Fatalf("refused answers changed the index: %d -> %d", before, got)
	}

	deadline := timestamppb.New(time.Now().Add(time.Hour))
	sc.apply(fsm.CmdDrainAgent, &agorav1.DrainAgentCommand{AgentId: "a1", Now: timestamppb.Now(), Deadline: deadline})
	ev := f.next(t, "inverse offer", func(ev *agorav1.SubscribeResponse) bool { return len(ev.GetInverseOffers().GetInverseOffers()) > 0 })
	io := ev.GetInverseOffers().GetInverseOffers()[0]
	if io.GetAgentId() != "a1" || io.GetFrameworkId() != f.fid || !io.GetDeadline().AsTime().Equal(deadline.AsTime()) || len(io.GetResources()) == 0 {
		t.Fatalf("inverse offer = %v", io)
	}
	// a2 is not drained: no answer is taken for it.
	_, err = sc.client().AnswerInverseOffer(ctx, connect.NewRequest(&agorav1.AnswerInverseOfferRequest{Call: f.call(), AgentId: "a2", Accept: true}))
	schedWantCode(t, "answer for an agent without a drain", err, connect.CodeFailedPrecondition)
	if _, err := sc.client().AnswerInverseOffer(ctx, connect.NewRequest(&agorav1.AnswerInverseOfferRequest{Call: f.call(), AgentId: "a1", Accept: true})); err != nil {
		t.Fatal(err)
	}
	a, _ := sc.leader().State().Agent("a1")
	if ans := a.GetDrain().GetAnswers(); len(ans) != 1 || ans[0].GetFrameworkId() != f.fid || !ans[0].GetAccepted() {
		t.Fatalf("answers = %v", ans)
	}

	// A resubscription hears the inverse offer again.
	f.cancel()
	info := schedInfo("drainee", "web")
	info.Id = f.fid
	f2 := schedSubscribe(t, sc.leader().HTTPURL(), info)
	f2.next(t, "inverse offer after resubscribing", func(ev *agorav1.SubscribeResponse) bool {
		ios := ev.GetInverseOffers().GetInverseOffers()
		return len(ios) == 1 && ios[0].GetAgentId() == "a1"
	})
}

// TestDrainDeadlineSurvivesFailover: the drain and its deadline are in Raft;
// the leader that set them is killed before the deadline and the new
// leader's deadline task kills the remaining task (reason DRAINED).
func TestDrainDeadlineSurvivesFailover(t *testing.T) {
	c, m := agStartAgentCluster(t, devcluster.Options{Masters: 3, MasterConfig: func(c *master.Config) {
		c.LivenessGrace = time.Hour // agents here have no gossip member
	}})
	ctx := context.Background()
	cl := client.New(strings.Join(c.Addrs(), ","))
	if _, err := cl.Agent.RegisterAgent(ctx, connect.NewRequest(agRegistration("a1"))); err != nil {
		t.Fatal(err)
	}
	agLaunchTask(t, c, "fw1", "a1", "t1", "sleep 1", "cpus:1;mem:64")
	if m != c.Leader() {
		t.Logf("leadership moved before the drain")
	}
	dl := time.Now().Add(3 * time.Second)
	if _, err := cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "a1", Deadline: timestamppb.New(dl)})); err != nil {
		t.Fatal(err)
	}
	old := c.LeaderIndex()
	if old < 0 {
		t.Fatal("no leader")
	}
	c.Kill(old)
	if time.Now().After(dl) {
		t.Logf("the leader was killed after the deadline (a slow machine); the test still checks the new leader applies it")
	}
	var next *master.Master
	agWaitFor(t, 60*time.Second, "t1 killed at the deadline by the new leader", func() error {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		l, err := c.WaitLeader(wctx)
		if err != nil {
			return err
		}
		next = l
		task, _ := l.State().Task("fw1", "t1")
		a, _ := l.State().Agent("a1")
		if task.GetState() != agorav1.TaskState_TASK_STATE_KILLING || task.GetKillReason() != fsm.ReasonDrained || !a.GetDrain().GetDeadlinePassed() {
			return fmt.Errorf("t1 %v, a1 drain %v", task.GetState(), a.GetDrain())
		}
		return nil
	})
	if next == c.Master(old) {
		t.Fatalf("the killed master %d still leads", old)
	}
	if a, _ := next.State().Agent("a1"); a.GetState() != agorav1.AgentState_AGENT_STATE_DRAINING {
		t.Fatalf("a1 = %v, want DRAINING (its task is still being killed)", a)
	}
}
