package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// records decodes the JSON lines in buf.
func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad json line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestNewTextAndLevel(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, slog.LevelInfo, false)
	l.Debug("hidden")
	l.Info("shown", "k", 1)
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Fatalf("debug line emitted at info level: %q", out)
	}
	if !strings.Contains(out, "msg=shown") || !strings.Contains(out, "k=1") {
		t.Fatalf("text output missing record: %q", out)
	}
}

func TestHCLogLevels(t *testing.T) {
	var buf bytes.Buffer
	h := HCLog(New(&buf, LevelTrace, true), "raft")
	h.Trace("t")
	h.Debug("d")
	h.Info("i", "term", 3)
	h.Warn("w")
	h.Error("e", "error", errors.New("boom"))
	h.Named("snap").With("id", "x").Info("named")

	recs := records(t, &buf)
	want := []struct{ msg, level, logger string }{
		{"t", "TRACE", "raft"}, {"d", "DEBUG", "raft"}, {"i", "INFO", "raft"},
		{"w", "WARN", "raft"}, {"e", "ERROR", "raft"}, {"named", "INFO", "raft.snap"},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d: %v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r["msg"] != w.msg || r["level"] != w.level || r["logger"] != w.logger {
			t.Errorf("record %d = %v, want msg=%s level=%s logger=%s", i, r, w.msg, w.level, w.logger)
		}
	}
	if recs[2]["term"] != float64(3) {
		t.Errorf("term attr lost: %v", recs[2])
	}
	if recs[4]["error"] != "boom" {
		t.Errorf("error attr = %v, want boom", recs[4]["error"])
	}
	if recs[5]["id"] != "x" {
		t.Errorf("With attr lost: %v", recs[5])
	}
}

func TestHCLogEnabledFollowsHandlerAndFloor(t *testing.T) {
	var buf bytes.Buffer
	h := HCLog(New(&buf, slog.LevelInfo, true), "")
	if h.IsDebug() || h.IsTrace() {
		t.Fatal("debug/trace enabled on an info handler")
	}
	if !h.IsInfo() || !h.IsError() {
		t.Fatal("info/error disabled on an info handler")
	}
	if got := h.GetLevel(); got != hclog.Info {
		t.Fatalf("GetLevel = %v, want info", got)
	}
	child := h.Named("c")
	h.SetLevel(hclog.Error)
	child.Warn("dropped")
	child.Error("kept")
	recs := records(t, &buf)
	if len(recs) != 1 || recs[0]["msg"] != "kept" {
		t.Fatalf("floor not shared with derived logger: %v", recs)
	}
	h.Debug("also dropped")
	if len(records(t, &buf)) != 1 {
		t.Fatal("debug emitted through info handler")
	}
}

func TestHCLogStandardLogger(t *testing.T) {
	var buf bytes.Buffer
	h := HCLog(New(&buf, slog.LevelDebug, true), "raft")
	h.StandardLogger(nil).Printf("[WARN] raft: heartbeat slow")
	h.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Printf("[DEBUG] forced")
	recs := records(t, &buf)
	if len(recs) != 2 {
		t.Fatalf("got %v", recs)
	}
	if recs[0]["level"] != "WARN" || recs[0]["msg"] != "heartbeat slow" || recs[0]["logger"] != "raft" {
		t.Errorf("inferred record = %v", recs[0])
	}
	if recs[1]["level"] != "ERROR" || recs[1]["msg"] != "forced" {
		t.Errorf("forced record = %v", recs[1])
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line, sub, msg string
		level          slog.Level
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", "memberlist", "Stream connection from=127.0.0.1:1", slog.LevelDebug},
		{"[WARN] memberlist: Was able to connect to a1 over TCP", "memberlist", "Was able to connect to a1 over TCP", slog.LevelWarn},
		{"[ERR] memberlist: Failed to send ping: x", "memberlist", "Failed to send ping: x", slog.LevelError},
		{"[ERROR] serf: oops", "serf", "oops", slog.LevelError},
		{"[INFO] serf: EventMemberJoin: a1 127.0.0.1", "serf", "EventMemberJoin: a1 127.0.0.1", slog.LevelInfo},
		{"[TRACE] trace only", "", "trace only", LevelTrace},
		{"2024/01/02 15:04:05 [WARNING] serf: late", "serf", "late", slog.LevelWarn},
		{"no tag here", "", "no tag here", slog.LevelInfo},
		{"[NOPE] unknown tag", "", "[NOPE] unknown tag", slog.LevelInfo},
		{"[INFO] a sentence with spaces: kept whole", "", "a sentence with spaces: kept whole", slog.LevelInfo},
	}
	for _, tc := range tests {
		level, sub, msg := ParseLine(tc.line)
		if level != tc.level || sub != tc.sub || msg != tc.msg {
			t.Errorf("ParseLine(%q) = (%v, %q, %q), want (%v, %q, %q)", tc.line, level, sub, msg, tc.level, tc.sub, tc.msg)
		}
	}
}

func TestStdLogBridge(t *testing.T) {
	var buf bytes.Buffer
	std := StdLog(New(&buf, slog.LevelInfo, true), "gossip")
	std.Printf("[DEBUG] memberlist: dropped at info")
	std.Printf("[INFO] serf: EventMemberJoin: a1")
	std.Printf("[WARN] memberlist: Refuting a suspect message")
	std.Printf("[ERR] memberlist: Failed fallback ping")
	std.Print("plain line\n[ERR] second line")
	std.Printf("[ERR] memberlist: Failed to send indirect UDP ping: write udp 127.0.0.1:1->127.0.0.1:2: use of closed network connection")
	std.Printf("[ERR] memberlist: Failed fallback TCP ping: timeout 200ms: read tcp 127.0.0.1:3->127.0.0.1:4: i/o timeout")

	recs := records(t, &buf)
	want := []struct{ level, sub, msg string }{
		{"INFO", "serf", "EventMemberJoin: a1"},
		{"WARN", "memberlist", "Refuting a suspect message"},
		{"ERROR", "memberlist", "Failed fallback ping"},
		{"INFO", "", "plain line"},
		{"ERROR", "", "second line"},
		{"WARN", "memberlist", "Failed fallback TCP ping: timeout 200ms: read tcp 127.0.0.1:3->127.0.0.1:4: i/o timeout"},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d: %v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		sub, _ := r["subsystem"].(string)
		if r["level"] != w.level || sub != w.sub || r["msg"] != w.msg || r["logger"] != "gossip" {
			t.Errorf("record %d = %v, want level=%s subsystem=%q msg=%q", i, r, w.level, w.sub, w.msg)
		}
	}
}

func TestNilLoggerMeansDefault(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(New(&buf, slog.LevelInfo, true))
	t.Cleanup(func() { slog.SetDefault(old) })
	StdLog(nil, "").Print("[WARN] x: y")
	HCLog(nil, "").Warn("z")
	if recs := records(t, &buf); len(recs) != 2 {
		t.Fatalf("nil logger did not reach slog.Default: %v", recs)
	}
}
