package devcluster

import (
	"context"
	"path/filepath"
	"strconv"
)

// AddMaster starts one more master, "m<N+1>", that joins the running
// cluster through gossip without bootstrapping: the leader adds it to
// the Raft configuration as a non-voter and autopilot promotes it once
// it is stable. It returns the new master's index.
func (c *Cluster) AddMaster(ctx context.Context) (int, error) {
	h, err := FreeTCPPort()
	if err != nil {
		return 0, err
	}
	r, err := FreeTCPPort()
	if err != nil {
		return 0, err
	}
	g, err := FreeGossipPort()
	if err != nil {
		return 0, err
	}
	cfgs := c.configs()
	base := cfgs[0]
	id := "m" + strconv.Itoa(len(cfgs)+1)
	cfg := base
	cfg.ID = id
	cfg.DataDir = filepath.Join(c.dir, id)
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = loopback(h), loopback(r), loopback(g)
	cfg.Join = append(c.JoinAddrs(), cfg.GossipAddr)
	cfg.TLS = nil
	if c.opts.MasterConfig != nil {
		c.opts.MasterConfig(&cfg)
	}
	cfg.BootstrapExpect = 0
	if err := c.masterTLS(&cfg); err != nil {
		return 0, err
	}
	c.mu.Lock()
	i := len(c.cfgs)
	c.cfgs = append(c.cfgs, cfg)
	c.masters = append(c.masters, nil)
	c.alive = append(c.alive, false)
	c.mu.Unlock()
	return i, c.start(ctx, i)
}

// StopMaster shuts master i down gracefully, as an operator's restart
// would (leadership handed over, gossip left); Restart brings it back.
func (c *Cluster) StopMaster(i int) error {
	c.mu.Lock()
	m, alive := c.masters[i], c.alive[i]
	c.alive[i] = false
	c.mu.Unlock()
	if !alive {
		return nil
	}
	return m.Shutdown()
}
