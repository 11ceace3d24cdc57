package check

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

type logEntry struct {
	t fsm.CommandType
	m proto.Message
}

// writeLog writes entries as a master's Raft log under a fresh data dir,
// checking on a scratch FSM that none is rejected.
func writeLog(t *testing.T, entries []logEntry) string {
	t.Helper()
	dataDir := t.TempDir()
	if err := os.MkdirAll(RaftDir(dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	store, err := raftboltdb.NewBoltStore(RaftDir(dataDir) + "/raft.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	scratch := fsm.New(fsm.Config{})
	for i, e := range entries {
		b, err := fsm.Encode(e.t, e.m)
		if err != nil {
			t.Fatal(err)
		}
		idx := uint64(i + 1)
		if res := scratch.ApplyCommand(idx, b); res.Err != nil {
			t.Fatalf("entry %d (%s) rejected: %v", idx, e.t, res.Err)
		}
		if err := store.StoreLog(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: b}); err != nil {
			t.Fatal(err)
		}
	}
	return dataDir
}

func scenario(t0 time.Time, teardownAfter time.Duration) []logEntry {
	ts := timestamppb.New
	return []logEntry{
		{fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: ts(t0), Agent: &agorav1.Agent{Id: "a1", Hostname: "h1",
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 4}, {Name: "mem", Scalar: 1024}}}}},
		{fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: ts(t0), Framework: &agorav1.Framework{Id: "f1", StreamToken: "tok",
			Info: &agorav1.FrameworkInfo{Id: "f1", Name: "fw", Roles: []string{"*"}, FailoverTimeoutSeconds: 3600}}}},
		{fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: ts(t0), Offers: []*agorav1.Offer{{Id: "o1", FrameworkId: "f1", AgentId: "a1", Role: "*",
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1}, {Name: "mem", Scalar: 128}}, CreatedAt: ts(t0), ExpiresAt: ts(t0.Add(time.Minute))}}}},
		{fsm.CmdDecline, &agorav1.DeclineCommand{FrameworkId: "f1", OfferIds: []string{"o1"}, RefuseUntil: ts(t0.Add(time.Second))}},
		{fsm.CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{FrameworkId: "f1", StreamToken: "tok", Now: ts(t0)}},
		{fsm.CmdTeardownFramework, &agorav1.TeardownFrameworkCommand{FrameworkId: "f1", Reason: "failover timeout", Now: ts(t0.Add(teardownAfter))}},
	}
}

func TestReplayCleanLog(t *testing.T) {
	dir := writeLog(t, scenario(time.Unix(1000, 0), 2*time.Hour))
	res, err := Replay(dir, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) != 0 {
		t.Fatalf("violations on a clean log: %v", res.Violations)
	}
	if res.Entries != 6 || res.Offers != 1 || res.OffersOpen != 0 || res.Final.Index() != 6 {
		t.Fatalf("replayed %+v", res)
	}
}

func TestReplayCatchesEarlyTeardown(t *testing.T) {
	dir := writeLog(t, scenario(time.Unix(1000, 0), time.Second))
	res, err := Replay(dir, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) != 1 || res.Violations[0].Checker != "teardown" || !strings.Contains(res.Violations[0].Detail, "f1") {
		t.Fatalf("early teardown not caught: %v", res.Violations)
	}
	// The same teardown is fine when the framework asked for it.
	res, err = Replay(dir, ReplayOptions{Deliberate: map[string]bool{"f1": true}})
	if err != nil || len(res.Violations) != 0 {
		t.Fatalf("deliberate teardown flagged: %v %v", err, res.Violations)
	}
}

func TestReplayMissingLog(t *testing.T) {
	if _, err := Replay(t.TempDir(), ReplayOptions{}); err == nil {
		t.Fatal("no error for a data dir without a raft log")
	}
}

func TestDelivery(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f := fsm.New(fsm.Config{})
	entries := scenario(t0, time.Hour)[:2]
	entries = append(entries,
		logEntry{fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: timestamppb.New(t0), Offers: []*agorav1.Offer{{Id: "o1", FrameworkId: "f1", AgentId: "a1", Role: "*",
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1}, {Name: "mem", Scalar: 128}}, CreatedAt: timestamppb.New(t0), ExpiresAt: timestamppb.New(t0.Add(time.Minute))}}}},
		logEntry{fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f1", OfferIds: []string{"o1"}, Now: timestamppb.New(t0), Operations: []*agorav1.Operation{{
			Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{{TaskId: "t1", Name: "t1", AgentId: "a1",
				Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1}}, Command: &agorav1.CommandInfo{Value: "sleep 30"}}}}}}},
		logEntry{fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: "a1", Now: timestamppb.New(t0), Statuses: []*agorav1.TaskStatus{{
			TaskId: "t1", FrameworkId: "f1", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u-running"}}}},
	)
	for i, e := range entries {
		res, err := f.ApplyMessage(uint64(i+1), e.t, e.m)
		if err != nil || res.Err != nil {
			t.Fatalf("entry %d: %v %v", i+1, err, res.Err)
		}
	}
	live := map[string]bool{"f1": true}
	if v := Delivery(f.State(), map[string]map[string]bool{"f1": {"u-running": true}}, live); len(v) != 0 {
		t.Fatalf("false positive: %v", v)
	}
	// Planted: the framework only saw an older update.
	v := Delivery(f.State(), map[string]map[string]bool{"f1": {"u-staging": true}}, live)
	if len(v) != 1 || v[0].Checker != "delivery" {
		t.Fatalf("undelivered status not caught: %v", v)
	}
	if v := Delivery(f.State(), nil, map[string]bool{}); len(v) != 0 {
		t.Fatalf("dead framework checked: %v", v)
	}
}

func TestReplayKeepsStateAtCut(t *testing.T) {
	dir := writeLog(t, scenario(time.Unix(1000, 0), 2*time.Hour))
	res, err := Replay(dir, ReplayOptions{At: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.AtState == nil || res.AtState.Index() != 3 || len(res.AtState.Offers()) != 1 {
		t.Fatalf("state at the cut: %+v", res.AtState)
	}
	if res.Final.Index() != 6 || len(res.Final.Offers()) != 0 {
		t.Fatalf("final state: index %d, %d offers", res.Final.Index(), len(res.Final.Offers()))
	}
	if res, _ := Replay(dir, ReplayOptions{}); res.AtState != nil {
		t.Fatal("AtState kept without a cut")
	}
}
