package devcluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"

	"github.com/agora-sched/agora/agent"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/tlsconf"
)

// AgentOptions describes an agent of a dev cluster.
type AgentOptions struct {
	// ID is the agent id; its data dir is Dir()/agents/<ID>.
	ID string
	// Resources is a resources spec ("cpus:4;mem:4096;ports:[31000-31999]");
	// "" measures the machine.
	Resources string
	// Attributes label the agent (rack, zone).
	Attributes map[string]string
	// HTTPAddr, optional, is where the agent serves /health, /metrics and
	// /sandbox on its first start ("127.0.0.1:0" picks a port; see
	// Agent.HTTPAddr). "" picks a free loopback port. The address is kept
	// across restarts of the agent.
	HTTPAddr string
}

// devAgent is one agent of a cluster, running or killed.
type devAgent struct {
	opts       AgentOptions
	gossipAddr string // kept across restarts
	httpAddr   string // /health, /metrics, /sandbox; kept across restarts
	a          *agent.Agent
	cancel     context.CancelFunc
	done       chan struct{}
	err        error
	running    bool
}

// agentSet holds a cluster's agents.
type agentSet struct {
	mu     sync.Mutex
	agents map[string]*devAgent
}

// clusterAgents maps a *Cluster to its *agentSet.
var clusterAgents sync.Map

func (c *Cluster) agentSet() *agentSet {
	if s, ok := clusterAgents.Load(c); ok {
		return s.(*agentSet)
	}
	s, loaded := clusterAgents.LoadOrStore(c, &agentSet{agents: map[string]*devAgent{}})
	if !loaded {
		c.onStop(func() {
			c.stopAgents()
			clusterAgents.Delete(c)
		})
	}
	return s.(*agentSet)
}

