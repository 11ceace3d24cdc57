package execute

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

func offer(id, agent string, cpus, mem float64) *agorav1.Offer {
	return &agorav1.Offer{Id: id, AgentId: agent, Role: "*", Resources: []*agorav1.Resource{
		framework.Scalar("cpus", cpus), framework.Scalar("mem", mem), framework.Scalar("disk", 100),
	}}
}

func status(task, agent string, s agorav1.TaskState, uuid string) *agorav1.SubscribeResponse {
	return frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: task, AgentId: agent, State: s, Uuid: uuid})
}

func launchedIDs(t *testing.T, c frameworktest.Call) []string {
	t.Helper()
	var ids []string
	for _, op := range c.Request.(*agorav1.AcceptRequest).GetOperations() {
		for _, task := range op.GetTasks() {
			ids = append(ids, task.GetTaskId()+"@"+task.GetAgentId())
		}
	}
	return ids
}

func start(t *testing.T, o Options) (*frameworktest.Master, *frameworktest.SyncBuffer, <-chan error, context.CancelFunc) {
	t.Helper()
	m := frameworktest.NewMaster()
	t.Cleanup(m.Close)
	out := &frameworktest.SyncBuffer{}
	o.Masters = []string{m.URL()}
	o.Out = out
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(cancel)
	return m, out, done, cancel
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitDone(t *testing.T, ctx context.Context, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		t.Fatal("Run did not return")
		return nil
	}
}

