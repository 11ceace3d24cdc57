//go:build docker

package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/chaos"
	"github.com/agora-sched/agora/examples/kvservice"
	"github.com/agora-sched/agora/freeport"
)

// kvSpec is a 3-pod replicated key-value store, one pod per agent, each on
// a reservation and a persistent volume. The image is the agora binary, so
// a pod runs /agora kvservice.
const kvSpec = `{
  "name": "kv", "role": "kv",
  "pods": [{
    "name": "kv", "count": 3,
    "resources": {"cpus": 0.2, "mem": 64, "disk": 256, "ports": ["http"]},
    "volume": {"size": 128, "path": "data"},
    "command": "exec /agora kvservice",
    "env": {"KV_INDEX": "{{.Index}}", "KV_LISTEN": ":{{port \"http\"}}", "KV_DATA": "{{.Volume}}", "KV_PEERS": "{{peers \"http\"}}"},
    "readiness": {"http": {"port": "http", "path": "/health"}, "interval_seconds": 0.5, "timeout_seconds": 2, "deadline_seconds": 120},
    "placement": {"one_per": "agent"},
    "kill_grace_seconds": 2
  }]
}`

// composeCommand is docker-compose (v1) or the `docker compose` plugin.
func composeCommand() ([]string, error) {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, nil
	}
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}, nil
	}
	return nil, fmt.Errorf("neither docker-compose nor the docker compose plugin is installed")
}

func run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

type cluster struct {
	t   *testing.T
	r   runner
	bin string
}

// ip is a service's container address on the compose network.
func (c *cluster) ip(service string) string {
	c.t.Helper()
	id, err := c.r.container(service)
	if err != nil {
		c.t.Fatalf("container of %s: %v", service, err)
	}
	out, err := run(context.Background(), nil, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", id)
	if err != nil || strings.TrimSpace(out) == "" {
		c.t.Fatalf("address of %s: %v", service, err)
	}
	return strings.TrimSpace(out)
}

// agora runs the host's agora CLI.
func (c *cluster) agora(args ...string) (string, error) {
	return run(context.Background(), nil, c.bin, args...)
}

// eventually polls cond on a ticker until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		select {
		case <-deadline.C:
			t.Fatalf("%s: not true after %v (last: %s)", what, d, last)
		case <-tick.C:
		}
	}
}

type status struct {
	Leader *struct{ ID string } `json:"leader"`
	Agents int                  `json:"agents"`
}

type serviceStatus struct {
	Plan struct{ State string } `json:"plan"`
	Pods []struct {
		Index   int    `json:"index"`
		State   string `json:"state"`
		TaskID  string `json:"task_id"`
		Address string `json:"address"`
		Ready   bool   `json:"ready"`
	} `json:"pods"`
}

