package master

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/preempt"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
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
		checkDense(t, step, got)
		checkDense(t, step, want)
		if !reflect.DeepEqual(withoutDense(got), withoutDense(want)) {
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
	apply("agent with a new kind", fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: ts, Agent: &agorav1.Agent{
		Id: "agent-99999", Hostname: "agent-99999", Address: "10.9.9.9:5051", Resources: resourcepb.ToProto("", resources.MustParse("cpus:8;mem:1024;disk:100"))}})
	if !slices.Contains(cache.kinds, "disk") {
		t.Fatalf("kinds %v: no disk", cache.kinds)
	}
	apply("agent gone", fsm.CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: "agent-00007", Now: ts})
	if _, ok := cache.agents["agent-00007"]; ok {
		t.Fatal("a gone agent stays in the cache")
	}
	if len(cache.agents) != agents {
		t.Fatalf("cache holds %d agents, want %d", len(cache.agents), agents)
	}
}

// checkDense fails unless every agent of in has Dense vectors that agree
// with its maps over in.Kinds.
func checkDense(t *testing.T, step string, in preempt.Input) {
	t.Helper()
	for _, a := range in.Agents {
		dn := a.Dense
		if dn == nil {
			t.Fatalf("%s: agent %s has no dense vectors", step, a.ID)
		}
		if dn.Stride > len(in.Kinds) || len(dn.Total) != dn.Stride || len(dn.Free) != dn.Stride ||
			len(dn.Tasks) != dn.Stride*len(a.Tasks) || len(dn.Prios) != len(a.Tasks) || len(dn.Starts) != len(a.Tasks) {
			t.Fatalf("%s: agent %s: dense vectors of the wrong size: %+v", step, a.ID, dn)
		}
		agree := func(what string, v []int64, r resources.Resources) {
			t.Helper()
			back := resources.Resources{}
			for k, m := range v {
				if m != 0 {
					back = back.Add(resources.Milli(in.Kinds[k], m))
				}
			}
			if !back.Equal(r) {
				t.Fatalf("%s: agent %s: dense %s %v is %s, the map %s", step, a.ID, what, v, back, r)
			}
		}
		if !dn.Sorted || !slices.IsSortedFunc(a.Tasks, func(x, y preempt.Task) int {
			return cmp.Or(cmp.Compare(y.Priority, x.Priority), x.Started.Compare(y.Started),
				strings.Compare(x.FrameworkID, y.FrameworkID), strings.Compare(x.ID, y.ID))
		}) {
			t.Fatalf("%s: agent %s: tasks not in reprieve order", step, a.ID)
		}
		agree("total", dn.Total, a.Total)
		agree("free", dn.Free, a.Free)
		for i, tk := range a.Tasks {
			agree("task "+tk.ID, dn.Tasks[i*dn.Stride:(i+1)*dn.Stride], tk.Resources)
			if dn.Prios[i] != tk.Priority || dn.Starts[i] != tk.Started.UnixNano() {
				t.Fatalf("%s: agent %s: task %s: dense priority %d start %d, want %d %d", step, a.ID, tk.ID, dn.Prios[i], dn.Starts[i], tk.Priority, tk.Started.UnixNano())
			}
		}
	}
}

// withoutDense is in without its dense vectors (checked by checkDense):
// the kinds' order may differ between a cache and a fresh one.
func withoutDense(in preempt.Input) preempt.Input {
	out := in
	out.Kinds = nil
	out.Agents = slices.Clone(in.Agents)
	for i := range out.Agents {
		out.Agents[i].Dense = nil
	}
	return out
}