func TestDetachPacksTasksRelaunchesFailuresAndDetaches(t *testing.T) {
	ctx := testCtx(t)
	m, out, done, _ := start(t, Options{Name: "web", Cmd: "sleep 600", Instances: 3, CPUs: 0.5, MemMiB: 64, Detach: true, FailoverTimeout: time.Hour})
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	info := m.Subscriptions()[0]
	if info.GetName() != "web" || info.GetFailoverTimeoutSeconds() != 3600 || len(info.GetRoles()) != 1 || info.GetRoles()[0] != "*" {
		t.Fatalf("framework info %v", info)
	}
	// Two tasks fit on a1; a2 takes the third; a3's offer is declined.
	_ = m.Send(frameworktest.OffersEvent(offer("o1", "a1", 1.2, 1024)))
	accepts, err := m.WaitCalls(ctx, "Accept", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(launchedIDs(t, accepts[0]), ","); got != "web-1@a1,web-2@a1" {
		t.Fatalf("first accept launched %s", got)
	}
	_ = m.Send(frameworktest.OffersEvent(offer("o2", "a2", 4, 4096), offer("o3", "a3", 4, 4096)))
	accepts, err = m.WaitCalls(ctx, "Accept", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(launchedIDs(t, accepts[1]), ","); got != "web-3@a2" {
		t.Fatalf("second accept launched %s", got)
	}
	if _, err := m.WaitCalls(ctx, "Decline", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WaitCalls(ctx, "Suppress", 1); err != nil {
		t.Fatal("no suppress once every task was placed")
	}

	_ = m.Send(status("web-1", "a1", agorav1.TaskState_TASK_STATE_RUNNING, "u1"))
	_ = m.Send(status("web-2", "a1", agorav1.TaskState_TASK_STATE_FAILED, "u2"))
	if _, err := m.WaitCalls(ctx, "Revive", 1); err != nil {
		t.Fatal("no revive after a task failed")
	}
	_ = m.Send(frameworktest.OffersEvent(offer("o4", "a2", 1, 1024)))
	accepts, err = m.WaitCalls(ctx, "Accept", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(launchedIDs(t, accepts[2]), ","); got != "web-2.2@a2" {
		t.Fatalf("relaunch launched %s", got)
	}
	_ = m.Send(status("web-3", "a2", agorav1.TaskState_TASK_STATE_RUNNING, "u3"))
	_ = m.Send(status("web-3", "a2", agorav1.TaskState_TASK_STATE_RUNNING, "")) // reconciliation answer
	_ = m.Send(status("web-2.2", "a2", agorav1.TaskState_TASK_STATE_RUNNING, "u4"))
	if err := waitDone(t, ctx, done); err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	if n := len(m.Calls("Acknowledge")); n != 4 {
		t.Fatalf("%d acknowledgements, want 4", n)
	}
	if n := len(m.Calls("Teardown")); n != 0 {
		t.Fatal("a detached run tore its framework down")
	}
	want := `framework web registered as fw-1
task web-1 RUNNING on agent a1
task web-2 FAILED on agent a1
relaunching web-2 as web-2.2
task web-3 RUNNING on agent a2
task web-2.2 RUNNING on agent a2
framework fw-1 detached; tasks keep running until the failover timeout
`
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}
}

func TestWithoutDetachTearsDownWhenContextEnds(t *testing.T) {
	ctx := testCtx(t)
	m, out, done, cancel := start(t, Options{Name: "batch", Cmd: "sleep 600"})
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.OffersEvent(offer("o1", "a1", 1, 1024)))
	accepts, err := m.WaitCalls(ctx, "Accept", 1)
	if err != nil {
		t.Fatal(err)
	}
	task := accepts[0].Request.(*agorav1.AcceptRequest).GetOperations()[0].GetTasks()[0]
	if task.GetCommand().GetValue() != "sleep 600" || framework.ScalarIn(task.GetResources(), "cpus", "") != 0.1 ||
		framework.ScalarIn(task.GetResources(), "mem", "") != 32 {
		t.Fatalf("task with defaults: %v", task)
	}
	_ = m.Send(status("batch-1", "a1", agorav1.TaskState_TASK_STATE_RUNNING, "u1"))
	if _, err := m.WaitCalls(ctx, "Acknowledge", 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := waitDone(t, ctx, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(m.Calls("Teardown")); n != 1 {
		t.Fatalf("%d teardowns, want 1", n)
	}
	if !strings.Contains(out.String(), "framework fw-1 torn down") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestGivesUpAfterRepeatedFailures(t *testing.T) {
	ctx := testCtx(t)
	m, _, done, _ := start(t, Options{Name: "bad", Cmd: "exit 1"})
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	ids := []string{"bad-1", "bad-1.2", "bad-1.3", "bad-1.4", "bad-1.5"}
	for i, id := range ids {
		_ = m.Send(frameworktest.OffersEvent(offer("o"+id, "a1", 1, 1024)))
		accepts, err := m.WaitCalls(ctx, "Accept", i+1)
		if err != nil {
			t.Fatal(err)
		}
		if got := launchedIDs(t, accepts[i]); len(got) != 1 || got[0] != id+"@a1" {
			t.Fatalf("attempt %d launched %v", i+1, got)
		}
		_ = m.Send(status(id, "a1", agorav1.TaskState_TASK_STATE_FAILED, "u"+id))
	}
	err := waitDone(t, ctx, done)
	if err == nil || !strings.Contains(err.Error(), "task bad-1 failed 5 times") {
		t.Fatalf("Run returned %v", err)
	}
	if n := len(m.Calls("Teardown")); n != 1 {
		t.Fatalf("%d teardowns after giving up, want 1", n)
	}
}

func TestFrameworkTornDownByOperator(t *testing.T) {
	ctx := testCtx(t)
	m, _, done, _ := start(t, Options{Name: "web", Cmd: "sleep 1", Detach: true})
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.ErrorEvent("framework torn down"))
	err := waitDone(t, ctx, done)
	if err == nil || err.Error() != "framework fw-1 was torn down" {
		t.Fatalf("Run returned %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Cmd: "x", Masters: []string{"m"}}, "a framework name is required"},
		{Options{Name: "x", Masters: []string{"m"}}, "a command is required"},
		{Options{Name: "x", Cmd: "x"}, "a master address is required"},
		{Options{Name: "x", Cmd: "x", Masters: []string{"m"}, Instances: -1}, "--instances -1 must be positive"},
		{Options{Name: "x", Cmd: "x", Masters: []string{"m"}, CPUs: -1}, "--cpus -1 must be a positive number"},
		{Options{Name: "x", Cmd: "x", Masters: []string{"m"}, MemMiB: -2}, "--mem -2 must be a positive number of MiB"},
		{Options{Name: "x", Cmd: "x", Masters: []string{"m"}, FailoverTimeout: -time.Second}, "--failover-timeout -1s must not be negative"},
	} {
		if err := Run(ctx, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
}
