package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// gen draws commands that are mostly meaningful for the current state (so
// accepts and launches happen) and sometimes wrong (so rejections happen).
type gen struct {
	t   *rapid.T
	now int64
	seq int
}

var (
	genAgents     = []string{"a0", "a1", "a2", "a3"}
	genFrameworks = []string{"f0", "f1", "f2"}
	genRoles      = []string{"web", "db", "*"}
	genTasks      = []string{"t0", "t1", "t2", "t3", "t4", "t5"}
	genVolumes    = []string{"v0", "v1", "v2"}
	genUUIDs      = []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"}
)

func (g *gen) pick(label string, xs []string) string {
	return rapid.SampledFrom(xs).Draw(g.t, label)
}

func (g *gen) ts() *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: g.now} }

func (g *gen) later(label string) *timestamppb.Timestamp {
	return &timestamppb.Timestamp{Seconds: g.now + 60 - int64(rapid.IntRange(0, 65).Draw(g.t, label))}
}

func (g *gen) id(prefix string) string {
	g.seq++
	return fmt.Sprintf("%s%d", prefix, g.seq)
}

// portion draws a random part of r: each scalar a multiple of a quarter,
// the lowest few values of each range.
func (g *gen) portion(label string, r resources.Resources) resources.Resources {
	var out resources.Resources
	for _, n := range r.Names() {
		k := rapid.IntRange(0, 4).Draw(g.t, label+"-"+n)
		out = out.Add(resources.Milli(n, r.Milli(n)*int64(k)/4))
	}
	names := make([]string, 0, len(r.Ranges))
	for n := range r.Ranges {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		k := rapid.IntRange(0, 2).Draw(g.t, label+"-"+n)
		if vals, ok := r.PickRanges(n, k); ok {
			out = out.Add(resources.ValuesToRanges(n, vals))
		}
	}
	return out
}

// kindOrder lists the command kinds below, the common ones first and
// repeated (rapid favours early elements).
var kindOrder = []int{14, 16, 10, 4, 8, 20, 15, 17, 9, 5, 21, 6, 7, 13, 11, 12, 18, 19, 0, 1, 2, 3, 14, 16, 8, 16, 22, 23, 24, 25, 26, 27, 28, 28}

// live returns an id of an existing object matching ok, or one of ids.
func (g *gen) live(label string, ids []string, have []string) string {
	if len(have) > 0 && rapid.IntRange(0, 5).Draw(g.t, label+"-live") > 0 {
		return rapid.SampledFrom(have).Draw(g.t, label)
	}
	return g.pick(label, ids)
}

func connected(s *State) []string {
	var out []string
	for _, f := range s.Frameworks() {
		if f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
			out = append(out, f.GetId())
		}
	}
	return out
}

func active(s *State) []string {
	var out []string
	for _, a := range s.Agents() {
		if a.GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE {
			out = append(out, a.GetId())
		}
	}
	return out
}