// StartAgent starts an agent in this process on loopback, joined to the
// masters' gossip addresses, with the cluster's gossip profile. Its data
// dir (Dir()/agents/<id>) and gossip address are reused when an agent with
// that id ran before, so a restarted agent re-attaches to its tasks. ctx
// bounds startup only; the agent runs until KillAgent, StopAgent or Stop.
func (c *Cluster) StartAgent(ctx context.Context, o AgentOptions) (*agent.Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !agent.ValidID(o.ID) {
		return nil, fmt.Errorf("devcluster: invalid agent id %q", o.ID)
	}
	var res resources.Resources
	if o.Resources != "" {
		var err error
		if res, err = resources.Parse(o.Resources); err != nil {
			return nil, fmt.Errorf("devcluster: agent %s: resources: %w", o.ID, err)
		}
	}
	s := c.agentSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.agents[o.ID]
	if ok && d.running {
		return nil, fmt.Errorf("devcluster: agent %s is already running", o.ID)
	}
	if !ok {
		port, err := FreeGossipPort()
		if err != nil {
			return nil, err
		}
		hport, err := FreeTCPPort()
		if err != nil {
			return nil, err
		}
		d = &devAgent{gossipAddr: loopback(port), httpAddr: loopback(hport)}
		if o.HTTPAddr != "" {
			d.httpAddr = o.HTTPAddr
		}
		s.agents[o.ID] = d
	}
	d.opts = o
	cluster := ""
	if len(c.cfgs) > 0 {
		cluster = c.cfgs[0].Cluster
	}
	tlsBundle, err := c.bundle(tlsconf.RoleAgent, o.ID)
	if err != nil {
		return nil, err
	}
	a, err := agent.New(agent.Config{
		ID:            o.ID,
		DataDir:       filepath.Join(c.dir, "agents", o.ID),
		GossipAddr:    d.gossipAddr,
		HTTPAddr:      d.httpAddr,
		Join:          c.JoinAddrs(),
		Resources:     res,
		Attributes:    o.Attributes,
		GossipProfile: c.opts.GossipProfile,
		Cluster:       cluster,
		Version:       "dev",
		Logger:        c.opts.Logger,
		GossipKeyring: c.opts.GossipKeyring,
		TLS:           tlsBundle,
		Token:         c.agentToken(o.ID),
	})
	if err != nil {
		return nil, fmt.Errorf("devcluster: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d.a, d.cancel, d.done, d.err, d.running = a, cancel, make(chan struct{}), nil, true
	go func(d *devAgent, done chan struct{}) {
		err := a.Run(runCtx)
		s.mu.Lock()
		d.err = err
		s.mu.Unlock()
		if err != nil {
			c.opts.Logger.Error("dev agent stopped", "agent", o.ID, "err", err)
		}
		close(done)
	}(d, d.done)
	return a, nil
}

// KillAgent stops agent id abruptly, as SIGKILL would: no gossip leave, its
// tasks keep running.
func (c *Cluster) KillAgent(id string) error {
	d, err := c.takeRunning(id)
	if err != nil {
		return err
	}
	d.a.Kill()
	d.cancel()
	return nil
}

// takeRunning marks a running agent stopped and returns a copy of its
// handles, taken under the lock.
func (c *Cluster) takeRunning(id string) (devAgent, error) {
	s := c.agentSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.agents[id]
	if !ok || !d.running {
		return devAgent{}, fmt.Errorf("devcluster: agent %s is not running", id)
	}
	d.running = false
	return *d, nil
}

// StopAgent stops agent id gracefully: it tells the masters it stops for
// a restart and leaves the gossip pool; its tasks keep running, RUNNING
// for the masters until the re-registration timeout. It returns what the
// agent's Run returned.
func (c *Cluster) StopAgent(id string) error {
	return c.stopAgent(id, false)
}

// DecommissionAgent stops agent id for good: it kills its tasks, waits for
// their final updates to be delivered and tells the masters it is gone
// (its id may not register again). It returns what the agent's Run
// returned.
func (c *Cluster) DecommissionAgent(id string) error {
	return c.stopAgent(id, true)
}

// DecommissionAgents decommissions every running agent, in parallel: what
// a cluster whose data is about to be deleted does, so that no task
// process outlives it.
func (c *Cluster) DecommissionAgents() {
	c.eachRunningAgent(func(id string) error { return c.DecommissionAgent(id) })
}

func (c *Cluster) stopAgent(id string, decommission bool) error {
	d, err := c.takeRunning(id)
	if err != nil {
		return err
	}
	if decommission {
		d.a.Decommission()
	}
	d.cancel()
	<-d.done
	s := c.agentSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agents[id].err
}

// RestartAgent kills agent id when it runs, then starts it again with the
// same options, data dir and gossip address.
func (c *Cluster) RestartAgent(ctx context.Context, id string) (*agent.Agent, error) {
	s := c.agentSet()
	s.mu.Lock()
	d, ok := s.agents[id]
	var running bool
	var o AgentOptions
	if ok {
		running, o = d.running, d.opts
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("devcluster: agent %s never ran", id)
	}
	if running {
		if err := c.KillAgent(id); err != nil {
			return nil, err
		}
	}
	return c.StartAgent(ctx, o)
}

// Agents returns the running agents, sorted by id.
func (c *Cluster) Agents() []*agent.Agent {
	s := c.agentSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*agent.Agent
	for _, d := range s.agents {
		if d.running {
			out = append(out, d.a)
		}
	}
	slices.SortFunc(out, func(x, y *agent.Agent) int {
		switch {
		case x.ID() < y.ID():
			return -1
		case x.ID() > y.ID():
			return 1
		}
		return 0
	})
	return out
}

// Agent returns the running agent id, or nil.
func (c *Cluster) Agent(id string) *agent.Agent {
	s := c.agentSet()
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.agents[id]; ok && d.running {
		return d.a
	}
	return nil
}

// stopAgents stops every running agent gracefully, in parallel.
func (c *Cluster) stopAgents() {
	c.eachRunningAgent(func(id string) error { return c.StopAgent(id) })
}

// eachRunningAgent runs stop for every running agent, in parallel.
func (c *Cluster) eachRunningAgent(stop func(id string) error) {
	s := c.agentSet()
	s.mu.Lock()
	var ids []string
	for id, d := range s.agents {
		if d.running {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if err := stop(id); err != nil && !errors.Is(err, context.Canceled) {
				c.opts.Logger.Debug("dev agent stop", "agent", id, "err", err)
			}
		})
	}
	wg.Wait()
}

// agentToken is the token of agent id's principal with Options.Auth.
func (c *Cluster) agentToken(id string) string {
	if c.opts.Auth == nil {
		return ""
	}
	return c.opts.Auth.AgentTokens[id]
}
