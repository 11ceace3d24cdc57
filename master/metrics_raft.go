package master

import (
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/gossip"
)

// Follower replication, as the leader sees it.
//
// hashicorp/raft v1.7.3 keeps each follower's match index in its private
// replication state: Stats() has no per-follower figures (only this node's
// own last_contact with the leader), and its go-metrics give per-peer
// AppendEntries and heartbeat latencies, not indexes. A follower's match
// index is, however, exactly what a successful AppendEntries response
// confirms: the last entry sent (or, with none, the PrevLogEntry it
// matched). Our transport carries every AppendEntries, one at a time per
// follower (no pipelining), so it records that per follower; heartbeats
// (no PrevLogEntry) only refresh the last contact time. The leader reports
// lag = its commit index - the follower's match index.

// followerTracker is the replication progress of each follower this node
// has replicated to, as its transport saw it.
type followerTracker struct {
	mu sync.Mutex
	by map[raft.ServerID]followerProgress
}

type followerProgress struct {
	term    uint64 // the leader term of the last confirmed append
	match   uint64
	contact time.Time
}

func (f *followerTracker) note(id raft.ServerID, req *raft.AppendEntriesRequest, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.by == nil {
		f.by = map[raft.ServerID]followerProgress{}
	}
	p := f.by[id]
	p.contact = at
	switch {
	case len(req.Entries) > 0:
		p.term, p.match = req.Term, req.Entries[len(req.Entries)-1].Index
	case req.PrevLogEntry > 0:
		p.term, p.match = req.Term, req.PrevLogEntry
	}
	f.by[id] = p
}

func (f *followerTracker) get(id raft.ServerID) (followerProgress, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.by[id]
	return p, ok
}

// AppendEntries sends an AppendEntries RPC and, when the follower accepts
// it, records the follower's progress (see followerTracker).
func (t *RaftTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, req, resp)
	if err == nil && resp.Success {
		t.followers.note(id, req, time.Now())
	}
	return err
}

// liveCollector reports what is read from Raft and gossip at scrape time:
// follower replication (on the leader) and gossip members by state.
type liveCollector struct {
	m                            *Master
	labels                       prometheus.Labels
	once                         sync.Once
	match, lag, contact, members *prometheus.Desc
}

func (c *liveCollector) descs() []*prometheus.Desc {
	c.once.Do(func() {
		leaderOnly := " Reported by the leader only, for each follower in the Raft configuration that it replicated to this term."
		c.match = prometheus.NewDesc("agora_raft_follower_match_index", "Last Raft index the follower confirmed it holds."+leaderOnly, []string{"follower"}, c.labels)
		c.lag = prometheus.NewDesc("agora_raft_follower_commit_lag_entries", "Leader's commit index minus the follower's match index (0 when caught up)."+leaderOnly, []string{"follower"}, c.labels)
		c.contact = prometheus.NewDesc("agora_raft_follower_last_contact_seconds", "Seconds since the follower last answered an AppendEntries or heartbeat."+leaderOnly, []string{"follower"}, c.labels)
		c.members = prometheus.NewDesc("agora_gossip_members", "Gossip pool members as this master sees them, by role (master, agent) and state (alive, leaving, left, failed, none).", []string{"role", "state"}, c.labels)
	})
	return []*prometheus.Desc{c.match, c.lag, c.contact, c.members}
}

// Describe implements prometheus.Collector.
func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	c.descs()
	m := c.m
	if m.raft != nil && m.raft.State() == raft.Leader && m.trans != nil {
		c.collectFollowers(ch)
	}
	if m.pool == nil {
		return
	}
	counts := map[[2]string]int{}
	for _, role := range []string{gossip.RoleMaster, gossip.RoleAgent} {
		for _, s := range []gossip.Status{gossip.StatusAlive, gossip.StatusLeaving, gossip.StatusLeft, gossip.StatusFailed} {
			counts[[2]string{role, string(s)}] = 0
		}
	}
	for _, mem := range m.pool.Members() {
		counts[[2]string{mem.Tags.Role, string(mem.Status)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

func (c *liveCollector) collectFollowers(ch chan<- prometheus.Metric) {
	m := c.m
	f := m.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	term, commit, now := m.raft.CurrentTerm(), m.raft.CommitIndex(), time.Now()
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.ID != raft.ServerID(m.cfg.ID) {
			ids = append(ids, string(s.ID))
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		p, ok := m.trans.followers.get(raft.ServerID(id))
		if !ok || p.term != term {
			continue
		}
		lag := uint64(0)
		if commit > p.match {
			lag = commit - p.match
		}
		ch <- prometheus.MustNewConstMetric(c.match, prometheus.GaugeValue, float64(p.match), id)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lag), id)
		ch <- prometheus.MustNewConstMetric(c.contact, prometheus.GaugeValue, now.Sub(p.contact).Seconds(), id)
	}
}
