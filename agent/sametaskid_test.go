package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// oneTask is a scheduler that launches one task, with a fixed id, on the
// first offer it gets, declines the rest and records the task's states.
type oneTask struct {
	taskID string

	mu       sync.Mutex
	d        framework.Driver
	launched bool
	state    agorav1.TaskState
	errs     []string
}

func (s *oneTask) Subscribed(d framework.Driver, _ string, _ bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = d
}

func (s *oneTask) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx := context.Background()
	refuse := 1.0
	for _, o := range offers {
		s.mu.Lock()
		launch := !s.launched
		s.launched = true
		s.mu.Unlock()
		if !launch {
			_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
			continue
		}
		task := framework.Task(s.taskID, o.GetAgentId(), "sleep 120", framework.Scalar("cpus", 0.1), framework.Scalar("mem", 16))
		if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(task)}, &refuse); err != nil {
			s.mu.Lock()
			s.launched = false
			s.errs = append(s.errs, "accept: "+err.Error())
			s.mu.Unlock()
		}
	}
}

func (s *oneTask) Rescind(framework.Driver, string) {}
func (s *oneTask) Failure(framework.Driver, string) {}

func (s *oneTask) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.GetTaskId() == s.taskID {
		s.state = st.GetState()
	}
}

func (s *oneTask) Error(_ framework.Driver, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, "error event: "+msg)
}

func (s *oneTask) snapshot() (framework.Driver, agorav1.TaskState, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d, s.state, append([]string(nil), s.errs...)
}

func testLogger() *slog.Logger {
	if os.Getenv("AGORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func poll(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSameTaskIDTwoFrameworksOneAgent: the masters key tasks by (framework,
// task id), so two frameworks may both run a task "web" on one agent. Both
// must run, each in its own sandbox, and killing one must leave the other.
func TestSameTaskIDTwoFrameworksOneAgent(t *testing.T) {
	log := testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 1, DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/self/cwd"); err != nil {
		t.Skip("needs /proc to see the tasks' processes")
	}
	_, err = c.StartAgent(ctx, devcluster.AgentOptions{ID: "a1", Resources: "cpus:2;mem:1024;disk:100"})
	if err != nil {
		t.Fatal(err)
	}

	const taskID = "web"
	scheds := map[string]*oneTask{"alpha": {taskID: taskID}, "beta": {taskID: taskID}}
	for name, s := range scheds {
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- framework.Run(runCtx, framework.Config{Masters: c.Addrs(), Logger: log,
				Info:       &agorav1.FrameworkInfo{Name: name, Roles: []string{"*"}, FailoverTimeoutSeconds: 60},
				MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, s)
		}()
		t.Cleanup(func() { stop(); <-done })
	}

	taskState := func(fid string) (agorav1.TaskState, error) {
		l := c.Leader()
		if l == nil {
			return 0, errors.New("no leader")
		}
		tk, ok := l.State().Task(fid, taskID)
		if !ok {
			return 0, fmt.Errorf("task %s of %s unknown to the leader", taskID, fid)
		}
		return tk.GetState(), nil
	}
	sandbox := func(fid string) string {
		return filepath.Join(c.Dir(), "agents", "a1", "executor", "tasks", fid, taskID)
	}
	// running: the leader and the framework see RUNNING and a process
	// works in the task's own sandbox.
	running := func(name, fid string) error {
		if st, err := taskState(fid); err != nil || st != agorav1.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("leader has %v (%v)", st, err)
		}
		if _, st, _ := scheds[name].snapshot(); st != agorav1.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("framework saw %v", st)
		}
		if n := procsIn(sandbox(fid)); n == 0 {
			return errors.New("no process in its sandbox")
		}
		return nil
	}

	ids := map[string]string{} // framework name -> id
	poll(t, 30*time.Second, "both frameworks subscribed", func() error {
		for name, s := range scheds {
			d, _, errs := s.snapshot()
			if len(errs) > 0 {
				return fmt.Errorf("%s: %v", name, errs)
			}
			if d == nil || d.FrameworkID() == "" {
				return fmt.Errorf("%s not subscribed", name)
			}
			ids[name] = d.FrameworkID()
		}
		return nil
	})
	if ids["alpha"] == ids["beta"] {
		t.Fatalf("both frameworks got id %s", ids["alpha"])
	}
	for name, fid := range ids {
		poll(t, 30*time.Second, name+": task "+taskID+" RUNNING on a1", func() error { return running(name, fid) })
	}

	// Kill alpha's task: it ends, beta's keeps running.
	d, _, _ := scheds["alpha"].snapshot()
	if err := d.Kill(ctx, taskID, "a1"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	poll(t, 30*time.Second, "alpha's task KILLED and its process gone", func() error {
		if _, st, _ := scheds["alpha"].snapshot(); st != agorav1.TaskState_TASK_STATE_KILLED {
			return fmt.Errorf("alpha saw %v", st)
		}
		if n := procsIn(sandbox(ids["alpha"])); n != 0 {
			return fmt.Errorf("%d processes still in alpha's sandbox", n)
		}
		return nil
	})
	if err := running("beta", ids["beta"]); err != nil {
		t.Fatalf("beta's task after the kill of alpha's: %v", err)
	}
	if _, st, errs := scheds["beta"].snapshot(); st != agorav1.TaskState_TASK_STATE_RUNNING || len(errs) > 0 {
		t.Fatalf("beta saw %v, errors %v", st, errs)
	}
}

// procsIn counts the processes whose working directory is dir (0 where
// /proc cannot tell).
func procsIn(dir string) int {
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0
	}
	links, _ := filepath.Glob("/proc/[0-9]*/cwd")
	n := 0
	for _, l := range links {
		if cwd, err := os.Readlink(l); err == nil && cwd == want {
			n++
		}
	}
	return n
}
