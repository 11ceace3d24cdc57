package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

// The end-to-end test: 3 masters and 3 real agents in process, the
// service scheduler hosted by the leader, kvservice pods run by the agora
// binary the test builds.

const deadline = 90 * time.Second

type e2e struct {
	t   *testing.T
	c   *devcluster.Cluster
	cl  *client.Client
	bin string
	fid string
}

func buildAgora(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agora")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/agora-sched/agora/cmd/agora")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agora: %v\n%s", err, out)
	}
	return bin
}

func startE2E(t *testing.T, agents int) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds the agora binary and runs a cluster")
	}
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
	e := &e2e{t: t, c: c, bin: bin, cl: client.New(strings.Join(c.Addrs(), ","))}
	t.Cleanup(func() {
		c.Stop()
		e.killTasks()
	})
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < agents; i++ {
		e.startAgent(ctx, fmt.Sprintf("a%d", i+1))
	}
	e.waitActive(agents)
	return e
}

// podsPerAgent is how many kvservice pods an agent has room for: its
// ports. With 6 pods on 3 agents, pod 0's agent holds at most 2 others, so
// another agent always holds a pod (the one the test decommissions).
const podsPerAgent = 3

// startAgent starts agent id with room for podsPerAgent pods.
func (e *e2e) startAgent(ctx context.Context, id string) {
	e.t.Helper()
	base, err := devcluster.FreeTCPPorts(podsPerAgent)
	if err != nil {
		e.t.Fatal(err)
	}
	res := fmt.Sprintf("cpus:4;mem:4096;disk:8192;ports:[%d-%d]", base, base+podsPerAgent-1)
	if _, err := e.c.StartAgent(ctx, devcluster.AgentOptions{ID: id, Resources: res}); err != nil {
		e.t.Fatal(err)
	}
}

// waitActive waits for n ACTIVE agents.
func (e *e2e) waitActive(n int) {
	e.t.Helper()
	e.poll(fmt.Sprintf("%d agents active", n), func() (bool, string) {
		agents, err := e.agents()
		if err != nil {
			return false, err.Error()
		}
		active := 0
		for _, a := range agents {
			if a.GetAgent().GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE {
				active++
			}
		}
		return active == n, fmt.Sprintf("%d active", active)
	})
}

func (e *e2e) agents() ([]*agorav1.AgentView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.cl.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetAgents(), nil
}

