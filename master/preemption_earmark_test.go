package master

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/preempt"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// TestEarmarkUsedByItsFrameworkServesNoMoreDemand: once the demanding
// framework launched into the room a preemption earmarked for it, that
// room is used: a further unit of its demand (a service's next pod) must
// not count as placed in the earmark while the window lasts, but get a
// decision of its own once the framework had time to lower its demand
// for the launched unit (RELIABILITY.md open 9: the demo's second web pod
// waited for batch units to end, with no preemption, because the first
// pod's earmark absorbed its demand).
func TestEarmarkUsedByItsFrameworkServesNoMoreDemand(t *testing.T) {
	pb := newPreemptBuilder()
	if err := pb.build(2, 1); err != nil {
		t.Fatal(err)
	}
	at := func(s int64) time.Time { return time.Unix(1_700_000_100+s, 0) }
	res := func(spec string) []*agorav1.Resource { return resourcepb.ToProto("", resources.MustParse(spec)) }

	// 1. The first unit: a decision on one agent.
	plan := preempt.Decide(preemptInput(pb.f.State(), at(0)))
	if len(plan.Preemptions) != 1 {
		t.Fatalf("first pass: %d decisions, want 1 (%+v)", len(plan.Preemptions), plan.Verdicts)
	}
	pr := plan.Preemptions[0]
	if err := pb.apply(fsm.CmdPreempt, preemptCommand(pr, at(0), 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// 2. Its victims end.
	up := &agorav1.StatusUpdateCommand{AgentId: pr.AgentID, Now: timestamppb.New(at(1))}
	for i, v := range pr.Victims {
		up.Statuses = append(up.Statuses, &agorav1.TaskStatus{FrameworkId: v.FrameworkID, TaskId: v.ID, State: agorav1.TaskState_TASK_STATE_KILLED,
			Uuid: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Timestamp: timestamppb.New(at(1))})
	}
	if err := pb.apply(fsm.CmdStatusUpdate, up); err != nil {
		t.Fatal(err)
	}
	// 3. prod is offered the earmark and launches its unit there.
	if err := pb.apply(fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: timestamppb.New(at(2)), Offers: []*agorav1.Offer{{
		Id: "o-prod", FrameworkId: "prod", AgentId: pr.AgentID, Role: "prod", ExpiresAt: timestamppb.New(at(3600)), Resources: res("cpus:4;mem:8192")}}}); err != nil {
		t.Fatal(err)
	}
	if err := pb.apply(fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "prod", OfferIds: []string{"o-prod"}, Now: timestamppb.New(at(2)),
		Operations: []*agorav1.Operation{{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{{
			TaskId: "p-0", Resources: res("cpus:4;mem:8192"), Command: &agorav1.CommandInfo{Value: "sleep 3600"}}}}}}); err != nil {
		t.Fatal(err)
	}
	// 4. The next unit, within the window of the first decision.
	if err := pb.apply(fsm.CmdSetDemand, &agorav1.SetDemandCommand{FrameworkId: "prod", Demand: []*agorav1.Demand{
		{Role: "prod", Resources: res("cpus:4;mem:8192"), Count: 1}}}); err != nil {
		t.Fatal(err)
	}
	st := pb.f.State()
	if len(st.Preemptions()) != 1 {
		t.Fatalf("%d preemptions in force, want the first one", len(st.Preemptions()))
	}
	// Just after the launch, the demand may not count the launched unit
	// out yet (the framework lowers it in a write of its own): the earmark
	// still serves it, and nothing is preempted for it.
	plan = preempt.Decide(preemptInput(st, at(2).Add(earmarkUseLag/2)))
	if len(plan.Verdicts) != 1 || plan.Verdicts[0].Placed != 1 || len(plan.Preemptions) != 0 {
		t.Errorf("just after the launch: verdicts %+v, %d decisions; want the unit placed in the earmark", plan.Verdicts, len(plan.Preemptions))
	}
	for _, c := range []struct {
		name string
		in   preempt.Input
	}{{"full input", preemptInput(st, at(3))}, {"cached input", newPreemptCache().input(st, at(3))}} {
		plan = preempt.Decide(c.in)
		if len(plan.Verdicts) != 1 || plan.Verdicts[0].Placed != 0 || plan.Verdicts[0].Preempting != 1 || len(plan.Preemptions) != 1 {
			t.Errorf("%s: second unit: verdicts %+v, %d decisions; want it preempted for, not placed in the used earmark (earmarks %+v)",
				c.name, plan.Verdicts, len(plan.Preemptions), c.in.Earmarks)
		}
	}
}