func TestComposeClusterSurvivesLeaderStop(t *testing.T) {
	ctx := context.Background()
	if err := chaos.DockerAvailable(ctx); err != nil {
		t.Skipf("!!! Docker tier SKIPPED: no Docker engine answers here (%v)", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "agora")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=compose-test", "-o", bin, "../cmd/agora")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	tag := fmt.Sprintf("agoratest%d%d", os.Getpid(), time.Now().UnixNano()%100000)
	image := "agora-compose-test:" + tag
	if _, err := run(ctx, []string{"IMAGE=" + image, "AGORA_BIN=" + bin}, "sh", "build-image.sh"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = run(context.Background(), nil, "docker", "rmi", "-f", image) })
	port, err := freeport.TCP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"AGORA_IMAGE=" + image, fmt.Sprintf("AGORA_PUBLISH=127.0.0.1:%d", port)}
	var r runner
	compose, err := composeCommand()
	if err == nil && os.Getenv("AGORA_COMPOSE") != "docker-run" {
		t.Logf("running docker-compose.yml with %s", strings.Join(compose, " "))
		r = &composeRunner{compose: compose, project: tag, env: env}
	} else {
		// Said loudly: the file is then run by our reading of it, not by compose.
		t.Logf("!!! no docker compose here (%v, AGORA_COMPOSE=%q): running docker-compose.yml's services with plain docker run", err, os.Getenv("AGORA_COMPOSE"))
		dr, err := newDockerRunner(tag, env)
		if err != nil {
			t.Fatal(err)
		}
		r = dr
	}
	c := &cluster{t: t, r: r, bin: bin}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container logs:\n%s", r.logs())
		}
		if err := r.down(); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	if err := r.up(); err != nil {
		t.Fatal(err)
	}

	masters := map[string]string{}
	var addrs []string
	for i := 1; i <= 3; i++ {
		svc := fmt.Sprintf("master%d", i)
		masters[fmt.Sprintf("m%d", i)] = svc
		addrs = append(addrs, "http://"+c.ip(svc)+":7100")
	}
	agentIPs := map[string]string{}
	for i := 1; i <= 3; i++ {
		svc := fmt.Sprintf("agent%d", i)
		agentIPs[svc] = c.ip(svc)
	}
	// The published port reaches master1 from the host, as the compose file's comment says.
	addrFlag := fmt.Sprintf("http://127.0.0.1:%d,%s", port, strings.Join(addrs, ","))

	var st status
	eventually(t, 90*time.Second, "a leader and 3 agents", func() (bool, string) {
		out, err := c.agora("status", "--json", "--timeout", "5s", "--addr", addrFlag)
		if err != nil {
			return false, err.Error()
		}
		st = status{}
		_ = json.Unmarshal([]byte(out), &st)
		return st.Leader != nil && st.Agents == 3, out
	})

	spec := filepath.Join(dir, "kv.json")
	if err := os.WriteFile(spec, []byte(kvSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.agora("service", "run", spec, "--addr", addrFlag); err != nil {
		t.Fatalf("agora service run: %v %s", err, out)
	}
	svcStatus := func(addr string) (serviceStatus, string, bool) {
		out, err := c.agora("service", "status", "kv", "--json", "--timeout", "5s", "--addr", addr)
		if err != nil {
			return serviceStatus{}, err.Error(), false
		}
		var s serviceStatus
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return serviceStatus{}, out, false
		}
		ready := 0
		for _, p := range s.Pods {
			if p.Ready && p.State == "RUNNING" {
				ready++
			}
		}
		return s, out, s.Plan.State == "COMPLETE" && ready == 3 && len(s.Pods) == 3
	}
	var before serviceStatus
	eventually(t, 2*time.Minute, "service kv COMPLETE with 3 ready pods", func() (bool, string) {
		s, out, ok := svcStatus(addrFlag)
		before = s
		return ok, out
	})

	// The pods' addresses name the agents' hostnames, which only the
	// compose network resolves; the host reaches the containers by address.
	hostAddr := func(a string) string {
		h, p, err := net.SplitHostPort(a)
		if err != nil || agentIPs[h] == "" {
			t.Fatalf("pod address %q is not on an agent of the compose file", a)
		}
		return net.JoinHostPort(agentIPs[h], p)
	}
	var primary string
	for _, p := range before.Pods {
		if p.Index == 0 {
			primary = hostAddr(p.Address)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	const keys = 20
	for i := range keys {
		k, v := fmt.Sprintf("key%02d", i), fmt.Sprintf("value%02d", i)
		eventually(t, 30*time.Second, "put "+k, func() (bool, string) {
			err := kvservice.Put(ctx, hc, primary, k, v)
			return err == nil, fmt.Sprint(err)
		})
	}

	// Stop the leader's container (SIGTERM, as `docker compose stop` does).
	oldLeader := st.Leader.ID
	svc, ok := masters[oldLeader]
	if !ok {
		t.Fatalf("leader %q is not a master of the compose file", oldLeader)
	}
	if err := r.stop(svc); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for id, s := range masters {
		if id != oldLeader {
			rest = append(rest, "http://"+c.ip(s)+":7100")
		}
	}
	restFlag := strings.Join(rest, ",")
	eventually(t, 60*time.Second, "a new leader among the other two masters", func() (bool, string) {
		out, err := c.agora("status", "--json", "--timeout", "5s", "--addr", restFlag)
		if err != nil {
			return false, err.Error()
		}
		var s status
		_ = json.Unmarshal([]byte(out), &s)
		return s.Leader != nil && s.Leader.ID != oldLeader && s.Agents == 3, out
	})

	// The service is still complete, with the same tasks: nothing was relaunched.
	var after serviceStatus
	eventually(t, 60*time.Second, "service kv still COMPLETE with 3 ready pods", func() (bool, string) {
		s, out, ok := svcStatus(restFlag)
		after = s
		return ok, out
	})
	tasks := map[int]string{}
	for _, p := range before.Pods {
		tasks[p.Index] = p.TaskID
	}
	for _, p := range after.Pods {
		if tasks[p.Index] != p.TaskID {
			t.Errorf("pod %d: task %s before the leader stopped, %s after: the pod was relaunched", p.Index, tasks[p.Index], p.TaskID)
		}
	}
	// Its data: every key reads back (a consistent read through the primary),
	// and it still takes writes.
	for i := range keys {
		k, want := fmt.Sprintf("key%02d", i), fmt.Sprintf("value%02d", i)
		v, found, err := kvservice.Get(ctx, hc, primary, k, true)
		if err != nil || !found || v != want {
			t.Errorf("get %s after the leader stopped: %q found=%v err=%v, want %q", k, v, found, err, want)
		}
	}
	if err := kvservice.Put(ctx, hc, primary, "after", "failover"); err != nil {
		t.Errorf("put after the leader stopped: %v", err)
	}
}
