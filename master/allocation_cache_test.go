package master

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/allocator"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// try applies a command that the state may reject (a random step): only
// a failure to decode or apply at all fails the test.
func (x *watchFixture) try(typ fsm.CommandType, m proto.Message) {
	x.tb.Helper()
	x.index++
	if _, err := x.f.ApplyMessage(x.index, typ, m); err != nil {
		x.tb.Fatalf("%s: %v", typ, err)
	}
}

// TestSnapshotCacheEqualsFreshSnapshot: after every random step (offers
// made, accepted with launches and reservations, declined with and
// without a filter, rescinded; tasks killed and ended, reported RUNNING;
// agents drained, undrained, unreachable, re-registered, gone; several
// steps between two rounds) the snapshot built through the cache kept
// across rounds equals one built from scratch.
func TestSnapshotCacheEqualsFreshSnapshot(t *testing.T) {
	const agents = 24
	x := newWatchFixture(t, agents, 3*agents)
	x.try(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "web", Weight: 1}})
	rng := rand.New(rand.NewPCG(13, 2026))
	base := time.Unix(2_000_000_000, 0)
	cache := &snapCache{}
	ids := 0
	newID := func() string { ids++; return fmt.Sprintf("id-%06d", ids) }
	res := func(role, spec string) []*agorav1.Resource {
		return resourcepb.ToProto(role, resources.MustParse(spec))
	}
	agent := func() string { return fsm.SyntheticAgentID(rng.IntN(agents + 2)) } // two never registered
	reused := 0
	for step := range 600 {
		now := base.Add(time.Duration(step) * time.Second)
		ts := timestamppb.New(now)
		st := x.f.State()
		var offerIDs, liveTasks []string
		for _, o := range st.Offers() {
			offerIDs = append(offerIDs, o.GetId())
		}
		for _, tk := range st.Tasks() {
			if !fsm.IsTerminal(tk.GetState()) {
				liveTasks = append(liveTasks, tk.GetId())
			}
		}
		pick := func(s []string) string {
			if len(s) == 0 {
				return "none"
			}
			return s[rng.IntN(len(s))]
		}
		for range 1 + rng.IntN(3) {
			switch rng.IntN(12) {
			case 0, 1:
				if cmd, _ := allocationRound(x.f.State(), now, time.Minute, newID, allocator.Allocate, nil); cmd != nil {
					x.try(fsm.CmdOffersCreated, cmd)
				}
			case 2, 3:
				oid := pick(offerIDs)
				ops := []*agorav1.Operation{{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{{
					TaskId: newID(), Resources: res("", "cpus:0.5;mem:512"), Command: &agorav1.CommandInfo{Value: "x"}}}}}
				var fresh []string
				if rng.IntN(3) == 0 {
					ops = append(ops, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: res("web", "cpus:1;mem:1024")})
					fresh = []string{newID()}
				}
				x.try(fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "fw-1", OfferIds: []string{oid}, Operations: ops, Now: ts, Ids: fresh})
			case 4:
				cmd := &agorav1.DeclineCommand{FrameworkId: "fw-1", OfferIds: []string{pick(offerIDs)}}
				if rng.IntN(2) == 0 {
					cmd.RefuseUntil = timestamppb.New(now.Add(time.Duration(rng.IntN(5)) * time.Second))
				}
				x.try(fsm.CmdDecline, cmd)
			case 5:
				x.try(fsm.CmdRescindOffers, &agorav1.RescindOffersCommand{OfferIds: []string{pick(offerIDs)}, Reason: "test"})
			case 6:
				tid := pick(liveTasks)
				x.try(fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw-1", TaskId: tid, Now: ts})
				if tk, ok := x.f.State().Task("fw-1", tid); ok {
					x.try(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: tk.GetAgentId(), Now: ts, Statuses: []*agorav1.TaskStatus{{
						TaskId: tid, FrameworkId: "fw-1", AgentId: tk.GetAgentId(), State: agorav1.TaskState_TASK_STATE_KILLED,
						Uuid: newID(), Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}}})
				}
			case 7:
				tid := pick(liveTasks)
				if tk, ok := x.f.State().Task("fw-1", tid); ok {
					x.try(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: tk.GetAgentId(), Now: ts, Statuses: []*agorav1.TaskStatus{{
						TaskId: tid, FrameworkId: "fw-1", AgentId: tk.GetAgentId(), State: agorav1.TaskState_TASK_STATE_RUNNING,
						Uuid: newID(), Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}}})
				}
			case 8:
				if rng.IntN(2) == 0 {
					x.try(fsm.CmdDrainAgent, &agorav1.DrainAgentCommand{AgentId: agent(), Now: ts})
				} else {
					x.try(fsm.CmdUndrainAgent, &agorav1.UndrainAgentCommand{AgentId: agent()})
				}
			case 9:
				x.try(fsm.CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: agent(), Now: ts})
			case 10:
				id := agent()
				spec := "cpus:64;mem:262144;disk:1000000;ports:[31000-32000]"
				if rng.IntN(3) == 0 {
					spec = "cpus:32;mem:131072"
				}
				x.try(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Agent: &agorav1.Agent{Id: id, Hostname: "h-" + id, Address: id + ":5051",
					Resources: res("", spec)}, Now: ts})
			case 11:
				if rng.IntN(4) == 0 {
					x.try(fsm.CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: agent(), Now: ts})
				}
			}
		}
		st = x.f.State()
		prev := cache.order
		prevUsage := map[string]any{}
		for _, e := range prev {
			prevUsage[e.ag.ID] = e.usage
		}
		got, gotNext := buildSnapshotCached(st, now, cache)
		want, wantNext := buildSnapshot(st, now)
		if !reflect.DeepEqual(got, want) || !gotNext.Equal(wantNext) {
			t.Fatalf("step %d: cached snapshot differs from a fresh one:\ncached %+v (next %v)\nfresh  %+v (next %v)", step, got, gotNext, want, wantNext)
		}
		for _, e := range cache.order {
			if u, ok := prevUsage[e.ag.ID]; ok && u == e.usage {
				reused++
			}
		}
	}
	if reused == 0 {
		t.Fatal("the cache never reused an agent: the test exercises nothing")
	}
}

