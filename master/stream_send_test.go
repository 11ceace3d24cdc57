package master_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// testBatchedUpdates: a subscriber that asks for batched updates gets the
// updates of one entry as one UPDATES event, in the entry's order, and
// their resends batched too; one that does not ask gets UPDATE events.
func testBatchedUpdates(t *testing.T, sc *schedCluster) {
	sc.registerAgent("ag-batch", "cpus:8;mem:4096")
	defer sc.retireAgent("ag-batch")
	f, err := schedTrySubscribeReq(sc.leader().HTTPURL(), &agorav1.SubscribeRequest{FrameworkInfo: schedInfo("batched", "web"), BatchedUpdates: true})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(f.cancel)
	defer schedTeardown(t, sc, f)
	o := f.offerOn(t, "ag-batch")
	var tasks []*agorav1.TaskInfo
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("b%d", 5-i) // not in sorted order: the entry's order must be kept
		ids = append(ids, id)
		tasks = append(tasks, schedTask(id, "cpus:0.5;mem:64"))
	}
	ctx := context.Background()
	if _, err := sc.client().Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{o.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", tasks...)}})); err != nil {
		t.Fatalf("accept: %v", err)
	}
	var statuses []*agorav1.TaskStatus
	for _, id := range ids {
		statuses = append(statuses, &agorav1.TaskStatus{TaskId: id, FrameworkId: f.fid, AgentId: "ag-batch",
			State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: master.NewID()})
	}
	sc.apply(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: "ag-batch", Now: timestamppb.Now(), Statuses: statuses})

	taskIDs := func(ev *agorav1.SubscribeResponse) []string {
		var got []string
		for _, st := range ev.GetUpdates().GetStatuses() {
			got = append(got, st.GetTaskId())
		}
		return got
	}
	byID := map[string]*agorav1.TaskStatus{}
	for _, st := range statuses {
		byID[st.GetTaskId()] = st
	}
	// Live in the entry's order; resent in the order they were sent.
	for _, what := range []string{"the entry's updates in one UPDATES event", "their resend in one UPDATES event"} {
		want := ids
		ev := f.next(t, what, func(ev *agorav1.SubscribeResponse) bool {
			if ev.GetUpdate() != nil {
				t.Fatalf("a batched subscriber got an UPDATE event: %v", ev)
			}
			return ev.GetUpdates() != nil
		})
		if got := taskIDs(ev); !slices.Equal(got, want) {
			t.Fatalf("%s: task ids %v, want %v", what, got, want)
		}
		for _, st := range ev.GetUpdates().GetStatuses() {
			if w := byID[st.GetTaskId()]; st.GetUuid() != w.GetUuid() || st.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
				t.Fatalf("%s: status %v, want uuid %s RUNNING", what, st, w.GetUuid())
			}
		}
	}
}
