package master

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// leaderWatch is fast leader-death detection (issue 13): a follower that
// has not heard from the leader for a few heartbeat intervals dials the
// leader's Raft address, and when the connection is refused (nothing
// listens there: the leader's process is gone) it starts an election at
// once instead of waiting out raft's randomized heartbeat timeout
// (HeartbeatTimeout..2×HeartbeatTimeout after its timer, checked against
// the last contact).
//
// It starts the election by sending raft's TimeoutNow RPC to itself
// through the transport, the RPC a leader sends in a leadership transfer:
// the follower becomes a candidate at once, skips the pre-vote and asks
// for votes with the LeadershipTransfer flag, so that the other follower,
// which has not timed out yet and still names the dead leader, does not
// refuse it for having a leader.
//
// Safety: raft's safety does not depend on who starts an election or when.
// A voter still grants at most one vote per term and only to a candidate
// whose log is at least as up to date as its own (raft v1.7.3 requestVote
// checks the log whatever the transfer flag), so a follower with a stale
// log cannot win: its request only raises the other follower's term, and
// that follower (whose log is newer) wins the next election. The cost of
// a wrong detection is one needless election, never lost or divergent
// entries. To keep even that away from a live leader:
//
//   - only a refused connection counts: a dial that succeeds, or times out
//     (a paused leader, a partition, a vanished host), changes nothing and
//     raft's normal timeouts apply;
//   - it probes only when the last contact is older than a few leader
//     heartbeat intervals (a leader heartbeats every HeartbeatTimeout/10 to
//     HeartbeatTimeout/5), at most once per heartbeat interval, and acts at
//     most once per cooldown;
//   - just before acting it checks again that we are a follower, still
//     naming the same leader, still without recent contact.
//
// Split votes: when both followers of three detect at once and both
// become candidates in the same term, neither wins and the election waits
// for raft's election timeout. So the voters other than the dead leader
// act in id order: the first at once, the next one stagger later, and only
// if it still has no leader by then (if the first is gone or paused). A
// follower that refused such a candidate its vote because its own log is
// newer (the first follower was behind) acts without the stagger: that
// candidate cannot win without it.
type leaderWatch struct {
	m *Master

	// Timings, from the raft profile's HeartbeatTimeout (newLeaderWatch);
	// tests may change them before Start.
	poll         time.Duration // how often raft's state is read
	stale        time.Duration // last-contact age before the leader is probed
	probeEvery   time.Duration // at most one probe per probeEvery
	probeTimeout time.Duration // dial timeout of a probe
	stagger      time.Duration // extra wait per rank in id order
	cooldown     time.Duration // at most one election per cooldown

	// dial probes a leader's Raft address; nil error means it accepted.
	dial func(ctx context.Context, addr string) error

	probes  atomic.Int64 // dials of a silent leader's Raft address
	refused atomic.Int64 // of which refused
	acted   atomic.Int64 // elections started (TimeoutNow sent to ourselves)
}

func newLeaderWatch(m *Master) *leaderWatch {
	ht := raft.DefaultConfig().HeartbeatTimeout
	if c, err := NewRaftConfig(m.cfg.ID, m.cfg.RaftProfile, m.log); err == nil {
		ht = c.HeartbeatTimeout
	}
	return &leaderWatch{
		m:            m,
		poll:         ht / 20,
		stale:        3 * ht / 10,
		probeEvery:   ht / 10,
		probeTimeout: ht / 4,
		stagger:      ht,
		cooldown:     2 * ht,
		dial:         dialProbe,
	}
}

// dialProbe connects to addr and closes the connection at once.
func dialProbe(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// run watches until ctx ends or the master begins to stop.
func (w *leaderWatch) run(ctx context.Context) {
	votes := make(chan raft.Observation, 8)
	obs := raft.NewObserver(votes, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RequestVoteRequest)
		return ok
	})
	w.m.raft.RegisterObserver(obs)
	defer w.m.raft.DeregisterObserver(obs)
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	var st watchState
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.m.quit:
			return
		case o := <-votes:
			if req, ok := o.Data.(raft.RequestVoteRequest); ok && req.LeadershipTransfer && w.logNewerThan(req.LastLogTerm, req.LastLogIndex) {
				st.outvoted = time.Now()
			}
			continue
		case <-tick.C:
		}
		if w.m.stopping.Load() {
			return
		}
		w.check(ctx, &st)
	}
}

