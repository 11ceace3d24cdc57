package demo

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/framework/frameworktest"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func launched(c frameworktest.Call) []string {
	var ids []string
	for _, op := range c.Request.(*agorav1.AcceptRequest).GetOperations() {
		for _, t := range op.GetTasks() {
			ids = append(ids, t.GetTaskId())
		}
	}
	return ids
}

func TestDemoKeepsThreeTasksCycling(t *testing.T) {
	ctx, cancelAll := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelAll()
	m := frameworktest.NewMaster()
	defer m.Close()
	out := &frameworktest.SyncBuffer{}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, []string{m.URL()}, out, slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	offer := func(id string) *agorav1.SubscribeResponse {
		return frameworktest.OffersEvent(&agorav1.Offer{Id: id, AgentId: "a1", Resources: []*agorav1.Resource{
			framework.Scalar("cpus", 1), framework.Scalar("mem", 1024)}})
	}
	_ = m.Send(offer("o1"))
	accepts, err := m.WaitCalls(ctx, "Accept", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(launched(accepts[0]), ","); got != "demo-1,demo-2,demo-3" {
		t.Fatalf("launched %s", got)
	}
	for _, task := range accepts[0].Request.(*agorav1.AcceptRequest).GetOperations()[0].GetTasks() {
		if !strings.HasPrefix(task.GetCommand().GetValue(), "sleep ") {
			t.Fatalf("task command %q", task.GetCommand().GetValue())
		}
	}
	// Full: the next offer is declined.
	_ = m.Send(offer("o2"))
	if _, err := m.WaitCalls(ctx, "Decline", 1); err != nil {
		t.Fatal(err)
	}
	// One ends: the next offer starts a replacement.
	_ = m.Send(frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: "demo-2", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_FINISHED, Uuid: "u1"}))
	if _, err := m.WaitCalls(ctx, "Acknowledge", 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(offer("o3"))
	accepts, err = m.WaitCalls(ctx, "Accept", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(launched(accepts[1]), ","); got != "demo-4" {
		t.Fatalf("replacement launched %s", got)
	}
	// The fake master has the Accept; the demo says "launching" once the
	// answer is back. Cancelling before then would cut that answer off
	// (a race seen in a CI rehearsal), so wait for the line first.
	waitOutput(t, ctx, out, "demo: launching demo-4")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
	if n := len(m.Calls("Teardown")); n != 1 {
		t.Fatalf("%d teardowns", n)
	}
	for _, want := range []string{"demo: offer o1 from agent a1: cpus 1.00 mem 1024", "demo: task demo-2 FINISHED on agent a1", "demo: launching demo-4"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

// waitOutput polls out until it holds want, failing the test at ctx's end.
func waitOutput(t *testing.T, ctx context.Context, out *frameworktest.SyncBuffer, want string) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("output lacks %q:\n%s", want, out)
		case <-tick.C:
		}
	}
}