func (g *gen) command(s *State) (CommandType, proto.Message) {
	g.now += int64(rapid.IntRange(0, 10).Draw(g.t, "tick"))
	switch rapid.SampledFrom(kindOrder).Draw(g.t, "kind") {
	case 0:
		return CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{
			Name:     g.pick("role", append([]string{"Bad"}, genRoles...)),
			Weight:   float64(rapid.IntRange(-1, 3).Draw(g.t, "weight")),
			Priority: int32(rapid.IntRange(0, 2).Draw(g.t, "priority")),
		}}
	case 1:
		return CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: g.pick("role", genRoles)}
	case 2:
		return CmdUpsertMaster, &agorav1.UpsertMasterCommand{Master: &agorav1.Master{Id: g.pick("master", []string{"", "m0", "m1"}), RaftAddress: g.id("addr")}}
	case 3:
		return CmdRemoveMaster, &agorav1.RemoveMasterCommand{Id: g.pick("master", []string{"m0", "m1"})}
	case 4, 5:
		a := g.pick("agent", genAgents)
		spec := fmt.Sprintf("cpus:%d;mem:%d;disk:%d;ports:[1000-%d]", rapid.IntRange(0, 8).Draw(g.t, "cpus"),
			rapid.IntRange(0, 4).Draw(g.t, "mem")*1024, rapid.IntRange(0, 2).Draw(g.t, "disk")*1000, 1000+rapid.IntRange(0, 9).Draw(g.t, "ports"))
		cmd := &agorav1.RegisterAgentCommand{
			Agent: &agorav1.Agent{Id: a, Hostname: "h-" + a, Address: g.pick("address", []string{"x:1", "x:2"}),
				Resources: resourcepb.ToProto("", resources.MustParse(spec))},
			Now: g.ts(),
		}
		for _, t := range s.TasksByAgent(a) {
			if rapid.Bool().Draw(g.t, "report") {
				cmd.Tasks = append(cmd.Tasks, &agorav1.TaskStatus{TaskId: t.GetId(), FrameworkId: t.GetFrameworkId(),
					State: agorav1.TaskState(rapid.IntRange(1, 14).Draw(g.t, "state")), Uuid: g.pick("uuid", append([]string{""}, genUUIDs...))})
			}
		}
		return CmdRegisterAgent, cmd
	case 22:
		return CmdAgentStopped, &agorav1.AgentStoppedCommand{AgentId: g.pick("agent", genAgents), Now: g.ts(),
			Decommission: rapid.IntRange(0, 3).Draw(g.t, "decommission") == 0}
	case 23:
		cmd := &agorav1.DrainAgentCommand{AgentId: g.pick("agent", genAgents), Now: g.ts()}
		if rapid.Bool().Draw(g.t, "deadline") {
			cmd.Deadline = &timestamppb.Timestamp{Seconds: g.now + int64(rapid.IntRange(-2, 20).Draw(g.t, "drain-for"))}
		}
		return CmdDrainAgent, cmd
	case 24:
		return CmdUndrainAgent, &agorav1.UndrainAgentCommand{AgentId: g.pick("agent", genAgents), Now: g.ts()}
	case 25:
		return CmdDrainDeadline, &agorav1.DrainDeadlineCommand{AgentId: g.pick("agent", genAgents), Now: g.ts()}
	case 26:
		return CmdAnswerInverseOffer, &agorav1.AnswerInverseOfferCommand{FrameworkId: g.pick("fw", genFrameworks),
			AgentId: g.pick("agent", genAgents), Accept: rapid.Bool().Draw(g.t, "accept"), Now: g.ts()}
	case 6:
		return CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: g.pick("agent", genAgents), Now: g.ts()}
	case 7:
		if rapid.IntRange(0, 3).Draw(g.t, "gone") > 0 {
			return CmdExpire, &agorav1.ExpireCommand{Now: g.ts()}
		}
		return CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: g.pick("agent", genAgents), Now: g.ts()}
	case 8, 9:
		tasks := s.Tasks()
		cmd := &agorav1.StatusUpdateCommand{AgentId: g.pick("agent", genAgents), Now: g.ts()}
		if len(tasks) > 0 {
			for range rapid.IntRange(1, 2).Draw(g.t, "n") {
				t := rapid.SampledFrom(tasks).Draw(g.t, "task")
				if rapid.IntRange(0, 4).Draw(g.t, "right-agent") > 0 {
					cmd.AgentId = t.GetAgentId()
				}
				cmd.Statuses = append(cmd.Statuses, &agorav1.TaskStatus{TaskId: t.GetId(), FrameworkId: t.GetFrameworkId(),
					State: agorav1.TaskState(rapid.IntRange(0, 14).Draw(g.t, "state")), Uuid: g.pick("uuid", append([]string{""}, genUUIDs...))})
			}
		}
		return CmdStatusUpdate, cmd
	case 10:
		f := g.pick("fw", genFrameworks)
		roles := rapid.SliceOfNDistinct(rapid.SampledFrom(genRoles), 0, 2, rapid.ID[string]).Draw(g.t, "roles")
		var caps []agorav1.Capability
		if rapid.Bool().Draw(g.t, "aware") {
			caps = append(caps, agorav1.Capability_CAPABILITY_PARTITION_AWARE)
		}
		if rapid.Bool().Draw(g.t, "revocable-capable") {
			caps = append(caps, agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES)
		}
		return CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: g.ts(), Framework: &agorav1.Framework{
			Id: f, StreamToken: g.pick("token", []string{"s0", "s1"}),
			Info: &agorav1.FrameworkInfo{Name: "n", Principal: g.pick("principal", []string{"p", "q"}), Roles: roles, Capabilities: caps,
				FailoverTimeoutSeconds: float64(rapid.IntRange(0, 100).Draw(g.t, "failover") - rapid.IntRange(0, 1).Draw(g.t, "bad-failover"))},
		}}
	case 11:
		return CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{FrameworkId: g.pick("fw", genFrameworks),
			StreamToken: g.pick("token", []string{"s0", "s1"}), Now: g.ts()}
	case 12:
		roles := rapid.SliceOfNDistinct(rapid.SampledFrom(genRoles), 0, 2, rapid.ID[string]).Draw(g.t, "roles")
		return CmdUpdateFramework, &agorav1.UpdateFrameworkCommand{Now: g.ts(), Info: &agorav1.FrameworkInfo{
			Id: g.pick("fw", genFrameworks), Name: "n2", Roles: roles}}
	case 13:
		return CmdTeardownFramework, &agorav1.TeardownFrameworkCommand{FrameworkId: g.pick("fw", genFrameworks), Now: g.ts()}
	case 14, 15:
		cmd := &agorav1.OffersCreatedCommand{Now: g.ts()}
		for range rapid.IntRange(1, 3).Draw(g.t, "offers") {
			f := g.live("fw", genFrameworks, connected(s))
			a := g.live("agent", genAgents, active(s))
			role := "web"
			if fw, ok := s.Framework(f); ok && len(fw.GetInfo().GetRoles()) > 0 {
				role = rapid.SampledFrom(fw.GetInfo().GetRoles()).Draw(g.t, "role")
			}
			free := s.AgentUsage(a).Free
			p := resourcepb.Pools{"": g.portion("unreserved", free[""])}
			if role != "*" {
				p[role] = g.portion("reserved", free[role])
			}
			cmd.Offers = append(cmd.Offers, &agorav1.Offer{Id: g.id("o"), FrameworkId: f, AgentId: a, Role: role,
				Resources: p.ToProto(), ExpiresAt: g.later("expires"), Revocable: rapid.Bool().Draw(g.t, "revocable")})
		}
		return CmdOffersCreated, cmd
	case 16, 17:
		offers := s.Offers()
		if len(offers) == 0 {
			return CmdExpire, &agorav1.ExpireCommand{Now: g.ts()}
		}
		o := rapid.SampledFrom(offers).Draw(g.t, "offer")
		if rapid.IntRange(0, 3).Draw(g.t, "decline") == 0 {
			return CmdDecline, &agorav1.DeclineCommand{FrameworkId: o.GetFrameworkId(), OfferIds: []string{o.GetId()}, RefuseUntil: g.later("refuse")}
		}
		return CmdAccept, g.accept(s, o)
	case 18:
		offers := s.Offers()
		ids := []string{"nope"}
		if len(offers) > 0 {
			ids = append(ids, rapid.SampledFrom(offers).Draw(g.t, "offer").GetId())
		}
		return CmdRescindOffers, &agorav1.RescindOffersCommand{OfferIds: ids, Reason: "test"}
	case 19:
		roles := rapid.SliceOfNDistinct(rapid.SampledFrom(genRoles), 0, 1, rapid.ID[string]).Draw(g.t, "roles")
		if rapid.Bool().Draw(g.t, "revive") {
			return CmdRevive, &agorav1.ReviveCommand{FrameworkId: g.pick("fw", genFrameworks), Roles: roles}
		}
		return CmdSuppress, &agorav1.SuppressCommand{FrameworkId: g.pick("fw", genFrameworks), Roles: roles}
	case 27:
		f := g.live("fw", genFrameworks, connected(s))
		var ds []*agorav1.Demand
		for range rapid.IntRange(0, 2).Draw(g.t, "demands") {
			ds = append(ds, &agorav1.Demand{Role: g.pick("role", append([]string{"*"}, genRoles...)),
				Count:     uint32(rapid.IntRange(0, 3).Draw(g.t, "count")),
				Resources: []*agorav1.Resource{{Name: "cpus", Scalar: float64(rapid.IntRange(-1, 4).Draw(g.t, "cpus"))}}})
		}
		return CmdSetDemand, &agorav1.SetDemandCommand{FrameworkId: f, Demand: ds}
	case 28:
		// A decision over random live tasks: most are refused (not
		// revocable, wrong priority, no demand), some apply.
		tasks := s.Tasks()
		f := g.live("fw", genFrameworks, connected(s))
		role := g.pick("role", append([]string{"*"}, genRoles...))
		if fw, ok := s.Framework(f); ok && len(fw.GetDemand()) > 0 {
			role = fw.GetDemand()[0].GetRole()
		}
		p := &agorav1.Preemption{Id: g.id("p"), FrameworkId: f, Role: role, Priority: s.RolePriority(role) + int32(rapid.IntRange(0, 1).Draw(g.t, "bad-prio")),
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1}}, DecidedAt: g.ts(), Deadline: g.later("deadline"), WindowSeconds: 1}
		if len(tasks) > 0 {
			t := rapid.SampledFrom(tasks).Draw(g.t, "victim")
			p.AgentId = t.GetAgentId()
			p.Victims = []*agorav1.TaskRef{{FrameworkId: t.GetFrameworkId(), TaskId: t.GetId()}}
		}
		return CmdPreempt, &agorav1.PreemptCommand{Preemption: p}
	default:
		tasks := s.Tasks()
		if len(tasks) == 0 {
			return CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "f0", TaskId: "t0", Now: g.ts()}
		}
		t := rapid.SampledFrom(tasks).Draw(g.t, "task")
		fid := t.GetFrameworkId()
		if rapid.IntRange(0, 5).Draw(g.t, "other-fw") == 0 {
			fid = g.pick("fw", genFrameworks)
		}
		if rapid.Bool().Draw(g.t, "kill") {
			return CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: fid, TaskId: t.GetId(), Now: g.ts()}
		}
		uuid := t.GetStatus().GetUuid()
		if rapid.IntRange(0, 4).Draw(g.t, "bad-uuid") == 0 {
			uuid = g.pick("uuid", genUUIDs)
		}
		return CmdAcknowledge, &agorav1.AcknowledgeCommand{FrameworkId: fid, TaskId: t.GetId(), Uuid: uuid}
	}
}

