package framework

import (
	"errors"
	"strings"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// leaderHeader is the response header in which a follower names the leader.
const leaderHeader = "Agora-Leader"

// leaderFromError extracts the leader a follower pointed to from an
// Unavailable error: the LeaderRedirect error detail first, then the
// Agora-Leader header. ok is false when err is not such a redirect; addr may
// be empty when the follower knows no leader yet.
func leaderFromError(err error) (id, addr string, ok bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable {
		return "", "", false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if lr, isLR := v.(*agorav1.LeaderRedirect); isLR {
			return lr.GetLeaderId(), normalizeAddr(lr.GetLeaderAddress()), true
		}
	}
	if h := strings.TrimSpace(ce.Meta().Get(leaderHeader)); h != "" {
		return "", normalizeAddr(h), true
	}
	return "", "", false
}

// normalizeAddr turns "host:port" into "http://host:port" and trims a
// trailing slash; "" stays "".
func normalizeAddr(a string) string {
	a = strings.TrimSpace(a)
	if a == "" {
		return ""
	}
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	return strings.TrimRight(a, "/")
}