// watchState is what run remembers between checks.
type watchState struct {
	lastProbe, lastAct time.Time
	// The leader we last knew (raft forgets it on a change of state).
	leaderAddr raft.ServerAddress
	leaderID   raft.ServerID
	// outvoted is when a candidate asked for our vote with a log older
	// than ours: we refused it, so (with three voters) it cannot win, and
	// our stagger wait would only delay the election we must win.
	outvoted time.Time
}

// logNewerThan reports whether our log is more up to date than a
// candidate's last entry (raft's vote rule: we refuse such a candidate).
func (w *leaderWatch) logNewerThan(term, index uint64) bool {
	r := w.m.raft
	ourTerm, err := strconv.ParseUint(r.Stats()["last_log_term"], 10, 64)
	if err != nil {
		return false
	}
	return ourTerm > term || (ourTerm == term && r.LastIndex() > index)
}

// check is one look at raft's state; it may probe the leader and act.
func (w *leaderWatch) check(ctx context.Context, st *watchState) {
	r := w.m.raft
	if r.State() != raft.Follower {
		return
	}
	addr, id := r.LeaderWithID()
	switch {
	case id == raft.ServerID(w.m.cfg.ID):
		st.leaderAddr, st.leaderID = "", ""
		return
	case addr != "":
		st.leaderAddr, st.leaderID = addr, id
	case st.leaderAddr != "" && st.outvoted.After(r.LastContact()):
		// Raft forgets the leader on any change of state, also when a
		// vote request with a higher term makes us a follower again. When
		// that request came from a candidate that cannot win (outvoted),
		// we keep probing the leader we last knew, as long as no leader
		// has been in contact since (any contact names the new leader).
		addr, id = st.leaderAddr, st.leaderID
	default:
		// No leader known: raft's own timers are at work (at start, or
		// an election is under way that we voted in or lost; acting
		// then could depose a leader that has just won).
		return
	}
	now := time.Now()
	if now.Sub(r.LastContact()) < w.stale || now.Sub(st.lastProbe) < w.probeEvery || now.Sub(st.lastAct) < w.cooldown {
		return
	}
	st.lastProbe = now
	w.probes.Add(1)
	pctx, cancel := context.WithTimeout(ctx, w.probeTimeout)
	err := w.dial(pctx, string(addr))
	cancel()
	if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		return // alive, paused or unreachable: leave it to raft's timeouts
	}
	w.refused.Add(1)
	rank, ok := w.rank(id)
	if !ok {
		return // not a voter: raft would not start an election either
	}
	// Re-read everything just before acting.
	wait := w.stale + time.Duration(rank)*w.stagger
	if st.outvoted.After(r.LastContact()) {
		wait = w.stale // the candidate before us cannot win: no stagger
	}
	a2, id2 := r.LeaderWithID()
	if r.State() != raft.Follower || (a2 != "" && (a2 != addr || id2 != id)) || time.Since(r.LastContact()) < wait || w.m.stopping.Load() {
		return
	}
	st.lastAct = time.Now()
	if err := w.elect(); err != nil {
		w.m.log.Warn("leader watch: could not start an election", "err", err)
		return
	}
	w.acted.Add(1)
	w.m.log.Info("leader watch: the leader's raft address refuses connections; starting an election now",
		"leader", string(id), "leader_addr", string(addr), "rank", rank)
}

// rank is our place, in id order, among the voters other than leader;
// ok is false when we are not a voter.
func (w *leaderWatch) rank(leader raft.ServerID) (rank int, ok bool) {
	f := w.m.raft.GetConfiguration()
	if err := w.m.waitFuture(f); err != nil {
		return 0, false
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != leader {
			ids = append(ids, string(s.ID))
		}
	}
	slices.Sort(ids)
	rank = slices.Index(ids, w.m.cfg.ID)
	return rank, rank >= 0
}

// elect makes our raft a candidate now: a TimeoutNow RPC to ourselves.
func (w *leaderWatch) elect() error {
	id := raft.ServerID(w.m.cfg.ID)
	addr := w.m.trans.LocalAddr()
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(id),
		Addr:            w.m.trans.EncodePeer(id, addr),
	}}
	return w.m.trans.TimeoutNow(id, addr, req, &raft.TimeoutNowResponse{})
}
