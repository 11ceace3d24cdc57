package ui_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/examples/batch"
	"github.com/agora-sched/agora/examples/execute"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// e2eDeadline bounds the whole browser test.
const e2eDeadline = 90 * time.Second

// findChromium returns a Chromium or Chrome binary, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactsDir is where the screenshots go: $AGORA_ARTIFACTS/ui-e2e when
// set (CI keeps it), else the test's temp dir.
func artifactsDir(t *testing.T) string {
	dir := t.TempDir()
	if a := os.Getenv("AGORA_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "ui-e2e")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestUIInChromium drives the web UI of a live in-process cluster (3
// masters, 3 agents, one drained; a service of two pods; two tasks of a
// detached `agora run` framework, now in failover) in headless Chromium,
// checks what each page shows and saves a screenshot of each.
func TestUIInChromium(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("!!! SKIPPED LOUDLY: no chromium on PATH, so the web UI's browser test did not run (apt-get install chromium; .ci/run installs it)")
	}
	if testing.Short() {
		t.Skip("end-to-end: runs a cluster and a browser")
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eDeadline)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("AGORA_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	var fids []string
	t.Cleanup(func() {
		c.DecommissionAgents() // kills the tasks
		c.Stop()
		for _, fid := range fids { // a backstop: no task process outlives the test
			for _, pid := range devcluster.PIDsWithEnv("AGORA_FRAMEWORK_ID=" + fid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		res := "cpus:2;mem:2048;disk:4096"
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: fmt.Sprintf("a%d", i), Resources: res,
			Attributes: map[string]string{"rack": fmt.Sprintf("r%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	cl := client.New(strings.Join(c.Addrs(), ","))
	poll(ctx, t, "3 agents active", func() (bool, string) {
		r, err := cl.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, a := range r.Msg.GetAgents() {
			if a.GetAgent().GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE {
				n++
			}
		}
		return n == 3, fmt.Sprintf("%d active", n)
	})
	// a3 is drained before anything runs: it stays DRAINED.
	write(ctx, t, "drain a3", func() error {
		_, err := cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "a3"}))
		return err
	})
	// Two tasks of a framework that then goes away (in failover for 1h).
	if err := execute.Run(ctx, execute.Options{Masters: c.Addrs(), Name: "hello", Cmd: "echo hello-from-run; exec sleep 600",
		Instances: 2, FailoverTimeout: time.Hour, Detach: true, Logger: logger}); err != nil {
		t.Fatal(err)
	}
	fw := frameworkNamed(ctx, t, cl, "hello")
	fids = append(fids, fw.GetId())
	spec := `{"name":"web","role":"svc","pods":[{"name":"app","count":2,"resources":{"cpus":0.1,"mem":32},
		"command":"echo hello-from-$POD_NAME; exec sleep 600"}]}`
	var svcID string
	write(ctx, t, "run service web", func() error {
		res, err := cl.Operator.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: []byte(spec)}))
		if connect.CodeOf(err) == connect.CodeAlreadyExists { // an earlier attempt was applied
			got, gerr := cl.Operator.GetService(ctx, connect.NewRequest(&agorav1.GetServiceRequest{Name: "web"}))
			if gerr != nil {
				return gerr
			}
			svcID = got.Msg.GetService().GetFrameworkId()
			return nil
		}
		if err == nil {
			svcID = res.Msg.GetFrameworkId()
		}
		return err
	})
	fids = append(fids, svcID)

	// A batch job on slack: role batch below svc's priority and capped at
	// 90%, so its units run as revocable tasks. The units never report
	// (they sleep); the job is stopped with the test.
	write(ctx, t, "set roles svc and batch", func() error {
		if _, err := cl.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "svc", Weight: 1, Priority: 10}})); err != nil {
			return err
		}
		_, err := cl.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "batch", Weight: 1, Priority: 0, MaxUtilization: 0.9}}))
		return err
	})
	job, err := batch.New(batch.Config{Masters: c.Addrs(), Name: "wordcount", Role: "batch", Revocable: true, Units: 3, Lines: 10,
		CPUs: 0.1, Mem: 16, Logger: logger,
		Command: func(int, int, string, time.Duration) string { return "echo unit-started; exec sleep 600" }})
	if err != nil {
		t.Fatal(err)
	}
	jctx, jcancel := context.WithCancel(ctx)
	jobDone := make(chan struct{})
	go func() {
		defer close(jobDone)
		_, _ = job.Run(jctx)
	}()
	t.Cleanup(func() { jcancel(); <-jobDone })
	poll(ctx, t, "the batch job runs 3 units", func() (bool, string) {
		p := job.Progress()
		return p.Running == 3, fmt.Sprintf("%+v", p)
	})
	batchFw := frameworkNamed(ctx, t, cl, "wordcount")
	fids = append(fids, batchFw.GetId())

	// The browser.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.WindowSize(1366, 900),
		chromedp.UserDataDir(t.TempDir()))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// Pages are read from the current leader (a loaded machine may see an
	// election); the follower check at the end names its master.
	b := &browser{t: t, ctx: bctx, dir: artifactsDir(t), base: func() string {
		if l := c.Leader(); l != nil {
			return l.HTTPURL()
		}
		return leader.HTTPURL()
	}}
	t.Logf("screenshots in %s", b.dir)

	// Services first: the page follows the deployment live, without a
	// reload, until both pods are ready.
	b.open("/ui/services/web")
	b.waitText("#ready", "2 / 2")
	b.waitText("#pods", "web-app-1")
	b.shot("service")

	b.open("/ui/")
	b.waitText("#banner", "leader")
	b.waitText("#count-agents", "3")
	b.waitText("#masters", "leader")
	b.waitText("#utilization", "cpus")
	// The bars are drawn: the cpus bar's used part has a width.
	w, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.querySelector("#utilization rect.used").getBoundingClientRect().width`))
	if err != nil || w <= 0 {
		t.Errorf("utilization bar not drawn: width %v, %v", w, err)
	}
	b.waitText("#role-shares", "svc")
	b.waitText("#count-services", "1")
	b.shot("overview")

	b.open("/ui/agents")
	b.waitText(`tr[data-id="a3"] .state`, "DRAINED")
	b.waitText(`tr[data-id="a1"]`, "rack=r1")
	b.shot("agents")

	b.open("/ui/frameworks")
	b.waitText(fmt.Sprintf(`tr[data-id=%q] .state`, fw.GetId()), "DISCONNECTED")
	b.waitText(fmt.Sprintf(`tr[data-id=%q] .state`, svcID), "CONNECTED")
	b.open("/ui/frameworks/" + fw.GetId())
	b.waitText("#failover-left", "m")
	b.shot("framework")

	b.open("/ui/tasks?framework=" + fw.GetId())
	b.waitText(".tasks", "RUNNING")
	b.shot("tasks")
	// The batch job's units: running, revocable, on the batch role.
	b.open("/ui/tasks?framework=" + batchFw.GetId())
	b.waitText(".tasks", "RUNNING")
	b.waitText(".tasks", "batch")
	b.waitText(".tasks", "yes")
	b.shot("batch-tasks")
	task := firstTask(ctx, t, cl, fw.GetId())
	b.open("/ui/tasks/" + fw.GetId() + "/" + task.GetId())
	b.waitText("#stdout", "hello-from-run")
	b.shot("task")

	b.open("/ui/frameworks/" + svcID + "/explain")
	b.waitText("#explain-summary", "round at index")
	b.shot("explain")

	// Live refresh: a role set while the roles page is open appears on it
	// without a reload (the marker set on the page survives).
	b.open("/ui/roles")
	b.waitText(`tr[data-id="svc"]`, "svc")
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.agoraMarker = 7`)); err != nil {
		t.Fatal(err)
	}
	write(ctx, t, "set role gold", func() error {
		_, err := cl.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "gold", Weight: 3, Priority: 5}}))
		return err
	})
	b.waitText(`tr[data-id="gold"]`, "gold")
	if m, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.agoraMarker || 0`)); err != nil || m != 7 {
		t.Errorf("the roles page was reloaded, not refreshed in place (marker %d, %v)", m, err)
	}
	b.waitText("#live", "live")
	b.shot("roles")
	b.open("/ui/reservations")
	b.waitText("#reservations", "svc")
	b.shot("reservations")
	b.open("/ui/offers")
	b.waitText("#offers", "")
	b.shot("offers")

	b.open("/ui/agents/nope")
	b.waitText("#error-message", `agent "nope" does not exist`)
	b.shot("404")

	// A follower labels its view and links to the leader.
	leader = c.Leader()
	for _, m := range c.Masters() {
		if m.ID() != leader.ID() {
			b.base = func() string { return m.HTTPURL() }
			break
		}
	}
	b.open("/ui/")
	b.waitText("#banner", "follower of "+leader.ID())
	b.shot("follower")
}

func frameworkNamed(ctx context.Context, t *testing.T, cl *client.Client, name string) *agorav1.Framework {
	t.Helper()
	r, err := cl.Operator.ListFrameworks(ctx, connect.NewRequest(&agorav1.ListFrameworksRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Msg.GetFrameworks() {
		if f.GetInfo().GetName() == name {
			return f
		}
	}
	t.Fatalf("no framework named %s", name)
	return nil
}

func firstTask(ctx context.Context, t *testing.T, cl *client.Client, fid string) *agorav1.Task {
	t.Helper()
	r, err := cl.Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{FrameworkId: fid}))
	if err != nil || len(r.Msg.GetTasks()) == 0 {
		t.Fatalf("tasks of %s: %v", fid, err)
	}
	return r.Msg.GetTasks()[0]
}

// write runs an idempotent write until it succeeds: on a loaded machine
// an attempt may pass the client's deadline and be refused as
// "may or may not have been applied" (Unavailable and DeadlineExceeded
// are retried; any other error fails the test).
func write(ctx context.Context, t *testing.T, what string, fn func() error) {
	t.Helper()
	poll(ctx, t, what, func() (bool, string) {
		err := fn()
		switch connect.CodeOf(err) {
		case connect.CodeUnavailable, connect.CodeDeadlineExceeded:
			return false, err.Error()
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return true, ""
	})
}

// poll checks cond on a ticker until it holds or ctx ends.
func poll(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not in time: %s", what, last)
		case <-tick.C:
		}
	}
}

// browser is one tab on the UI of the master at base.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	base func() string
}

func (b *browser) open(path string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(b.base()+path)); err != nil {
		b.t.Fatalf("open %s: %v", path, err)
	}
}

// waitText waits until the element sel exists and its text contains
// want, polling the live page (which refreshes itself) without reloading.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	expr := fmt.Sprintf(`(function(){var e=document.querySelector(%q);return e?e.innerText:"\u0000missing";})()`, sel)
	poll(b.ctx, b.t, fmt.Sprintf("%s shows %q", sel, want), func() (bool, string) {
		got, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			return false, err.Error()
		}
		return !strings.HasPrefix(got, "\u0000") && strings.Contains(got, want), fmt.Sprintf("it shows %q", got)
	})
}

func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG; below, JPEG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
