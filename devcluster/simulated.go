package devcluster

import (
	"context"
	"fmt"
	"time"

	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/simagent"
)

// SimulatedAgents are agents simulated in this process (package
// simagent), started with StartSimulatedAgents.
type SimulatedAgents struct {
	*simagent.Sim
	cancel context.CancelFunc
	done   chan struct{}
}

// Stop stops the simulated agents (each says goodbye) and waits for them.
func (s *SimulatedAgents) Stop() {
	s.cancel()
	<-s.done
}

// StartSimulatedAgents starts n simulated agents with resources spec res
// ("cpus:8;mem:16384") against this cluster's masters. taskDuration > 0
// finishes each task that long after it runs. They run until Stop (or the
// cluster's Stop, which stops them first). TLS clusters are not supported.
func (c *Cluster) StartSimulatedAgents(n int, res string, taskDuration time.Duration) (*SimulatedAgents, error) {
	if c.opts.TLS {
		return nil, fmt.Errorf("devcluster: simulated agents on a TLS cluster are not supported")
	}
	r, err := resources.Parse(res)
	if err != nil {
		return nil, fmt.Errorf("devcluster: simulated agents: resources: %w", err)
	}
	sim, err := simagent.New(simagent.Config{Masters: c.Addrs(), Count: n, Resources: r, TaskDuration: taskDuration,
		Cluster: c.cluster(), Logger: c.opts.Logger, Decommission: true})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &SimulatedAgents{Sim: sim, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = sim.Run(ctx)
	}()
	c.onStop(s.Stop)
	return s, nil
}
