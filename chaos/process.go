package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/freeport"
)

// ProcessOptions configure a process-tier cluster.
type ProcessOptions struct {
	// Binary is the agora binary to run (required).
	Binary string
	// Dir holds data directories (m0, a0, ...) and logs (m0.log, ...).
	Dir string
	// Masters (3 or 5) and Agents (default 2).
	Masters, Agents int
	// Net is the third octet of the 127.0.N.x addresses nodes bind (masters
	// .10+i, agents .50+i); 0 picks one from the process id so parallel runs
	// do not collide.
	Net int
	// AgentResources is each agent's --resources (default
	// "cpus:4;mem:4096;disk:8192" plus a range of agentPorts ports per
	// agent, free on every address and held with package freeport: the kv
	// service's pods listen on them on all addresses, so they must not
	// collide with another run's).
	AgentResources string
	// ExtraMasterArgs are appended to every master's command line.
	ExtraMasterArgs []string
	// Secure turns on TLS, a gossip key, authentication, ACLs and audit
	// logs, with files made under Dir/secure (see secure.go).
	Secure bool
	// SimAgents, when positive, adds one more process, `agora agent
	// --simulate SimAgents` (package simagent), registering that many
	// simulated agents (ids SimAgentPrefix+i) with the masters; its log is
	// Dir/sim.log. Not with Secure (the simulator speaks no TLS yet).
	SimAgents int
	// SimTaskDuration is each simulated task's run time before FINISHED
	// (default 10s).
	SimTaskDuration time.Duration
}

// SimAgentPrefix starts the id of every simulated agent of a process-tier
// cluster.
const SimAgentPrefix = "sim-"

// simAgentResources is each simulated agent's --resources. No ports, so
// the kv service's pods (which need a port and must really run) are never
// placed on a simulated agent. 512 MiB of memory: room for the mixed
// frameworks' tasks, reservations and volumes and for two batch tasks, but
// never for a prod task (prodShapes, 768 MiB and up), so prod still has to
// preempt batch tasks on the real agents. With more, prod always found room
// on some simulated agent whose batch tasks had just FINISHED (simulated
// tasks end after SimTaskDuration) and the preemption checker saw no
// decision at all.
const simAgentResources = "cpus:4;mem:512;disk:8192"

// proc is one node of the process tier.
type proc struct {
	name, logPath string
	args          []string
	cmd           *exec.Cmd
	done          chan struct{}
}

type processCluster struct {
	o       ProcessOptions
	creds   *credentials // nil unless Secure
	sec     *secureSetup // nil unless Secure
	joins   []string     // the masters' gossip addresses
	mu      sync.Mutex
	masters []*proc
	agents  []*proc
	sim     *proc // nil unless SimAgents > 0
	urls    []string
}

