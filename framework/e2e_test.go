package framework_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// e2eSched is the scheduler of the end-to-end test. In hold mode it keeps
// every offer for the test to use; otherwise it launches its queued tasks on
// the first offer that fits, declines the rest and suppresses when done.
type e2eSched struct {
	name string
	hold bool

	mu     sync.Mutex
	d      framework.Driver
	subs   []bool // resubscribed flag of each SUBSCRIBED
	offers map[string]*agorav1.Offer
	queue  []string
	states map[string]agorav1.TaskState
	uuids  map[string][]string // task -> uuids seen
	errs   []string
}

func newE2ESched(name string, hold bool, tasks ...string) *e2eSched {
	return &e2eSched{name: name, hold: hold, queue: tasks, offers: map[string]*agorav1.Offer{},
		states: map[string]agorav1.TaskState{}, uuids: map[string][]string{}}
}

const (
	e2eCPUs = 0.1
	e2eMem  = 16
	e2eCmd  = "sleep 120"
)

func e2eTask(id, agent string) *agorav1.TaskInfo {
	return framework.Task(id, agent, e2eCmd, framework.Scalar("cpus", e2eCPUs), framework.Scalar("mem", e2eMem))
}

func (s *e2eSched) Subscribed(d framework.Driver, id string, resubscribed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = d
	s.subs = append(s.subs, resubscribed)
}

func (s *e2eSched) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx := context.Background()
	for _, o := range offers {
		s.mu.Lock()
		if s.hold {
			s.offers[o.GetId()] = o
			s.mu.Unlock()
			continue
		}
		queue := s.queue
		s.queue = nil
		s.mu.Unlock()
		refuse := 1.0
		if len(queue) == 0 {
			_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
			continue
		}
		var tasks []*agorav1.TaskInfo
		for _, id := range queue {
			tasks = append(tasks, e2eTask(id, o.GetAgentId()))
		}
		if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(tasks...)}, &refuse); err != nil {
			s.mu.Lock()
			s.queue = queue
			s.errs = append(s.errs, "accept: "+err.Error())
			s.mu.Unlock()
			continue
		}
		_ = d.Suppress(ctx)
	}
}

func (s *e2eSched) Rescind(_ framework.Driver, offerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.offers, offerID)
}

func (s *e2eSched) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states[st.GetTaskId()] = st.GetState()
	if st.GetUuid() != "" {
		s.uuids[st.GetTaskId()] = append(s.uuids[st.GetTaskId()], st.GetUuid())
	}
}

func (s *e2eSched) Failure(framework.Driver, string) {}

func (s *e2eSched) Error(_ framework.Driver, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, "error event: "+msg)
}

func (s *e2eSched) driver() framework.Driver {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d
}

func (s *e2eSched) state(task string) agorav1.TaskState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.states[task]
}

func (s *e2eSched) subscriptions() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.subs...)
}

// offerOn returns a held offer on agent, if any.
func (s *e2eSched) offerOn(agent string) *agorav1.Offer {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.offers {
		if o.GetAgentId() == agent {
			return o
		}
	}
	return nil
}

// forget drops a held offer the test used.
func (s *e2eSched) forget(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.offers, id)
	}
}

func (s *e2eSched) takeOffers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.offers {
		ids = append(ids, id)
	}
	clear(s.offers)
	return ids
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
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

// running is a framework started with the SDK in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func runFramework(t *testing.T, masters []string, info *agorav1.FrameworkInfo, s *e2eSched, log *slog.Logger) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- framework.Run(ctx, framework.Config{Masters: masters, Info: info, Logger: log,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, s)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop ends the scheduler (not the framework) and waits for Run.
func (r *running) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // later stops return at once
}