func (e *e2e) reservations() (*agorav1.ListReservationsResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.cl.Operator.ListReservations(ctx, connect.NewRequest(&agorav1.ListReservationsRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// killTasks kills the test's task processes (agents leave them running).
func (e *e2e) killTasks() {
	if e.fid == "" {
		return
	}
	for _, pid := range devcluster.PIDsWithEnv("AGORA_FRAMEWORK_ID=" + e.fid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// poll calls cond until it holds, failing the test at the deadline with
// cond's last word.
func (e *e2e) poll(what string, cond func() (bool, string)) {
	e.t.Helper()
	end := time.Now().Add(deadline)
	last := ""
	for time.Now().Before(end) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(50 * time.Millisecond) // a poll interval, not synchronisation
	}
	e.t.Fatalf("%s: not within %s: %s", what, deadline, last)
}

func (e *e2e) status(name string) (service.Status, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.cl.Operator.GetService(ctx, connect.NewRequest(&agorav1.GetServiceRequest{Name: name}))
	if err != nil {
		return service.Status{}, 0, err
	}
	var st service.Status
	if err := json.Unmarshal(res.Msg.GetService().GetStatus(), &st); err != nil {
		return service.Status{}, 0, err
	}
	return st, res.Msg.GetService().GetVersion(), nil
}

// waitComplete waits for the plan to be COMPLETE with n ready pods.
func (e *e2e) waitComplete(name string, n int) service.Status {
	e.t.Helper()
	var st service.Status
	e.poll(fmt.Sprintf("%s complete with %d ready pods", name, n), func() (bool, string) {
		var err error
		st, _, err = e.status(name)
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

func kvSpec(bin string, count int, version string) []byte {
	return namedKVSpec("kvservice", bin, count, version)
}

func namedKVSpec(name, bin string, count int, version string) []byte {
	return []byte(fmt.Sprintf(`{
  "name": %q,
  "role": %q,
  "pods": [{
    "name": "kv",
    "count": %d,
    "resources": {"cpus": 0.1, "mem": 64, "disk": 256, "ports": ["http"]},
    "volume": {"size": 128, "path": "data"},
    "command": "export KV_DATA=\"${AGORA_VOLUME_PATH_DATA:-$KV_DATA}\"; exec %s kvservice",
    "env": {
      "KV_INDEX": "{{.Index}}",
      "KV_LISTEN": ":{{port \"http\"}}",
      "KV_DATA": "{{.Volume}}",
      "KV_PEERS": "{{peers \"http\"}}",
      "KV_VERSION": "%s"
    },
    "readiness": {"http": {"port": "http", "path": "/health"}, "interval_seconds": 0.1, "timeout_seconds": 1, "deadline_seconds": 60},
    "kill_grace_seconds": 2
  }]
}`, name, name, count, bin, version))
}

func httpDo(method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (e *e2e) put(addr, key, value string) {
	e.t.Helper()
	e.poll("put "+key, func() (bool, string) {
		code, body, err := httpDo(http.MethodPut, "http://"+addr+"/kv/"+key, value)
		if err != nil {
			return false, err.Error()
		}
		return code/100 == 2, fmt.Sprintf("%d %s", code, body)
	})
}

func (e *e2e) waitValue(addr, key, value string) {
	e.t.Helper()
	e.poll("get "+key+" from "+addr, func() (bool, string) {
		code, body, err := httpDo(http.MethodGet, "http://"+addr+"/kv/"+key, "")
		if err != nil {
			return false, err.Error()
		}
		return code == 200 && body == value, fmt.Sprintf("%d %q", code, body)
	})
}

func taskIDs(st service.Status) map[string]string {
	out := map[string]string{}
	for _, p := range st.Pods {
		out[p.Name] = p.TaskID
	}
	return out
}

func wantCode(t *testing.T, what string, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
}

func TestServiceEndToEnd(t *testing.T) {
	e := startE2E(t, 3)
	ctx := context.Background()
	op := e.cl.Operator

	// Bad input, before anything runs: no service is created.
	_, err := op.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: []byte(`{"name":"kvservice","role":"kvservice","pods":[{"name":"kv","count":-1}]}`)}))
	wantCode(t, "run of a bad spec", err, connect.CodeInvalidArgument)
	_, err = op.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: "nope", Count: 3}))
	wantCode(t, "scale of an unknown service", err, connect.CodeNotFound)
	if res, err := op.ListServices(ctx, connect.NewRequest(&agorav1.ListServicesRequest{})); err != nil || len(res.Msg.GetServices()) != 0 {
		t.Fatalf("services after bad input: %v %v", res, err)
	}

	// Deploy 3 pods.
	run, err := op.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: kvSpec(e.bin, 3, "1")}))
	if err != nil {
		t.Fatal(err)
	}
	e.fid = run.Msg.GetFrameworkId()
	_, err = op.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: kvSpec(e.bin, 3, "1")}))
	wantCode(t, "second run", err, connect.CodeAlreadyExists)
	st := e.waitComplete("kvservice", 3)
	primary := st.Pods[0].Address
	for i := 0; i < 10; i++ {
		e.put(primary, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}

	// Bad commands change nothing: the record's version does not move.
	_, v0, err := e.status("kvservice")
	if err != nil {
		t.Fatal(err)
	}
	_, err = op.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: "kvservice", Count: -1}))
	wantCode(t, "scale to -1", err, connect.CodeInvalidArgument)
	_, err = op.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: "kvservice", PodType: "nope", Count: 3}))
	wantCode(t, "scale of an unknown pod type", err, connect.CodeNotFound)
	_, err = op.ReplaceServicePod(ctx, connect.NewRequest(&agorav1.ReplaceServicePodRequest{Name: "kvservice", Pod: "kvservice-kv-1"}))
	wantCode(t, "replace on an active agent", err, connect.CodeFailedPrecondition)
	_, err = op.UpdateService(ctx, connect.NewRequest(&agorav1.UpdateServiceRequest{Name: "kvservice", Spec: []byte(`{"name":"kvservice"`)}))
	wantCode(t, "update with a bad spec", err, connect.CodeInvalidArgument)
	if _, v1, err := e.status("kvservice"); err != nil || v1 != v0 {
		t.Fatalf("record version moved on rejected commands: %d -> %d (%v)", v0, v1, err)
	}
	// The CLI: a one-line error and a non-zero exit; status --json's shape.
	addr := strings.Join(e.c.Addrs(), ",")
	out, err := exec.Command(e.bin, "service", "scale", "--addr", addr, "nope", "3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not_found") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("agora service scale nope 3: %v %q", err, out)
	}
	out, err = exec.Command(e.bin, "service", "status", "--addr", addr, "--json", "kvservice").Output()
	if err != nil {
		t.Fatalf("agora service status --json: %v", err)
	}
	var shape map[string]any
	if err := json.Unmarshal(out, &shape); err != nil {
		t.Fatal(err)
	}
	pods, _ := shape["pods"].([]any)
	plan, _ := shape["plan"].(map[string]any)
	if shape["name"] != "kvservice" || shape["role"] != "kvservice" || len(pods) != 3 || plan["state"] != "COMPLETE" {
		t.Fatalf("status --json = %s", out)
	}
	for _, k := range []string{"name", "index", "state", "agent_id", "task_id", "address", "volume_id", "ready"} {
		if _, ok := pods[0].(map[string]any)[k]; !ok {
			t.Fatalf("status --json pod has no %q: %s", k, out)
		}
	}

	// Scale to 5 with one command: the first 3 keep their tasks.
	before := taskIDs(st)
	out, err = exec.Command(e.bin, "service", "scale", "--addr", addr, "kvservice", "5").CombinedOutput()
	if err != nil {
		t.Fatalf("agora service scale kvservice 5: %v %s", err, out)
	}
	st = e.waitComplete("kvservice", 5)
	for name, id := range before {
		if taskIDs(st)[name] != id {
			t.Fatalf("scale moved %s: task %s -> %s", name, id, taskIDs(st)[name])
		}
	}
	e.waitValue(st.Pods[4].Address, "k9", "v9")

	// Kill a pod's task: relaunched in place, keys intact.
	victim := st.Pods[1]
	pids := devcluster.PIDsWithEnv("AGORA_TASK_ID=" + victim.TaskID)
	if len(pids) == 0 {
		t.Fatalf("no process for task %s", victim.TaskID)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	e.poll("pod 1 relaunched in place", func() (bool, string) {
		s, _, err := e.status("kvservice")
		if err != nil {
			return false, err.Error()
		}
		p := s.Pods[1]
		return p.TaskID != victim.TaskID && p.Ready && p.AgentID == victim.AgentID && p.Address == victim.Address && p.VolumeID == victim.VolumeID,
			fmt.Sprintf("%+v", p)
	})
	e.waitValue(victim.Address, "k3", "v3")

	// Kill the leader master during a scale: the scale completes.
	if _, err := op.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: "kvservice", Count: 6})); err != nil {
		t.Fatal(err)
	}
	old := e.c.LeaderIndex()
	if old < 0 {
		t.Fatal("no leader")
	}
	e.c.Kill(old)
	st = e.waitComplete("kvservice", 6)
	if i := e.c.LeaderIndex(); i == old || i < 0 {
		t.Fatalf("leader after the kill: %d (was %d)", i, old)
	}
	e.waitValue(st.Pods[5].Address, "k0", "v0")

	// Rolling update: every pod restarts with the new config, one at a
	// time, and the data stays.
	before = taskIDs(st)
	if _, err := op.UpdateService(ctx, connect.NewRequest(&agorav1.UpdateServiceRequest{Name: "kvservice", Spec: kvSpec(e.bin, 6, "2")})); err != nil {
		t.Fatal(err)
	}
	e.poll("rolling update done", func() (bool, string) {
		s, _, err := e.status("kvservice")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range s.Pods {
			if p.TaskID == before[p.Name] || !p.Ready {
				return false, fmt.Sprintf("%s: %s %s ready=%v (plan %s %s)", p.Name, p.TaskID, p.State, p.Ready, s.Plan.State, s.Plan.Step)
			}
		}
		return s.Plan.State == service.PlanComplete, s.Plan.Step
	})
	st, _, _ = e.status("kvservice")
	for i := 0; i < 10; i++ {
		e.waitValue(st.Pods[0].Address, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}

	// An agent goes away for good: its pods are replaced elsewhere.
	e.replaceOffGoneAgent(st)
}

