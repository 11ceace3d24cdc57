package master_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// testAcknowledgeBatch: one Acknowledge call with a list acknowledges the
// good ones and lists the refused ones; a list over the limit is
// ResourceExhausted and changes nothing.
func testAcknowledgeBatch(t *testing.T, sc *schedCluster) {
	sc.registerAgent("ag-acks", "cpus:4;mem:2048")
	defer sc.retireAgent("ag-acks")
	f := schedSubscribe(t, sc.leader().HTTPURL(), schedInfo("acker", "web"))
	defer schedTeardown(t, sc, f)
	o := f.offerOn(t, "ag-acks")
	ctx := context.Background()
	cl := sc.client()
	_, err := cl.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{o.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("", schedTask("t1", "cpus:1;mem:256"), schedTask("t2", "cpus:1;mem:256"), schedTask("t3", "cpus:1;mem:256"))}}))
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	u1 := sc.taskStatus("ag-acks", f.fid, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	u2 := sc.taskStatus("ag-acks", f.fid, "t2", agorav1.TaskState_TASK_STATE_RUNNING)
	sc.taskStatus("ag-acks", f.fid, "t3", agorav1.TaskState_TASK_STATE_RUNNING)

	before := sc.quiesce()
	over := make([]*agorav1.Acknowledgement, 10_001)
	for i := range over {
		over[i] = &agorav1.Acknowledgement{TaskId: "t1", Uuid: u1}
	}
	_, err = cl.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: f.call(), Acknowledgements: over}))
	schedWantCode(t, "10,001 acknowledgements", err, connect.CodeResourceExhausted)
	if idx := sc.leader().State().Index(); idx != before {
		t.Fatalf("a refused call moved the index from %d to %d", before, idx)
	}

	res, err := cl.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: f.call(), Acknowledgements: []*agorav1.Acknowledgement{
		{AgentId: "ag-acks", TaskId: "t1", Uuid: u1},
		{AgentId: "ag-acks", TaskId: "t3", Uuid: "not-the-uuid"},
		{AgentId: "ag-acks", TaskId: "ghost", Uuid: u1},
		{AgentId: "ag-acks", TaskId: "t2", Uuid: u2},
	}}))
	if err != nil {
		t.Fatalf("acknowledge a list: %v", err)
	}
	failed := map[string]string{}
	for _, fl := range res.Msg.GetFailures() {
		failed[fl.GetTaskId()] = fl.GetCode()
	}
	if len(failed) != 2 || failed["t3"] != connect.CodeNotFound.String() || failed["ghost"] != connect.CodeNotFound.String() {
		t.Fatalf("failures %v, want t3 and ghost not_found", res.Msg.GetFailures())
	}
	st := sc.leader().State()
	for id, want := range map[string]bool{"t1": true, "t2": true, "t3": false} {
		if tk, _ := st.Task(f.fid, id); tk.GetAcknowledged() != want {
			t.Fatalf("task %s acknowledged=%v, want %v", id, tk.GetAcknowledged(), want)
		}
	}
}