// TestSnapshotCacheConvertsOnlyChangedAgents: a round after a task ends on
// one agent shares every other agent's free pools with the previous
// round's snapshot (the same maps, not clones) and rebuilds that agent's.
func TestSnapshotCacheConvertsOnlyChangedAgents(t *testing.T) {
	const agents = 10
	x := newWatchFixture(t, agents, 2*agents)
	now := time.Unix(2_000_000_000, 0)
	cache := &snapCache{}
	first, _ := buildSnapshotCached(x.f.State(), now, cache)
	if len(first.Agents) != agents {
		t.Fatalf("%d agents in the snapshot, want %d", len(first.Agents), agents)
	}
	changed := taskOn(3)
	x.apply(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: changed, Now: timestamppb.New(now), Statuses: []*agorav1.TaskStatus{{
		TaskId: fmtTask(3), FrameworkId: "fw-1", AgentId: changed, State: agorav1.TaskState_TASK_STATE_FINISHED,
		Uuid: "u-3", Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}}})
	second, _ := buildSnapshotCached(x.f.State(), now, cache)
	fresh, _ := buildSnapshot(x.f.State(), now)
	if !reflect.DeepEqual(second, fresh) {
		t.Fatalf("cached snapshot %+v differs from fresh %+v", second, fresh)
	}
	for i, a := range second.Agents {
		same := reflect.ValueOf(a.Unreserved.Scalars).Pointer() == reflect.ValueOf(first.Agents[i].Unreserved.Scalars).Pointer()
		if a.ID == changed {
			if same || a.Unreserved.Equal(first.Agents[i].Unreserved) {
				t.Fatalf("%s: free pool not rebuilt after its task ended (%s)", a.ID, a.Unreserved)
			}
			continue
		}
		if !same {
			t.Fatalf("%s: free pool converted again though its accounting did not change", a.ID)
		}
	}
}

// BenchmarkBuildSnapshot is the allocation round's snapshot of 10,000
// agents after a task ended on one of them: "cached" through the cache
// kept across rounds (the leader's), "fresh" converting every agent.
func BenchmarkBuildSnapshot(b *testing.B) {
	for _, mode := range []string{"cached", "fresh"} {
		b.Run(mode, func(b *testing.B) {
			const agents = 10_000
			x := newWatchFixture(b, agents, 10*agents)
			now := time.Unix(2_000_000_000, 0)
			var cache *snapCache
			if mode == "cached" {
				cache = &snapCache{}
			}
			buildSnapshotCached(x.f.State(), now, cache)
			x.apply(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: taskOn(3), Now: timestamppb.New(now), Statuses: []*agorav1.TaskStatus{{
				TaskId: fmtTask(3), FrameworkId: "fw-1", AgentId: taskOn(3), State: agorav1.TaskState_TASK_STATE_FINISHED,
				Uuid: "u-3", Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}}})
			st := x.f.State()
			b.ReportAllocs()
			for b.Loop() {
				if snap, _ := buildSnapshotCached(st, now, cache); len(snap.Agents) != agents {
					b.Fatalf("%d agents", len(snap.Agents))
				}
			}
		})
	}
}