func (g *gen) accept(s *State, o *agorav1.Offer) *agorav1.AcceptCommand {
	cmd := &agorav1.AcceptCommand{FrameworkId: o.GetFrameworkId(), OfferIds: []string{o.GetId()}, Now: g.ts(), RefuseUntil: g.later("refuse")}
	for _, other := range s.OffersByFramework(o.GetFrameworkId()) {
		if other.GetId() != o.GetId() && other.GetAgentId() == o.GetAgentId() && rapid.Bool().Draw(g.t, "more") {
			cmd.OfferIds = append(cmd.OfferIds, other.GetId())
		}
	}
	pool := pools(o.GetResources())
	role := o.GetRole()
	for range rapid.IntRange(1, 3).Draw(g.t, "ops") {
		op := &agorav1.Operation{}
		switch rapid.IntRange(0, 5).Draw(g.t, "op") {
		case 0, 1:
			op.Type = agorav1.OperationType_OPERATION_TYPE_LAUNCH
			for range rapid.IntRange(1, 2).Draw(g.t, "tasks") {
				p := resourcepb.Pools{"": g.portion("task", pool[""]), role: g.portion("task-r", pool[role])}
				op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: g.pick("tid", genTasks), Resources: p.ToProto(),
					Command: &agorav1.CommandInfo{Value: "x"}, VolumeIds: g.volumes(s, o.GetAgentId())})
			}
		case 2:
			op.Type = agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP
			op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: g.pick("tid", genTasks), Resources: resourcepb.ToProto("", g.portion("task", pool[""])),
				Command: &agorav1.CommandInfo{Value: "x"}})
		case 3:
			op.Type = agorav1.OperationType_OPERATION_TYPE_RESERVE
			op.Resources = resourcepb.ToProto(role, g.portion("reserve", pool[""]))
		case 4:
			op.Type = agorav1.OperationType_OPERATION_TYPE_UNRESERVE
			op.Resources = resourcepb.ToProto(role, g.portion("unreserve", pool[role]))
		default:
			v := &agorav1.VolumeInfo{Id: g.pick("vol", genVolumes), SizeMib: float64(rapid.IntRange(1, 3).Draw(g.t, "size") * 100), ContainerPath: "d", Role: role}
			op.Volumes = []*agorav1.VolumeInfo{v}
			op.Type = agorav1.OperationType_OPERATION_TYPE_CREATE
			if rapid.Bool().Draw(g.t, "destroy") {
				op.Type = agorav1.OperationType_OPERATION_TYPE_DESTROY
			}
		}
		cmd.Operations = append(cmd.Operations, op)
	}
	return cmd
}

