package master

import (
	"context"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// LeaderHeader is the response header naming the leader's HTTP URL on an
// Unavailable answer from a follower, and on a follower's answer to a read
// it serves itself (nameLeader).
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

// nameLeader sets LeaderHeader on a successful answer this master gives
// as a follower (a read any master serves), so that the client sends its
// next calls, writes among them, to the leader rather than here: a client
// that made the last master to answer its target would otherwise send
// every write after such a read to a follower, to be refused and resent.
func nameLeader(m backend, h http.Header) {
	if m.IsLeader() {
		return
	}
	if id, url := m.Leader(); id != "" && id != m.ID() && url != "" {
		h.Set(LeaderHeader, url)
	}
}

// leaderView is what leaderOrRedirect needs of a master.
type leaderView interface {
	IsLeader() bool
	Leader() (id, httpURL string)
	NotLeaderError() *connect.Error
}

// electionWait bounds how long a Subscribe waits, on a follower, for an
// election: for one to end when it knows no leader, or to begin when it
// names a leader the framework cannot reach. Well under the SDK's wait for
// a stream's first message (rpc/client.DefaultStreamOpenTimeout).
const electionWait = 5 * time.Second

// UnreachableHeader is the request header naming the masters a client
// cannot reach (rpc/client.UnreachableHeader).
const UnreachableHeader = "Agora-Unreachable"

// leaderOrRedirect is for a call that needs the leader, on b that may be a
// follower: it returns nil when b leads, and b's NotLeaderError otherwise.
// While b knows no leader (an election runs), or still names the leader it
// named when the call came and the caller says it cannot reach that one
// (unreachable: the caller's UnreachableHeader; a leader just killed,
// whose death b's heartbeat timeout has not noticed yet), it first waits,
// up to wait or ctx's end, for b to lead or name another leader, so that
// the caller is sent to the new leader as soon as b hears of it instead of
// polling the masters with a backoff. The new leader is named whatever the
// caller's list says of it: the list may be older than the election (a
// master killed and restarted before being elected).
func leaderOrRedirect(ctx context.Context, b leaderView, unreachable string, wait time.Duration) error {
	if b.IsLeader() {
		return nil
	}
	heldOn, url := b.Leader()
	if heldOn != "" && !named(unreachable, url) {
		return b.NotLeaderError()
	}
	deadline := time.NewTimer(wait)
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
		if id, _ := b.Leader(); id != "" && id != heldOn {
			return b.NotLeaderError()
		}
	}
}

// named reports whether the comma-separated URLs in list name the host of
// url.
func named(list, url string) bool {
	if list == "" || url == "" {
		return false
	}
	host := hostOf(url)
	for _, u := range strings.Split(list, ",") {
		if h := hostOf(u); h != "" && h == host {
			return true
		}
	}
	return false
}

// hostOf is the host:port of a URL ("" when it has none).
func hostOf(u string) string {
	p, err := neturl.Parse(strings.TrimSpace(u))
	if err != nil {
		return ""
	}
	return p.Host
}
