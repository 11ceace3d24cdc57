package realservices

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

// deadline bounds every wait of the tier: generous, since real software
// starts slowly on a loaded 2-core machine.
const deadline = 120 * time.Second

// requireBinaries skips the test loudly unless every named binary is on PATH.
func requireBinaries(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("!!! real-services tier SKIPPED: %s is not on PATH (apt-get install nats-server redis-server)", n)
		}
	}
	if testing.Short() {
		t.Skip("!!! real-services tier SKIPPED: -short")
	}
}

var (
	buildOnce sync.Once
	agoraBin  string
	buildErr  error
)

// buildAgora builds the agora binary from the root module once per test
// binary run, so nats.go never enters it.
func buildAgora(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "agora-realsvc-bin-")
		if err != nil {
			buildErr = err
			return
		}
		agoraBin = filepath.Join(dir, "agora")
		cmd := exec.Command("go", "build", "-o", agoraBin, "./cmd/agora")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build agora: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agoraBin
}

// cluster is 3 masters and real agents in the test's process.
type cluster struct {
	t    *testing.T
	c    *devcluster.Cluster
	cl   *client.Client
	bin  string
	addr string
	fids []string // frameworks whose task processes the cleanup kills
}

func startCluster(t *testing.T, agents int) *cluster {
	t.Helper()
	bin := buildAgora(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("AGORA_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{t: t, c: c, bin: bin, addr: strings.Join(c.Addrs(), ","), cl: client.New(strings.Join(c.Addrs(), ","))}
	t.Cleanup(func() {
		c.Stop()
		cl.killTasks()
	})
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < agents; i++ {
		base, err := devcluster.FreeTCPPorts(40)
		if err != nil {
			t.Fatal(err)
		}
		res := fmt.Sprintf("cpus:4;mem:4096;disk:8192;ports:[%d-%d]", base, base+39)
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: fmt.Sprintf("a%d", i+1), Resources: res}); err != nil {
			t.Fatal(err)
		}
	}
	cl.waitAgents(agents)
	return cl
}

func (c *cluster) waitAgents(n int) {
	c.t.Helper()
	poll(c.t, fmt.Sprintf("%d agents active", n), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := c.cl.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
		if err != nil {
			return false, err.Error()
		}
		active := 0
		for _, a := range res.Msg.GetAgents() {
			if a.GetAgent().GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE {
				active++
			}
		}
		return active == n, fmt.Sprintf("%d active", active)
	})
}

// killTasks kills the task processes of the test's services (agents leave
// them running when they stop): each task's whole process group.
func (c *cluster) killTasks() {
	for _, fid := range c.fids {
		for _, pid := range devcluster.PIDsWithEnv("AGORA_FRAMEWORK_ID=" + fid) {
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// agora runs the agora CLI against the cluster and returns its output.
func (c *cluster) agora(args ...string) string {
	c.t.Helper()
	full := append([]string{args[0], args[1], "--addr", c.addr}, args[2:]...)
	out, err := exec.Command(c.bin, full...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("agora %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var runOutput = regexp.MustCompile(`running as framework (\S+)`)

// run deploys a spec file with `agora service run` and records its framework.
func (c *cluster) run(specFile string) {
	c.t.Helper()
	out := c.agora("service", "run", specFile)
	m := runOutput.FindStringSubmatch(out)
	if m == nil {
		c.t.Fatalf("agora service run %s: no framework id in %q", specFile, out)
	}
	c.fids = append(c.fids, m[1])
}

func (c *cluster) status(name string) (service.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.cl.Operator.GetService(ctx, connect.NewRequest(&agorav1.GetServiceRequest{Name: name}))
	if err != nil {
		return service.Status{}, err
	}
	var st service.Status
	if err := json.Unmarshal(res.Msg.GetService().GetStatus(), &st); err != nil {
		return service.Status{}, err
	}
	return st, nil
}

// waitComplete waits for the plan to be COMPLETE with n ready, running pods.
func (c *cluster) waitComplete(name string, n int) service.Status {
	c.t.Helper()
	var st service.Status
	poll(c.t, fmt.Sprintf("%s complete with %d ready pods", name, n), func() (bool, string) {
		var err error
		st, err = c.status(name)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, p := range st.Pods {
			if p.Ready && p.State == "RUNNING" {
				ready++
			}
		}
		b, _ := json.Marshal(st)
		return st.Plan.State == service.PlanComplete && ready == n && len(st.Pods) == n, string(b)
	})
	return st
}

// taskSoftware returns the pids of a task's software: the members of its
// process group but the agent's wrapper, which leads the group. The
// software's own environment cannot find it: Redis, for one, writes its
// process title over it.
func taskSoftware(taskID string) []int {
	var out []int
	for _, wrapper := range devcluster.PIDsWithEnv("AGORA_TASK_ID=" + taskID) {
		pgid, err := syscall.Getpgid(wrapper)
		if err != nil || pgid != wrapper {
			continue
		}
		for _, pid := range allPids() {
			if g, err := syscall.Getpgid(pid); err == nil && g == pgid && pid != pgid {
				out = append(out, pid)
			}
		}
	}
	return out
}

// killTask SIGKILLs a task's software, as a crash would; the agent's
// wrapper sees it die.
func killTask(t *testing.T, taskID string) []int {
	t.Helper()
	pids := taskSoftware(taskID)
	if len(pids) == 0 {
		t.Fatalf("no process for task %s", taskID)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatal(err)
		}
	}
	return pids
}

// alive reports whether pid exists (a zombie counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(rest, "Z")
}

func allPids() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		if pid, err := strconv.Atoi(ent.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// poll calls cond until it holds, failing the test at the deadline with
// cond's last word.
func poll(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(deadline)
	last := ""
	for time.Now().Before(end) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(100 * time.Millisecond) // a poll interval, not synchronisation
	}
	t.Fatalf("%s: not within %s: %s", what, deadline, last)
}

// specPath is an example spec's path, from this module's directory.
func specPath(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "examples", "services", name))
	return p
}
