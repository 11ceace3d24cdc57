package master

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestPreemptCacheMatchesFullInput: the leader's cached preemption input
// equals the input built from scratch after each kind of change that
// touches what it caches (a kill request, a task ending, a new task, a
// role's priority, an agent leaving), and reuses the agents that did not
// change.
func TestPreemptCacheMatchesFullInput(t *testing.T) {
	const agents = 20
	pb := newPreemptBuilder()
	if err := pb.build(agents, 3); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000+agents, 0)
	ts := timestamppb.New(now)
	cache := newPreemptCache()
	check := func(step string) {
		t.Helper()
		st := pb.f.State()
		got, want := cache.input(st, now), preemptInput(st, now)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: cached input differs from the full one:\n got %+v\nwant %+v", step, got, want)
		}
	}
	check("first pass")
	before := map[string]*cachedAgent{}
	for id, e := range cache.agents {
		before[id] = e
	}
	check("unchanged")
	for id, e := range cache.agents {
		if before[id] != e {
			t.Fatalf("unchanged state: agent %s converted again", id)
		}
	}

	apply := func(step string, ct fsm.CommandType, m proto.Message) {
		t.Helper()
		if err := pb.apply(ct, m); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		check(step)
	}
	apply("kill requested", fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "batch-0", TaskId: "t-3-0-1", Now: ts})
	if cache.agents["agent-00004"] != before["agent-00004"] {
		t.Fatal("a kill on agent-00003 converted agent-00004 again")
	}
	if cache.agents["agent-00003"] == before["agent-00003"] {
		t.Fatal("a kill on agent-00003 reused its stale entry")
	}
	apply("task finished", fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: "agent-00005", Now: ts, Statuses: []*agorav1.TaskStatus{{
		FrameworkId: "batch-1", TaskId: "t-5-1-0", State: agorav1.TaskState_TASK_STATE_FINISHED, Uuid: "0b0e5f4a-8a5e-4c4e-9f47-2a1e6f2d7c11", Timestamp: ts}}})
	apply("priority changed", fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "batch2", Weight: 1, Priority: 5}})
	apply("agent gone", fsm.CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: "agent-00007", Now: ts})
	if _, ok := cache.agents["agent-00007"]; ok {
		t.Fatal("a gone agent stays in the cache")
	}
	if len(cache.agents) != agents-1 {
		t.Fatalf("cache holds %d agents, want %d", len(cache.agents), agents-1)
	}
}
