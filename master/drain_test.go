package master_test

import (
	"context"
	"fmt"
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
