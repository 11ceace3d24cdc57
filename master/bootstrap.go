package master

import (
	"context"
	"sort"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

const (
	bootstrapInterval = 250 * time.Millisecond
	reconcileInterval = 2 * time.Second
	peerProbeTimeout  = 2 * time.Second
)

// peer is a master seen alive in gossip.
type peer struct {
	id, raftAddr, httpAddr, gossipAddr string
}

// aliveMasters lists live gossip members that are masters of our cluster,
// ourselves included, sorted by id.
func (m *Master) aliveMasters() []peer {
	var out []peer
	for _, mem := range m.pool.Members() {
		t := mem.Tags
		if mem.Status != gossip.StatusAlive || t.Role != gossip.RoleMaster || t.ID == "" {
			continue
		}
		if t.Extra[TagCluster] != m.cfg.Cluster || t.Extra[TagRaft] == "" {
			continue
		}
		out = append(out, peer{id: t.ID, raftAddr: t.Extra[TagRaft], httpAddr: t.HTTPAddr, gossipAddr: mem.Addr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// bootstrapLoop bootstraps the Raft configuration at most once, and never
// when this master started with Raft state.
func (m *Master) bootstrapLoop(ctx context.Context) {
	if m.hadRaft || m.cfg.BootstrapExpect <= 0 {
		return
	}
	t := time.NewTicker(bootstrapInterval)
	defer t.Stop()
	for {
		if m.tryBootstrap(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.bootCh:
		}
	}
}

// tryBootstrap returns true when bootstrapping is settled: done by us, or
// the cluster already exists.
func (m *Master) tryBootstrap(ctx context.Context) bool {
	if m.raft.LastIndex() > 0 || m.raft.CurrentTerm() > 0 {
		return true // someone bootstrapped and contacted us
	}
	peers := m.aliveMasters()
	if len(peers) < m.cfg.BootstrapExpect {
		return false
	}
	if peers[0].id != m.cfg.ID {
		return false // the lowest id bootstraps; we wait to be contacted
	}
	// Never bootstrap next to masters that already hold Raft state: that
	// would start a second cluster. Ask each of them first.
	for _, p := range peers[1:] {
		if err := m.verifyRaftPeer(ctx, p.raftAddr); err != nil {
			m.log.Warn("not bootstrapping with gossip member", "peer", p.id, "err", err)
			return false
		}
		has, err := m.peerHasRaftState(ctx, p)
		if err != nil {
			m.log.Debug("cannot ask master for its raft state yet", "peer", p.id, "err", err)
			return false
		}
		if has {
			m.log.Info("not bootstrapping: another master already has raft state", "peer", p.id)
			return true
		}
	}
	conf := raft.Configuration{}
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(p.id), Address: raft.ServerAddress(p.raftAddr),
		})
	}
	if err := m.raft.BootstrapCluster(conf).Error(); err != nil {
		m.log.Warn("raft bootstrap refused", "err", err)
		return true
	}
	m.log.Info("bootstrapped raft cluster", "servers", len(conf.Servers))
	return true
}

func (m *Master) peerHasRaftState(ctx context.Context, p peer) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, peerProbeTimeout)
	defer cancel()
	c := agorav1connect.NewOperatorServiceClient(m.peerHTTPClient(), m.urlOf(p.httpAddr))
	resp, err := c.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{Read: &agorav1.ReadOptions{Stale: true}}))
	if err != nil {
		return false, err
	}
	r := resp.Msg.GetRaft()
	return r.GetTerm() > 0 || r.GetCommitIndex() > 0 || resp.Msg.GetLeader() != nil, nil
}

// reconcileLoop runs on the leader: it adds live masters missing from the
// Raft configuration as non-voters (autopilot promotes them once stable
// and caught up, and removes dead ones: autopilot.go) and records
// masters' addresses in the FSM.
func (m *Master) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	for {
		m.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.reconcileCh:
		}
	}
}

func (m *Master) reconcile(ctx context.Context) {
	f := m.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	inConf := make(map[raft.ServerID]raft.Server)
	for _, s := range f.Configuration().Servers {
		inConf[s.ID] = s
	}
	recorded := make(map[string]*agorav1.Master)
	for _, rec := range m.fsm.State().Masters() {
		recorded[rec.GetId()] = rec
	}
	alive := m.aliveMasters()
	for _, p := range alive {
		if ctx.Err() != nil {
			return
		}
		s, ok := inConf[raft.ServerID(p.id)]
		if !ok || s.Address != raft.ServerAddress(p.raftAddr) {
			if err := m.verifyRaftPeer(ctx, p.raftAddr); err != nil {
				m.log.Warn("not adding gossip member as a raft voter", "peer", p.id, "err", err)
				continue
			}
			// A master new to the configuration joins as a non-voter; for
			// one already in it (a new address) AddNonvoter only updates the
			// address and keeps its suffrage.
			m.log.Info("adding master to raft configuration", "peer", p.id, "raft", p.raftAddr, "known", ok)
			if err := m.waitFuture(m.raft.AddNonvoter(raft.ServerID(p.id), raft.ServerAddress(p.raftAddr), 0, 10*time.Second)); err != nil {
				m.log.Warn("adding master failed", "peer", p.id, "err", err)
				continue
			}
		}
		want := &agorav1.Master{Id: p.id, RaftAddress: p.raftAddr, HttpAddress: m.urlOf(p.httpAddr), GossipAddress: p.gossipAddr}
		if rec, ok := recorded[p.id]; ok && proto.Equal(rec, want) {
			continue
		}
		if _, err := m.Apply(ctx, fsm.CmdUpsertMaster, &agorav1.UpsertMasterCommand{Master: want}); err != nil {
			m.log.Warn("recording master failed", "peer", p.id, "err", err)
		}
	}
	m.forgetStaleMasters(ctx, inConf, alive)
}

// forgetStaleMasters drops the records of masters that are neither in the
// Raft configuration nor alive in gossip: those a restored snapshot
// brought from another cluster, or of a removed master whose record could
// not be dropped then.
func (m *Master) forgetStaleMasters(ctx context.Context, inConf map[raft.ServerID]raft.Server, alive []peer) {
	live := make(map[string]bool, len(alive))
	for _, p := range alive {
		live[p.id] = true
	}
	for _, rec := range m.fsm.State().Masters() {
		id := rec.GetId()
		if _, ok := inConf[raft.ServerID(id)]; ok || live[id] || ctx.Err() != nil {
			continue
		}
		m.log.Info("forgetting the record of a master not in the raft configuration", "peer", id)
		if _, err := m.Apply(ctx, fsm.CmdRemoveMaster, &agorav1.RemoveMasterCommand{Id: id}); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
			m.log.Warn("forgetting a stale master record failed", "peer", id, "err", err)
		}
	}
}