// NewProcessCluster lays out a cluster of separate agora processes on
// 127.0.N.x loopback addresses with free ports, each with its own data
// directory and log file under o.Dir. Nothing runs until StartMaster and
// StartAgent.
func NewProcessCluster(o ProcessOptions) (Cluster, error) {
	if o.Binary == "" {
		return nil, errors.New("chaos: process tier needs the agora binary")
	}
	if o.Masters <= 0 {
		o.Masters = 3
	}
	if o.Agents <= 0 {
		o.Agents = 2
	}
	if o.Net <= 0 {
		o.Net = os.Getpid()%250 + 1
	}
	if o.SimAgents > 0 && o.Secure {
		return nil, errors.New("chaos: simulated agents do not support --secure (the simulator speaks no TLS yet)")
	}
	if o.SimTaskDuration <= 0 {
		o.SimTaskDuration = 10 * time.Second
	}
	// Absolute paths: tasks run in their sandboxes, and Close finds them by
	// the sandbox path in their environment.
	var err error
	if o.Binary, err = filepath.Abs(o.Binary); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	c := &processCluster{o: o}
	type addrs struct{ http, raft, gossip string }
	var ms []addrs
	var joins []string
	for i := 0; i < o.Masters; i++ {
		ip := fmt.Sprintf("127.0.%d.%d", o.Net, 10+i)
		var a addrs
		for _, p := range []*string{&a.http, &a.raft, &a.gossip} {
			port, err := freePort(ip)
			if err != nil {
				return nil, err
			}
			*p = net.JoinHostPort(ip, strconv.Itoa(port))
		}
		ms = append(ms, a)
		joins = append(joins, a.gossip)
		c.urls = append(c.urls, "http://"+a.http)
	}
	var sec *secureSetup
	if o.Secure {
		if sec, err = newSecureSetup(filepath.Join(o.Dir, "secure"), o.Masters, o.Agents); err != nil {
			return nil, err
		}
		c.creds, c.sec = sec.client, sec
		for i := range c.urls {
			c.urls[i] = "https://" + strings.TrimPrefix(c.urls[i], "http://")
		}
	}
	c.joins = joins
	for i, a := range ms {
		name := fmt.Sprintf("m%d", i)
		args := []string{"master", "--id", name, "--data-dir", filepath.Join(o.Dir, name),
			"--http", a.http, "--raft", a.raft, "--gossip", a.gossip, "--join", strings.Join(joins, ","),
			"--bootstrap-expect", strconv.Itoa(o.Masters), "--gossip-profile", "local", "--raft-profile", "fast",
			"--autopilot-stabilization", "2s", "--autopilot-interval", "1s"}
		args = append(args, sec.masterArgs(i)...)
		args = append(args, o.ExtraMasterArgs...)
		c.masters = append(c.masters, &proc{name: name, args: args, logPath: filepath.Join(o.Dir, name+".log")})
	}
	for i := 0; i < o.Agents; i++ {
		ip := fmt.Sprintf("127.0.%d.%d", o.Net, 50+i)
		gp, err := freePort(ip)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("a%d", i)
		res := o.AgentResources
		if res == "" {
			base, err := freeport.Block("", agentPortOffsets, false)
			if err != nil {
				return nil, fmt.Errorf("chaos: ports for agent %d: %w", i, err)
			}
			res = fmt.Sprintf("cpus:4;mem:4096;disk:8192;ports:[%d-%d]", base, base+agentPorts-1)
		}
		args := []string{"agent", "--id", name, "--data-dir", filepath.Join(o.Dir, name),
			"--gossip", net.JoinHostPort(ip, strconv.Itoa(gp)), "--join", strings.Join(joins, ","),
			"--resources", res, "--gossip-profile", "local"}
		args = append(args, sec.agentArgs(i)...)
		c.agents = append(c.agents, &proc{name: name, args: args, logPath: filepath.Join(o.Dir, name+".log")})
	}
	if o.SimAgents > 0 {
		// No --decommission: the simulator is stopped only after the
		// masters (Close), and its agents are never drained mid-run.
		args := []string{"agent", "--simulate", strconv.Itoa(o.SimAgents), "--id", SimAgentPrefix,
			"--masters", strings.Join(c.urls, ","), "--resources", simAgentResources,
			"--simulate-task-duration", o.SimTaskDuration.String(), "--log-level", "info"}
		c.sim = &proc{name: "sim", args: args, logPath: filepath.Join(o.Dir, "sim.log")}
	}
	return c, nil
}

// SimAgents is the number of simulated agents (0 when none).
func (c *processCluster) SimAgents() int {
	if c.sim == nil {
		return 0
	}
	return c.o.SimAgents
}

// StartSim starts the simulated agents' process, if there is one and it
// is not running.
func (c *processCluster) StartSim(context.Context) error {
	if c.sim == nil {
		return nil
	}
	return c.start(c.sim)
}

// agentPorts is the size of each process-tier agent's port range.
const agentPorts = 20

var agentPortOffsets = func() []int {
	offs := make([]int, agentPorts)
	for i := range offs {
		offs[i] = i
	}
	return offs
}()

// freePort returns a port on ip free for TCP and UDP (gossip uses both),
// held for this process (package freeport).
func freePort(ip string) (int, error) { return freeport.TCPUDP(ip) }

func (c *processCluster) Tier() string          { return "process" }
func (c *processCluster) Masters() int          { return len(c.masters) }
func (c *processCluster) Agents() int           { return len(c.agents) }
func (c *processCluster) MasterID(i int) string { return c.masters[i].name }
func (c *processCluster) MasterURLs() []string  { return append([]string(nil), c.urls...) }
func (c *processCluster) MasterDataDir(i int) string {
	return filepath.Join(c.o.Dir, c.masters[i].name)
}
func (c *processCluster) TaskCommand(secs int) string                { return fmt.Sprintf("sleep %d", secs) }
func (c *processCluster) AgoraPath() string                          { return c.o.Binary }
func (c *processCluster) AgentAddr(hostport string) string           { return hostport }
func (c *processCluster) Isolate(int, bool) error                    { return ErrUnsupported }
func (c *processCluster) Heal() error                                { return nil }
func (c *processCluster) StartMaster(_ context.Context, i int) error { return c.start(c.masters[i]) }
func (c *processCluster) StartAgent(_ context.Context, i int) error  { return c.start(c.agents[i]) }
func (c *processCluster) KillMaster(i int) error {
	return c.signal(c.masters[i], syscall.SIGKILL, true)
}
func (c *processCluster) KillAgent(i int) error { return c.signal(c.agents[i], syscall.SIGKILL, true) }
func (c *processCluster) PauseMaster(i int) error {
	return c.signal(c.masters[i], syscall.SIGSTOP, false)
}
func (c *processCluster) ResumeMaster(i int) error {
	return c.signal(c.masters[i], syscall.SIGCONT, false)
}

