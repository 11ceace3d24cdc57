package simagent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/agent/executor"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// fakeMaster is an AgentService that serves assignments a test sets and
// records every status update, in the order received.
type fakeMaster struct {
	agorav1connect.UnimplementedAgentServiceHandler

	mu       sync.Mutex
	index    uint64
	tasks    []*agorav1.Task
	changed  chan struct{} // closed and replaced at each change
	statuses []*agorav1.TaskStatus
	at       []time.Time // when each status arrived
}

func newFakeMaster(t *testing.T) (*fakeMaster, string) {
	f := &fakeMaster{index: 1, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle(agorav1connect.NewAgentServiceHandler(f))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// set replaces the assignments (deep copies) and bumps the index.
func (f *fakeMaster) set(tasks ...*agorav1.Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks = f.tasks[:0]
	for _, t := range tasks {
		f.tasks = append(f.tasks, proto.Clone(t).(*agorav1.Task))
	}
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeMaster) RegisterAgent(context.Context, *connect.Request[agorav1.RegisterAgentRequest]) (*connect.Response[agorav1.RegisterAgentResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return connect.NewResponse(&agorav1.RegisterAgentResponse{Index: f.index}), nil
}

func (f *fakeMaster) GetAssignments(ctx context.Context, req *connect.Request[agorav1.GetAssignmentsRequest]) (*connect.Response[agorav1.GetAssignmentsResponse], error) {
	timer := time.NewTimer(time.Duration(req.Msg.GetWaitSeconds() * float64(time.Second)))
	defer timer.Stop()
	for {
		f.mu.Lock()
		if f.index > req.Msg.GetMinIndex() {
			out := &agorav1.GetAssignmentsResponse{Index: f.index, Known: true}
			for _, t := range f.tasks {
				out.Tasks = append(out.Tasks, proto.Clone(t).(*agorav1.Task))
			}
			f.mu.Unlock()
			return connect.NewResponse(out), nil
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			f.mu.Lock()
			defer f.mu.Unlock()
			return connect.NewResponse(&agorav1.GetAssignmentsResponse{Index: f.index, Known: true, Tasks: f.tasks}), nil
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

func (f *fakeMaster) UpdateStatus(_ context.Context, req *connect.Request[agorav1.UpdateStatusRequest]) (*connect.Response[agorav1.UpdateStatusResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range req.Msg.GetStatuses() {
		f.statuses = append(f.statuses, st)
		f.at = append(f.at, time.Now())
	}
	return connect.NewResponse(&agorav1.UpdateStatusResponse{}), nil
}

func (f *fakeMaster) StopAgent(context.Context, *connect.Request[agorav1.StopAgentRequest]) (*connect.Response[agorav1.StopAgentResponse], error) {
	return connect.NewResponse(&agorav1.StopAgentResponse{}), nil
}

// of returns the statuses received for task id, and when each came.
func (f *fakeMaster) of(id string) ([]*agorav1.TaskStatus, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*agorav1.TaskStatus
	var at []time.Time
	for i, st := range f.statuses {
		if st.GetTaskId() == id {
			out = append(out, st)
			at = append(at, f.at[i])
		}
	}
	return out, at
}

// waitStates polls until task id's statuses are exactly want (in order),
// failing the test after a deadline.
func (f *fakeMaster) waitStates(t *testing.T, id string, want ...agorav1.TaskState) []*agorav1.TaskStatus {
	t.Helper()
	var got []*agorav1.TaskStatus
	waitUntil(t, 20*time.Second, func() (bool, string) {
		got, _ = f.of(id)
		var states []agorav1.TaskState
		for _, st := range got {
			states = append(states, st.GetState())
		}
		if len(states) > len(want) {
			t.Fatalf("task %s: statuses %v, want %v", id, states, want)
		}
		return fmt.Sprint(states) == fmt.Sprint(want), fmt.Sprintf("task %s: statuses %v, want %v", id, states, want)
	})
	return got
}

// waitUntil checks cond on every tick until it holds, failing the test
// with cond's last description once d has passed.
func waitUntil(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, what := cond()
		if ok {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal(what)
		}
	}
}

func startSim(t *testing.T, url string, cfg Config) *Sim {
	t.Helper()
	cfg.Masters, cfg.Count, cfg.Resources = []string{url}, 1, resources.MustParse("cpus:4;mem:4096")
	cfg.PollWait = 5 * time.Second
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func task(id string, mod ...func(*agorav1.Task)) *agorav1.Task {
	t := &agorav1.Task{Id: id, FrameworkId: "fw", AgentId: "sim-00000", State: agorav1.TaskState_TASK_STATE_STAGING}
	for _, m := range mod {
		m(t)
	}
	return t
}

func killed(grace float64, reason string) func(*agorav1.Task) {
	return func(t *agorav1.Task) {
		t.KillRequested, t.KillGraceSeconds, t.KillReason = true, grace, reason
		t.State = agorav1.TaskState_TASK_STATE_KILLING
	}
}

// TestKillAfterGrace: a killed task ends KILLED, as the real agent's
// executor reports a process that outlived SIGTERM, no sooner than its
// kill grace after the kill was assigned, with no KILLING of its own.
func TestKillAfterGrace(t *testing.T) {
	f, url := newFakeMaster(t)
	s := startSim(t, url, Config{})
	f.set(task("t1"))
	f.waitStates(t, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	const grace = 700 * time.Millisecond
	killAt := time.Now()
	f.set(task("t1", killed(grace.Seconds(), "PREEMPTED")))
	got := f.waitStates(t, "t1", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLED)
	_, at := f.of("t1")
	if d := at[1].Sub(killAt); d < grace {
		t.Errorf("KILLED %v after the kill, before the kill grace %v", d, grace)
	}
	k := got[1]
	if k.GetReason() != "killed on request: killed by signal 9 (SIGKILL)" || k.GetExitCode() != 137 || k.GetAgentId() != "sim-00000" || k.GetUuid() == "" {
		t.Errorf("KILLED update %v, want the real executor's reason and exit code 137", k)
	}
	// The task leaves the assignments once the masters recorded KILLED;
	// nothing more is sent for it.
	f.set()
	f.set(task("t2"))
	f.waitStates(t, "t2", agorav1.TaskState_TASK_STATE_RUNNING)
	f.waitStates(t, "t1", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLED)
	// Stats count an update once its call returned, just after the
	// master recorded it.
	want := Stats{Registered: 1, Launched: 2, Running: 2, Finished: 1, Killed: 1}
	waitUntil(t, 10*time.Second, func() (bool, string) {
		got := s.Stats()
		return got == want, fmt.Sprintf("stats %+v, want %+v", got, want)
	})
}

// TestKillDefaultGrace: a task with no kill grace of its own is killed
// after Config.KillGrace (the real agent's default when unset).
func TestKillDefaultGrace(t *testing.T) {
	f, url := newFakeMaster(t)
	const grace = 600 * time.Millisecond
	startSim(t, url, Config{KillGrace: grace})
	f.set(task("t1"))
	f.waitStates(t, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	killAt := time.Now()
	f.set(task("t1", killed(0, "")))
	f.waitStates(t, "t1", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLED)
	if _, at := f.of("t1"); at[1].Sub(killAt) < grace {
		t.Errorf("KILLED %v after the kill, before the default grace %v", at[1].Sub(killAt), grace)
	}
	if d, _ := New(Config{Masters: []string{url}, Count: 1, Resources: resources.MustParse("cpus:1")}); d.cfg.KillGrace != executor.DefaultKillGrace {
		t.Errorf("default kill grace %v, want the executor's %v", d.cfg.KillGrace, executor.DefaultKillGrace)
	}
}

// TestKillBeforeLaunch: a task first seen with its kill requested never
// runs: KILLED at once, "killed before launch", as the real agent does.
func TestKillBeforeLaunch(t *testing.T) {
	f, url := newFakeMaster(t)
	s := startSim(t, url, Config{KillGrace: time.Hour})
	f.set(task("t1", killed(3600, "DRAINED")))
	got := f.waitStates(t, "t1", agorav1.TaskState_TASK_STATE_KILLED)
	if got[0].GetReason() != "killed before launch" {
		t.Errorf("reason %q, want killed before launch", got[0].GetReason())
	}
	if st := s.Stats(); st.Launched != 0 {
		t.Errorf("stats %+v: launched a task killed before launch", st)
	}
}

// TestFinishAndKill: with a task duration, a task runs to FINISHED unless
// killed; killed, it never reports FINISHED: it ends KILLED when its
// duration ends during the grace (a process exiting after SIGTERM), or
// after the grace when that comes first.
func TestFinishAndKill(t *testing.T) {
	f, url := newFakeMaster(t)
	const dur = 1500 * time.Millisecond
	startSim(t, url, Config{TaskDuration: dur})
	f.set(task("fin"), task("early"), task("late"))
	for _, id := range []string{"fin", "early", "late"} {
		f.waitStates(t, id, agorav1.TaskState_TASK_STATE_RUNNING)
	}
	// early: killed with a grace far longer than what is left of its
	// duration; late: a grace far shorter.
	f.set(task("fin"), task("early", killed(3600, "PREEMPTED")), task("late", killed(0.05, "PREEMPTED")))
	late := f.waitStates(t, "late", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLED)
	fin := f.waitStates(t, "fin", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_FINISHED)
	early := f.waitStates(t, "early", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLED)
	if r := late[1].GetReason(); r != "killed on request: killed by signal 9 (SIGKILL)" {
		t.Errorf("late: reason %q", r)
	}
	if r := early[1].GetReason(); r != "killed on request: exited with code 0" || early[1].GetExitCode() != 0 {
		t.Errorf("early: reason %q exit %d, want the executor's killed-on-request of an exit 0", r, early[1].GetExitCode())
	}
	if r := fin[1].GetReason(); r != "exited with code 0" {
		t.Errorf("fin: reason %q", r)
	}
	// late's duration ends after its KILLED: nothing more is sent.
	f.set(task("fin"), task("early", killed(3600, "PREEMPTED")))
	f.set(task("probe"))
	f.waitStates(t, "probe", agorav1.TaskState_TASK_STATE_RUNNING)
	f.waitStates(t, "probe", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_FINISHED)
	f.waitStates(t, "late", agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLED)
}
