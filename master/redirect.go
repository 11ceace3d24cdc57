package master

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// LeaderHeader is the response header naming the leader's HTTP URL on an
// Unavailable answer from a follower.
const LeaderHeader = "Agora-Leader"

// NotLeaderError is the answer to a call that needs the leader: Unavailable
// with a LeaderRedirect detail and the Agora-Leader header when the leader
// is known, a plain Unavailable saying so when it is not.
func (m *Master) NotLeaderError() *connect.Error {
	id, url := m.Leader()
	switch {
	case id == "":
		return connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("master %s knows no leader; an election may be in progress, retry shortly", m.cfg.ID))
	case id == m.cfg.ID:
		return connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("master %s is becoming the leader and is not ready yet; retry shortly", m.cfg.ID))
	case url == "":
		return connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("master %s is not the leader; the leader is %s but its address is not known yet, retry shortly", m.cfg.ID, id))
	}
	e := connect.NewError(connect.CodeUnavailable,
		fmt.Errorf("master %s is not the leader; the leader is %s at %s", m.cfg.ID, id, url))
	if d, err := connect.NewErrorDetail(&agorav1.LeaderRedirect{LeaderId: id, LeaderAddress: url}); err == nil {
		e.AddDetail(d)
	}
	e.Meta().Set(LeaderHeader, url)
	return e
}

// leaderView is what leaderOrRedirect needs of a master.
type leaderView interface {
	IsLeader() bool
	Leader() (id, httpURL string)
	NotLeaderError() *connect.Error
}

// electionWait bounds how long a Subscribe that reaches a master knowing no
// leader waits for one to be elected (about two election timeouts of the
// default raft profile).
const electionWait = 3 * time.Second

// leaderOrRedirect is for a call that needs the leader, on b that may be a
// follower: it returns nil when b leads, and b's NotLeaderError otherwise.
// While an election runs (b knows no leader) it first waits, up to
// electionWait or ctx's end, for a leader to be known, so that the caller
// is redirected to the new leader as soon as b hears of it instead of
// retrying with a backoff. A follower that names a leader, even a dead one
// whose heartbeat timeout has not run out yet, answers at once.
func leaderOrRedirect(ctx context.Context, b leaderView) error {
	if b.IsLeader() {
		return nil
	}
	if id, _ := b.Leader(); id != "" {
		return b.NotLeaderError()
	}
	deadline := time.NewTimer(electionWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return b.NotLeaderError()
		case <-deadline.C:
			return b.NotLeaderError()
		case <-tick.C:
		}
		if b.IsLeader() {
			return nil
		}
		if id, _ := b.Leader(); id != "" {
			return b.NotLeaderError()
		}
	}
}