func e2eLogger() *slog.Logger {
	if os.Getenv("AGORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// procRoot reports whether /proc can tell which processes run in a sandbox.
func procRoot() bool {
	_, err := os.Stat("/proc/self/cwd")
	return err == nil
}

// taskProcs lists the pids of processes whose working directory is the
// sandbox of task tid of framework fid (any when empty) under the cluster's
// agents. Empty where /proc is not available.
func taskProcs(clusterDir, fid, tid string) []string {
	agents, err := filepath.EvalSymlinks(filepath.Join(clusterDir, "agents"))
	if err != nil {
		return nil
	}
	links, _ := filepath.Glob("/proc/[0-9]*/cwd")
	var pids []string
	for _, l := range links {
		cwd, err := os.Readlink(l)
		if err != nil || !strings.HasPrefix(cwd, agents+string(filepath.Separator)) {
			continue
		}
		parts := strings.Split(cwd, string(filepath.Separator))
		if fid != "" && !slices.Contains(parts, fid) {
			continue
		}
		if tid != "" && parts[len(parts)-1] != tid {
			continue
		}
		pids = append(pids, filepath.Base(filepath.Dir(l)))
	}
	return pids
}

// taskIn reads a task from the current leader's replicated state.
func taskIn(c *devcluster.Cluster, fid, tid string) (*agorav1.Task, error) {
	l := c.Leader()
	if l == nil {
		return nil, errors.New("no leader")
	}
	tk, ok := l.State().Task(fid, tid)
	if !ok {
		return nil, fmt.Errorf("task %s of %s unknown to leader %s", tid, fid, l.ID())
	}
	return tk, nil
}

// wantRunningAcked waits until the framework saw task RUNNING and the
// leader's state records the RUNNING status as acknowledged.
func wantRunningAcked(t *testing.T, c *devcluster.Cluster, s *e2eSched, fid, tid string) {
	t.Helper()
	waitFor(t, 20*time.Second, s.name+": task "+tid+" RUNNING and acknowledged", func() error {
		if st := s.state(tid); st != agorav1.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("framework saw %v", st)
		}
		tk, err := taskIn(c, fid, tid)
		if err != nil {
			return err
		}
		if tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING || !tk.GetAcknowledged() {
			return fmt.Errorf("leader has %v acknowledged=%v", tk.GetState(), tk.GetAcknowledged())
		}
		return nil
	})
}

// TestEndToEnd drives 3 masters and 2 real agents through the SDK: offers,
// launches, a leader kill with an offer accepted across it, and the two
// outcomes of a framework's failover timeout.
func TestEndToEnd(t *testing.T) {
	log := e2eLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{
		Masters: 3, DataDir: t.TempDir(), Logger: log,
		MasterConfig: func(mc *master.Config) {
			// 1 s: the SDK gives a master up after 5 silent intervals and
			// passes it over for a while; at 200 ms a 1 s stall of the
			// race-instrumented test process (CI runs the chaos package
			// beside it) looked like a dead leader, the stream was dropped,
			// the framework was recorded disconnected and the offer held
			// across the failover was rescinded.
			mc.HeartbeatInterval = time.Second
			mc.OfferTimeout = time.Minute
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2"} {
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: id, Resources: "cpus:2;mem:2048;disk:1000"}); err != nil {
			t.Fatal(err)
		}
	}
	masters := c.Addrs()

	// --- Offers, launches, RUNNING on real agents. ---
	web := newE2ESched("web", true)
	webRun := runFramework(t, masters, &agorav1.FrameworkInfo{Name: "web", Roles: []string{"*"}, FailoverTimeoutSeconds: 3600}, web, log)
	waitFor(t, 20*time.Second, "offers from both agents", func() error {
		if web.offerOn("a1") == nil || web.offerOn("a2") == nil {
			return errors.New("not yet")
		}
		return nil
	})
	d := web.driver()
	fid := d.FrameworkID()
	o1, held := web.offerOn("a1"), web.offerOn("a2")
	web.forget(o1.GetId(), held.GetId())
	if err := d.Accept(ctx, []string{o1.GetId()}, []*agorav1.Operation{framework.Launch(e2eTask("web-1", "a1"), e2eTask("web-2", "a1"))}, nil); err != nil {
		t.Fatalf("accept on a1: %v", err)
	}
	wantRunningAcked(t, c, web, fid, "web-1")
	wantRunningAcked(t, c, web, fid, "web-2")

	// --- Kill the leader; the framework follows the new one. ---
	old := c.LeaderIndex()
	c.Kill(old)
	newLeader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader.ID() == fmt.Sprintf("m%d", old+1) {
		t.Fatal("killed master still leads")
	}
	waitFor(t, 20*time.Second, "framework resubscribed after the leader kill", func() error {
		subs := web.subscriptions()
		if len(subs) < 2 || !subs[len(subs)-1] {
			return fmt.Errorf("subscriptions %v", subs)
		}
		return nil
	})
	// The offer made by the old leader is accepted at the new one.
	if err := d.Accept(ctx, []string{held.GetId()}, []*agorav1.Operation{framework.Launch(e2eTask("web-3", "a2"))}, nil); err != nil {
		t.Fatalf("accepting offer %s (made before the kill) after it: %v", held.GetId(), err)
	}
	wantRunningAcked(t, c, web, fid, "web-3")
	for _, tid := range []string{"web-1", "web-2"} {
		if tk, err := taskIn(c, fid, tid); err != nil || tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
			t.Fatalf("after the failover task %s = %v (%v)", tid, tk.GetState(), err)
		}
	}
	for _, tid := range []string{"web-1", "web-2", "web-3"} {
		if procRoot() && len(taskProcs(c.Dir(), fid, tid)) == 0 {
			t.Fatalf("no process of RUNNING task %s in an agent sandbox", tid)
		}
	}
	// Updates keep flowing: kill a task, see KILLED, acknowledged.
	if err := d.Kill(ctx, "web-1", "a1"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	// The master drops a terminal task once its last status is
	// acknowledged, so "gone" proves the acknowledgement.
	waitFor(t, 20*time.Second, "web-1 KILLED and acknowledged", func() error {
		if st := web.state("web-1"); st != agorav1.TaskState_TASK_STATE_KILLED {
			return fmt.Errorf("framework saw %v", st)
		}
		if tk, err := taskIn(c, fid, "web-1"); err == nil {
			return fmt.Errorf("leader still has web-1 %v acknowledged=%v", tk.GetState(), tk.GetAcknowledged())
		}
		if n := len(taskProcs(c.Dir(), fid, "web-1")); n != 0 {
			return fmt.Errorf("%d processes of web-1 still run", n)
		}
		return nil
	})
	// web is done taking offers: let the others have them.
	if err := d.Suppress(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := web.takeOffers(); len(ids) > 0 {
		if err := d.Decline(ctx, ids, nil); err != nil {
			t.Logf("declining held offers: %v", err) // some may have been used or rescinded
		}
	}

	// --- A framework that comes back within its failover timeout keeps its tasks. ---
	keep := newE2ESched("keep", false, "keep-1")
	keepInfo := &agorav1.FrameworkInfo{Name: "keep", Roles: []string{"*"}, FailoverTimeoutSeconds: 60}
	keepRun := runFramework(t, masters, keepInfo, keep, log)
	waitFor(t, 20*time.Second, "keep subscribed", func() error {
		if keep.driver() == nil {
			return errors.New("not yet")
		}
		return nil
	})
	keepID := keep.driver().FrameworkID()
	wantRunningAcked(t, c, keep, keepID, "keep-1")

	// --- One that stays away past its failover timeout is torn down. ---
	brief := newE2ESched("brief", false, "brief-1")
	briefRun := runFramework(t, masters, &agorav1.FrameworkInfo{Name: "brief", Roles: []string{"*"}, FailoverTimeoutSeconds: 1}, brief, log)
	waitFor(t, 20*time.Second, "brief subscribed", func() error {
		if brief.driver() == nil {
			return errors.New("not yet")
		}
		return nil
	})
	briefID := brief.driver().FrameworkID()
	wantRunningAcked(t, c, brief, briefID, "brief-1")

	keepRun.stop()
	briefRun.stop()
	frameworkState := func(id string) (agorav1.FrameworkState, error) {
		l := c.Leader()
		if l == nil {
			return 0, errors.New("no leader")
		}
		fw, ok := l.State().Framework(id)
		if !ok {
			return 0, fmt.Errorf("framework %s unknown", id)
		}
		return fw.GetState(), nil
	}
	waitFor(t, 20*time.Second, "keep disconnected", func() error {
		if st, err := frameworkState(keepID); err != nil || st != agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED {
			return fmt.Errorf("state %v (%v)", st, err)
		}
		return nil
	})
	waitFor(t, 20*time.Second, "brief torn down and its task killed", func() error {
		if st, err := frameworkState(briefID); err != nil || st != agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			return fmt.Errorf("framework state %v (%v)", st, err)
		}
		// KILLING until the agent reports KILLED; then dropped, since a
		// torn-down framework acknowledges nothing.
		if tk, err := taskIn(c, briefID, "brief-1"); err == nil {
			return fmt.Errorf("task brief-1 is %v kill_requested=%v", tk.GetState(), tk.GetKillRequested())
		}
		if n := len(taskProcs(c.Dir(), briefID, "brief-1")); n != 0 {
			return fmt.Errorf("%d processes of brief-1 still run", n)
		}
		return nil
	})

	// keep resubscribes with its id (a restarted scheduler): still
	// registered, its task still RUNNING, reported by reconciliation.
	keepInfo.Id = keepID
	keep2 := newE2ESched("keep", false)
	keep2Run := runFramework(t, masters, keepInfo, keep2, log)
	waitFor(t, 20*time.Second, "keep resubscribed with its task", func() error {
		if subs := keep2.subscriptions(); len(subs) == 0 || !subs[0] {
			return fmt.Errorf("subscriptions %v", subs)
		}
		if st := keep2.state("keep-1"); st != agorav1.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("reconciliation reported keep-1 as %v", st)
		}
		if st, err := frameworkState(keepID); err != nil || st != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
			return fmt.Errorf("framework state %v (%v)", st, err)
		}
		return nil
	})
	if tk, err := taskIn(c, keepID, "keep-1"); err != nil || tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("keep-1 after resubscribing: %v (%v)", tk.GetState(), err)
	}

	// --- Clean up: tear both down so no task process outlives the test. ---
	for _, f := range []struct {
		s  *e2eSched
		r  *running
		id string
	}{{web, webRun, fid}, {keep2, keep2Run, keepID}} {
		if err := f.s.driver().Teardown(ctx); err != nil {
			t.Fatalf("teardown %s: %v", f.s.name, err)
		}
		if err := <-f.r.done; !errors.Is(err, framework.ErrTornDown) {
			t.Fatalf("Run of %s after Teardown returned %v, want ErrTornDown", f.s.name, err)
		}
		f.r.done <- nil
	}
	waitFor(t, 20*time.Second, "every task gone", func() error {
		l := c.Leader()
		if l == nil {
			return errors.New("no leader")
		}
		for _, tk := range l.State().Tasks() {
			return fmt.Errorf("task %s is %v", tk.GetId(), tk.GetState())
		}
		if n := len(taskProcs(c.Dir(), "", "")); n != 0 {
			return fmt.Errorf("%d task processes still run", n)
		}
		return nil
	})
	for _, s := range []*e2eSched{web, keep, brief, keep2} {
		s.mu.Lock()
		errs := s.errs
		s.mu.Unlock()
		for _, e := range errs {
			t.Logf("%s: %s", s.name, e)
		}
	}
}