func (c *processCluster) StopMaster(i int) error {
	p := c.masters[i]
	if err := c.signal(p, syscall.SIGTERM, false); err != nil {
		return err
	}
	c.mu.Lock()
	done := p.done
	c.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		c.quit(p)
		return fmt.Errorf("%w: %s did not exit within %s; killed (goroutine dump in its log)", ErrSlowStop, p.name, stopTimeout)
	}
}

func (c *processCluster) WipeMaster(i int) error {
	c.mu.Lock()
	running := c.masters[i].cmd != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("chaos: wipe %s: still running", c.masters[i].name)
	}
	return os.RemoveAll(c.MasterDataDir(i))
}

func (c *processCluster) start(p *proc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	fmt.Fprintf(logf, "=== chaos: starting %s at %s: %s\n", p.name, time.Now().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	cmd := exec.Command(c.o.Binary, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group (a Ctrl-C of the driver does not reach the nodes)
	// and death with the driver.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		c.mu.Lock()
		if p.cmd == cmd {
			p.cmd = nil
		}
		c.mu.Unlock()
		close(done)
	}()
	return nil
}

// signal sends sig to p; with wait it waits for p to exit.
func (c *processCluster) signal(p *proc, sig syscall.Signal, wait bool) error {
	c.mu.Lock()
	cmd, done := p.cmd, p.done
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: signal %s: %w", p.name, err)
	}
	if sig == syscall.SIGKILL {
		// A stopped process dies of SIGKILL too; SIGCONT is harmless.
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	if wait {
		<-done
	}
	return nil
}

// quit sends SIGQUIT (the Go runtime writes every goroutine's stack to the
// node's log and exits) to a node that ignored SIGTERM, then SIGKILL if it
// still runs 3 s later.
func (c *processCluster) quit(p *proc) {
	_ = c.signal(p, syscall.SIGQUIT, false)
	c.mu.Lock()
	done := p.done
	c.mu.Unlock()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = c.signal(p, syscall.SIGKILL, true)
	}
}

// Close stops the masters first (SIGTERM, all at once) and the agents (and
// the simulated agents' process) only once the masters are down: a leader still running while agents die would
// mark them unreachable and commit LOST statuses no framework is left to
// hear.
func (c *processCluster) Close() error {
	for _, p := range c.masters {
		_ = c.signal(p, syscall.SIGCONT, false)
		_ = c.signal(p, syscall.SIGTERM, false)
	}
	var errs []error
	deadline := time.Now().Add(stopTimeout) // one grace period for all: they got SIGTERM together
	for _, p := range c.masters {
		c.mu.Lock()
		done := p.done
		running := p.cmd != nil
		c.mu.Unlock()
		if !running {
			continue
		}
		select {
		case <-done:
		case <-time.After(time.Until(deadline)):
			c.quit(p)
			errs = append(errs, fmt.Errorf("%w: %s did not exit within %s; killed (goroutine dump in its log)", ErrSlowStop, p.name, stopTimeout))
		}
	}
	for _, p := range c.agents {
		_ = c.signal(p, syscall.SIGKILL, true)
	}
	if c.sim != nil {
		_ = c.signal(c.sim, syscall.SIGKILL, true)
	}
	if err := c.killTasks(); err != nil {
		errs = append(errs, err)
	}
	if err := devcluster.UnmountUnder(c.o.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killTasks SIGKILLs the task processes the agents left running (a task
// has its own process group and outlives its agent, which re-attaches to it
// after a restart): every process whose AGORA_SANDBOX is under this
// cluster's directory. It waits, up to stopTimeout, until none is left.
func (c *processCluster) killTasks() error {
	prefix := []byte("AGORA_SANDBOX=" + c.o.Dir + string(filepath.Separator))
	deadline := time.Now().Add(stopTimeout)
	for {
		pids := pidsWithEnvPrefix(prefix)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: task processes %v still run %s after SIGKILL", pids, stopTimeout)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval: the kernel reaps them
	}
}

// pidsWithEnvPrefix lists the live processes with an environment variable
// (KEY=VALUE) that starts with prefix. A zombie's environment reads empty.
func pidsWithEnvPrefix(prefix []byte) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, v := range bytes.Split(b, []byte{0}) {
			if bytes.HasPrefix(v, prefix) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
