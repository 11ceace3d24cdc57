package master

import (
	"fmt"

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
