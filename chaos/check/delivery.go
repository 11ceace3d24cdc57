package check

import (
	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// StatusKey names a status update as a framework saw it: its uuid, or
// "state:NAME" for an update without one.
func StatusKey(s *agorav1.TaskStatus) string {
	if s.GetUuid() != "" {
		return s.GetUuid()
	}
	return "state:" + s.GetState().String()
}

// Delivery checks that the latest committed status of every task of a live
// framework reached that framework at least once. seen maps framework id ->
// StatusKey of every UPDATE its scheduler received; live lists the
// frameworks still subscribed at the end (the others cannot be asked). Call
// it once the cluster is quiet and redelivery had time to happen.
func Delivery(final *fsm.State, seen map[string]map[string]bool, live map[string]bool) []Violation {
	var out []Violation
	for _, t := range final.Tasks() {
		fid := t.GetFrameworkId()
		st := t.GetStatus()
		if !live[fid] || st == nil {
			continue
		}
		if !seen[fid][StatusKey(st)] {
			out = append(out, violation("delivery", "framework %s never received task %s's status %s (uuid %q, acknowledged %v)",
				fid, t.GetId(), st.GetState(), st.GetUuid(), t.GetAcknowledged()))
		}
	}
	return out
}