// replaceOffGoneAgent decommissions an agent that hosts pods but not pod 0
// (the fixed primary) while a new agent joins, replaces its pods with the
// CLI, and checks that they moved with new volumes and reservations and
// caught up from the primary, that the other pods kept their tasks, and
// that the gone agent's reservations and volumes were dropped.
func (e *e2e) replaceOffGoneAgent(st service.Status) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	byAgent := map[string][]service.PodStatus{}
	for _, p := range st.Pods {
		byAgent[p.AgentID] = append(byAgent[p.AgentID], p)
	}
	victim := ""
	for id, pods := range byAgent {
		if id != st.Pods[0].AgentID && (victim == "" || len(pods) > len(byAgent[victim]) || (len(pods) == len(byAgent[victim]) && id < victim)) {
			victim = id
		}
	}
	if victim == "" {
		t.Fatalf("every pod is on pod 0's agent %s (room for %d per agent): %+v", st.Pods[0].AgentID, podsPerAgent, st.Pods)
	}
	moved := byAgent[victim]
	t.Logf("decommissioning agent %s with %d pods", victim, len(moved))
	res, err := e.reservations()
	if err != nil {
		t.Fatal(err)
	}
	var oldInstances []string
	for _, r := range res.GetReservations() {
		if r.GetAgentId() == victim {
			oldInstances = append(oldInstances, r.GetLabels()[service.LabelInstance])
		}
	}
	if len(oldInstances) != len(moved) {
		t.Fatalf("agent %s holds %d reservations for %d pods: %v", victim, len(oldInstances), len(moved), res.GetReservations())
	}

	// A new agent joins; the victim leaves for good: its tasks are killed
	// and the masters mark it GONE.
	e.startAgent(ctx, "a4")
	e.waitActive(len(e.c.Agents()))
	if err := e.c.DecommissionAgent(victim); err != nil {
		t.Fatalf("decommission %s: %v", victim, err)
	}
	e.poll("agent "+victim+" gone", func() (bool, string) {
		agents, err := e.agents()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range agents {
			if a.GetAgent().GetId() == victim {
				return a.GetAgent().GetState() == agorav1.AgentState_AGENT_STATE_GONE, a.GetAgent().GetState().String()
			}
		}
		return false, "not listed"
	})
	for _, p := range moved {
		if pids := devcluster.PIDsWithEnv("AGORA_TASK_ID=" + p.TaskID); len(pids) != 0 {
			t.Fatalf("decommissioned agent %s left task %s running: pids %v", victim, p.TaskID, pids)
		}
	}

	// Its reservations and volumes went with it: nothing is listed on it.
	res, err = e.reservations()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.GetReservations() {
		if r.GetAgentId() == victim {
			t.Fatalf("reservation %s is still on gone agent %s", r.GetId(), victim)
		}
	}
	for _, v := range res.GetVolumes() {
		if v.GetAgentId() == victim {
			t.Fatalf("volume %s is still on gone agent %s", v.GetId(), victim)
		}
	}
	agents, err := e.agents()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if a.GetAgent().GetId() == victim && (len(a.GetReserved()) != 0 || len(a.GetUsed()) != 0) {
			t.Fatalf("gone agent %s still counts reserved %v used %v", victim, a.GetReserved(), a.GetUsed())
		}
	}

	// Replace its pods with the CLI: each is placed afresh elsewhere.
	addr := strings.Join(e.c.Addrs(), ",")
	for _, p := range moved {
		out, err := exec.Command(e.bin, "service", "replace", "--addr", addr, "kvservice", p.Name).CombinedOutput()
		if err != nil {
			t.Fatalf("agora service replace kvservice %s: %v %s", p.Name, err, out)
		}
	}
	after := e.waitComplete("kvservice", len(st.Pods))
	was := map[string]service.PodStatus{}
	for _, p := range moved {
		was[p.Name] = p
	}
	res, err = e.reservations()
	if err != nil {
		t.Fatal(err)
	}
	reservedOn := map[string]string{} // instance -> agent
	for _, r := range res.GetReservations() {
		reservedOn[r.GetLabels()[service.LabelInstance]] = r.GetAgentId()
	}
	for _, p := range after.Pods {
		old, replaced := was[p.Name]
		if !replaced {
			if p.TaskID != taskIDs(st)[p.Name] {
				t.Fatalf("replace moved %s too: task %s -> %s", p.Name, taskIDs(st)[p.Name], p.TaskID)
			}
			continue
		}
		if p.AgentID == victim || p.VolumeID == old.VolumeID || p.TaskID == old.TaskID {
			t.Fatalf("replaced %s: %+v, was %+v", p.Name, p, old)
		}
		// The volume id is the placement's instance, which names its
		// reservation.
		if reservedOn[p.VolumeID] != p.AgentID {
			t.Fatalf("replaced %s on %s: no reservation of instance %s there (%v)", p.Name, p.AgentID, p.VolumeID, reservedOn)
		}
	}
	for _, inst := range oldInstances {
		if a, ok := reservedOn[inst]; ok {
			t.Fatalf("the old placement %s is still reserved on %s", inst, a)
		}
	}

	// The replaced pods caught up from the primary on their empty volumes
	// and follow new writes.
	addrs := map[string]string{}
	for _, p := range after.Pods {
		addrs[p.Name] = p.Address
	}
	for _, p := range moved {
		for i := 0; i < 10; i++ {
			e.waitValue(addrs[p.Name], fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
		}
	}
	e.put(after.Pods[0].Address, "k10", "v10")
	for _, p := range moved {
		e.waitValue(addrs[p.Name], "k10", "v10")
	}
}
