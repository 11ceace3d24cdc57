package logging

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// serverID stands in for raft.ServerID, a string type raft logs as is.
type serverID string

func TestRaftRoutineRecordsAreDemoted(t *testing.T) {
	notFound := errors.New("log not found")
	for _, c := range []struct {
		name  string
		level hclog.Level
		msg   string
		args  []any
		want  string
	}{
		{"follower behind", hclog.Warn, "failed to get previous log",
			[]any{"previous-index", uint64(1), "last-index", uint64(0), "error", notFound}, "DEBUG"},
		{"entry that should exist", hclog.Warn, "failed to get previous log",
			[]any{"previous-index", uint64(5), "last-index", uint64(9), "error", notFound}, "WARN"},
		{"log store failure", hclog.Warn, "failed to get previous log",
			[]any{"previous-index", uint64(1), "last-index", uint64(0), "error", errors.New("disk on fire")}, "WARN"},
		{"leader side of catch-up", hclog.Warn, "appendEntries rejected, sending older logs",
			[]any{"peer", "m2", "next", uint64(1)}, "DEBUG"},
		{"no configuration yet", hclog.Warn, "no known peers, aborting election", nil, "DEBUG"},
		{"first election", hclog.Warn, "heartbeat timeout reached, starting election",
			[]any{"last-leader-addr", serverID(""), "last-leader-id", serverID("")}, "INFO"},
		{"leader lost", hclog.Warn, "heartbeat timeout reached, starting election",
			[]any{"last-leader-addr", serverID("127.0.0.1:7201"), "last-leader-id", serverID("m2")}, "WARN"},
		{"other warnings pass", hclog.Warn, "failed to contact quorum of nodes", nil, "WARN"},
		{"errors pass", hclog.Error, "failed to appendEntries to", []any{"error", errors.New("x")}, "ERROR"},
		{"lower levels are never raised", hclog.Trace, "no known peers, aborting election", nil, "TRACE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			HCLog(New(&buf, LevelTrace, true), "raft").Log(c.level, c.msg, c.args...)
			recs := records(t, &buf)
			if len(recs) != 1 || recs[0]["level"] != c.want || recs[0]["msg"] != c.msg {
				t.Fatalf("got %v, want one %s record %q", recs, c.want, c.msg)
			}
		})
	}
}