// volumes draws no volume (mostly), or an id that may exist on the agent.
func (g *gen) volumes(s *State, agentID string) []string {
	if rapid.IntRange(0, 3).Draw(g.t, "use-volume") > 0 {
		return nil
	}
	var have []string
	for _, v := range s.VolumesByAgent(agentID) {
		have = append(have, v.GetId())
	}
	return []string{g.live("volume", genVolumes, have)}
}

func snapshotBytes(t tb, s *State) []byte {
	var b bytes.Buffer
	if err := s.Persist(&b); err != nil {
		t.Fatalf("persist: %v", err)
	}
	return b.Bytes()
}

// TestPropertyDeterminismAndRestore drives random logs through one FSM
// (checking invariants and no-change-on-rejection after every entry), then
// replays the log into a second FSM and into a third restored from a
// snapshot taken midway: all three must end with byte-equal snapshots.
func TestPropertyDeterminismAndRestore(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		h.t = rt
		g := &gen{t: rt, now: 100}
		n := rapid.IntRange(1, 80).Draw(rt, "len")
		cut := rapid.IntRange(0, n).Draw(rt, "cut")
		var log [][]byte
		var mid []byte
		accepted := 0
		for i := range n {
			if i == cut {
				mid = snapshotBytes(rt, h.f.State())
			}
			typ, m := g.command(h.f.State())
			b, err := Encode(typ, m)
			if err != nil {
				rt.Fatalf("encode: %v", err)
			}
			log = append(log, b)
			if res := h.apply(typ, m); res.Err == nil {
				accepted++
			}
		}
		if cut == n {
			mid = snapshotBytes(rt, h.f.State())
		}
		want := snapshotBytes(rt, h.f.State())

		replay := New(Config{})
		for i, b := range log {
			replay.ApplyCommand(uint64(i+1), b)
		}
		if got := snapshotBytes(rt, replay.State()); !bytes.Equal(got, want) {
			rt.Fatalf("replayed FSM differs:\n%s\nvs\n%s", dump(replay.State()), dump(h.f.State()))
		}

		restored := New(Config{})
		if err := restored.Restore(nopCloser{bytes.NewReader(mid)}); err != nil {
			rt.Fatalf("restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(rt, restored.State()), mid) {
			rt.Fatalf("re-snapshot after restore differs")
		}
		for i := cut; i < n; i++ {
			restored.ApplyCommand(uint64(i+1), log[i])
			if err := restored.State().CheckInvariants(); err != nil {
				rt.Fatalf("restored FSM at %d: %v", i+1, err)
			}
		}
		if got := snapshotBytes(rt, restored.State()); !bytes.Equal(got, want) {
			rt.Fatalf("restored-then-replayed FSM differs:\n%s\nvs\n%s", dump(restored.State()), dump(h.f.State()))
		}
	})
}
