package logging

import (
	"fmt"

	"github.com/hashicorp/go-hclog"
)

// raftRoutine lists records hashicorp/raft (v1.7) logs at WARN or ERROR for
// conditions that are part of its normal operation, with the level they are
// re-emitted at and the condition under which they are routine. Every one
// was seen on a healthy `agora dev` start; the rest of raft's WARNs and
// ERRORs pass unchanged, and so do these when the condition does not hold.
var raftRoutine = map[string]struct {
	to   hclog.Level
	when func(args []any) bool
}{
	// A follower asked to append after an entry it does not have yet: it is
	// behind (a new master's empty log at first bootstrap, a restart) and
	// the leader answers by sending older entries. Still a WARN when the
	// entry should be there (previous-index <= last-index) or the log
	// store failed otherwise.
	"failed to get previous log": {hclog.Debug, func(args []any) bool {
		return errText(arg(args, "error")) == "log not found" &&
			uintArg(args, "previous-index") > uintArg(args, "last-index")
	}},
	// The leader has no entry at the follower's next index (compacted into
	// a snapshot, or the gap a restored snapshot leaves): it sends the
	// follower its snapshot instead.
	"failed to get log": {hclog.Info, func(args []any) bool {
		return errText(arg(args, "error")) == "log not found"
	}},
	// The leader's side of the same catch-up.
	"appendEntries rejected, sending older logs": {hclog.Debug, always},
	// A master with no Raft configuration yet (waiting for the cluster's
	// bootstrap to add it) cannot hold an election.
	"no known peers, aborting election": {hclog.Debug, always},
	// The first election of a node that never had a leader: nothing was
	// lost. A heartbeat timeout after a known leader stays a WARN.
	"heartbeat timeout reached, starting election": {hclog.Info, func(args []any) bool {
		return fmt.Sprint(arg(args, "last-leader-id")) == ""
	}},
}

func always([]any) bool { return true }

// routineLevel returns the level to log a raft record at.
func routineLevel(level hclog.Level, msg string, args []any) hclog.Level {
	if level < hclog.Warn {
		return level
	}
	if r, ok := raftRoutine[msg]; ok && r.when(args) {
		return r.to
	}
	return level
}

// arg returns the value of key among alternating key/value args, or nil.
func arg(args []any, key string) any {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return args[i+1]
		}
	}
	return nil
}

func errText(v any) string {
	switch e := v.(type) {
	case error:
		return e.Error()
	case string:
		return e
	default:
		return ""
	}
}

// uintArg returns an integer arg as a uint64 (0 when absent or negative).
func uintArg(args []any, key string) uint64 {
	switch v := arg(args, key).(type) {
	case uint64:
		return v
	case uint:
		return uint64(v)
	case uint32:
		return uint64(v)
	case int:
		return uint64(max(v, 0))
	case int64:
		return uint64(max(v, 0))
	default:
		return 0
	}
}
