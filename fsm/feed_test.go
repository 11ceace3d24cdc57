package fsm

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// assignmentOf is everything an agent's GetAssignments answer is read
// from, compared by identity (the brute-force reference of the feed).
type assignmentOf struct {
	agent *agorav1.Agent
	epoch any
	tasks []*agorav1.Task
	vols  []*agorav1.Volume
}

func readAssignment(s *State, id string) assignmentOf {
	a, _ := s.Agent(id)
	return assignmentOf{agent: a, epoch: s.AgentTasksVersion(id), tasks: s.TasksByAgent(id), vols: s.VolumesByAgent(id)}
}

func (a assignmentOf) equal(b assignmentOf) bool {
	return a.agent == b.agent && a.epoch == b.epoch && slices.Equal(a.tasks, b.tasks) && slices.Equal(a.vols, b.vols)
}

// changedAgents compares every agent's assignment in two states.
func changedAgents(a, b *State) []string {
	ids := map[string]bool{}
	for _, s := range []*State{a, b} {
		for _, ag := range s.Agents() {
			ids[ag.GetId()] = true
		}
		for _, t := range s.Tasks() {
			ids[t.GetAgentId()] = true
		}
		for _, v := range s.Volumes() {
			ids[v.GetAgentId()] = true
		}
	}
	for _, id := range genAgents {
		ids[id] = true
	}
	var out []string
	for id := range ids {
		if !readAssignment(a, id).equal(readAssignment(b, id)) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// liveAssignment is what an agent is asked to do (brute force): its live
// tasks without their state, status and acknowledgement.
func liveAssignment(s *State, id string) []*agorav1.Task {
	var out []*agorav1.Task
	for _, t := range s.TasksByAgent(id) {
		if IsTerminal(t.GetState()) {
			continue
		}
		c := proto.Clone(t).(*agorav1.Task)
		c.State, c.Status, c.Acknowledged = 0, nil, false
		out = append(out, c)
	}
	return out
}

// assignmentMissed returns the agents whose live assignment differs
// between before and after (brute force) while AgentAssignmentVersion
// says it does not.
func assignmentMissed(before, after *State) []string {
	var out []string
	for _, id := range changedAgents(before, after) {
		if before.AgentAssignmentVersion(id) != after.AgentAssignmentVersion(id) {
			continue
		}
		a, b := liveAssignment(before, id), liveAssignment(after, id)
		if !slices.EqualFunc(a, b, func(x, y *agorav1.Task) bool { return proto.Equal(x, y) }) {
			out = append(out, id)
		}
	}
	return out
}

// feedMissed returns the agents whose assignment differs between before
// and after (brute force) that the feed of after does not name.
func feedMissed(before, after *State) []string {
	touched, all := after.TouchedAgents()
	if all {
		return nil
	}
	var out []string
	for _, id := range changedAgents(before, after) {
		if !slices.Contains(touched, id) {
			out = append(out, id)
		}
	}
	return out
}

// batched sometimes wraps a generated command into a batch entry of one
// or two items (the second a copy, often rejected: a rolled-back item).
func batched(rt *rapid.T, typ CommandType, m proto.Message) (CommandType, proto.Message) {
	if !rapid.Bool().Draw(rt, "batch") {
		return typ, m
	}
	two := rapid.Bool().Draw(rt, "two")
	switch c := m.(type) {
	case *agorav1.StatusUpdateCommand:
		b := &agorav1.StatusUpdateBatchCommand{Updates: []*agorav1.StatusUpdateCommand{c}}
		if two {
			b.Updates = append(b.Updates, proto.Clone(c).(*agorav1.StatusUpdateCommand))
		}
		return CmdStatusUpdateBatch, b
	case *agorav1.AcknowledgeCommand:
		b := &agorav1.AcknowledgeBatchCommand{Acks: []*agorav1.AcknowledgeCommand{c}}
		if two {
			b.Acks = append(b.Acks, proto.Clone(c).(*agorav1.AcknowledgeCommand))
		}
		return CmdAcknowledgeBatch, b
	}
	if !Batchable(typ) {
		return typ, m
	}
	it, err := NewBatchItem(typ, m)
	if err != nil {
		rt.Fatalf("batch item: %v", err)
	}
	b := &agorav1.BatchCommand{Items: []*agorav1.BatchItem{it}}
	if two {
		b.Items = append(b.Items, proto.Clone(it).(*agorav1.BatchItem))
	}
	return CmdBatch, b
}

// feedPrelude registers every agent of the generator, with roles and
// connected frameworks, so that the random commands after it launch,
// kill and end tasks and create volumes often. It returns the last index.
func feedPrelude(rt *rapid.T, f *FSM) uint64 {
	var index uint64
	apply := func(typ CommandType, m proto.Message) {
		index++
		res, err := f.ApplyMessage(index, typ, m)
		if err != nil || res.Err != nil {
			rt.Fatalf("prelude %s: %v %v", typ, err, res.Err)
		}
	}
	now := &timestamppb.Timestamp{Seconds: 100}
	for _, r := range []string{"web", "db"} {
		apply(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: r, Weight: 1}})
	}
	for _, a := range genAgents {
		apply(CmdRegisterAgent, &agorav1.RegisterAgentCommand{Agent: &agorav1.Agent{Id: a, Hostname: "h-" + a, Address: "x:1",
			Resources: resourcepb.ToProto("", resources.MustParse("cpus:8;mem:4096;disk:2000;ports:[1000-1009]"))}, Now: now})
	}
	for _, fw := range genFrameworks {
		apply(CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: now, Framework: &agorav1.Framework{Id: fw, StreamToken: "s0",
			Info: &agorav1.FrameworkInfo{Name: "n", Principal: "p", Roles: []string{"web", "db"}, FailoverTimeoutSeconds: 50}}})
	}
	return index
}

// TestPropertyFeedNamesEveryChangedAgent drives random logs (every command
// kind of the property generator: launches, status updates, kills,
// preemption, drains, unreachable and gone agents, volume creation and
// destruction, acknowledgements; single and batched, applied and
// rejected) and checks after every entry that each agent whose
// assignment differs from the state before (brute force over all agents)
// is named by the feed, for the one entry and for a window of the last
// few entries.
func TestPropertyFeedNamesEveryChangedAgent(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := New(Config{})
		g := &gen{t: rt, now: 100}
		index := feedPrelude(rt, f)
		n := rapid.IntRange(1, 120).Draw(rt, "len")
		var history []*State
		history = append(history, f.State())
		for range n {
			index++
			i := int(index - 1)
			typ, m := g.command(f.State())
			typ, m = batched(rt, typ, m)
			if _, err := f.ApplyMessage(index, typ, m); err != nil {
				rt.Fatalf("encode %s: %v", typ, err)
			}
			prev, cur := history[len(history)-1], f.State()
			history = append(history, cur)
			touched, all := cur.TouchedAgents()
			if all {
				rt.Fatalf("entry %d (%s): the feed names every agent", i+1, typ)
			}
			if missed := assignmentMissed(prev, cur); len(missed) > 0 {
				rt.Fatalf("entry %d (%s): the live tasks of %v changed but not their AgentAssignmentVersion", i+1, typ, missed)
			}
			for _, id := range changedAgents(prev, cur) {
				if !slices.Contains(touched, id) {
					rt.Fatalf("entry %d (%s): agent %s changed but the feed names only %v", i+1, typ, id, touched)
				}
			}
			back := rapid.IntRange(0, min(len(history)-1, 6)).Draw(rt, "back")
			from := history[len(history)-1-back]
			since := map[string]bool{}
			if !cur.TouchedSince(from.FeedPos(), func(id string) { since[id] = true }) {
				rt.Fatalf("entry %d: TouchedSince %d states back cannot tell", i+1, back)
			}
			for _, id := range changedAgents(from, cur) {
				if !since[id] {
					rt.Fatalf("entry %d: agent %s changed in the last %d entries but TouchedSince names only %v", i+1, id, back, since)
				}
			}
		}
	})
}

// TestFeedCannotTell: positions the feed cannot relate to a state say so
// (the caller then checks every agent).
func TestFeedCannotTell(t *testing.T) {
	h := newHarness(t)
	h.apply(CmdRegisterAgent, &agorav1.RegisterAgentCommand{Agent: &agorav1.Agent{Id: "a0", Hostname: "h", Address: "x:1",
		Resources: resourcepb.ToProto("", resources.MustParse("cpus:4;mem:1024"))}, Now: &timestamppb.Timestamp{Seconds: 1}})
	s1 := h.f.State()
	if touched, all := s1.TouchedAgents(); all || !slices.Equal(touched, []string{"a0"}) {
		t.Fatalf("registration touched %v (all %v), want [a0]", touched, all)
	}
	if s1.TouchedSince(FeedPos{}, func(string) {}) {
		t.Fatal("TouchedSince from the zero position claims to know")
	}
	// A later state is not before an earlier one.
	h.apply(CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: "a0", Now: &timestamppb.Timestamp{Seconds: 2}})
	s2 := h.f.State()
	if s1.TouchedSince(s2.FeedPos(), func(string) {}) {
		t.Fatal("TouchedSince from a later state claims to know")
	}
	// A restore names every agent.
	var b bytes.Buffer
	if err := s2.Persist(&b); err != nil {
		t.Fatal(err)
	}
	if err := h.f.Restore(nopCloser{bytes.NewReader(b.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if _, all := h.f.State().TouchedAgents(); !all {
		t.Fatal("a restored state does not name every agent")
	}
	if h.f.State().TouchedSince(s2.FeedPos(), func(string) {}) {
		t.Fatal("TouchedSince across a restore claims to know")
	}
	// A rejected entry names nobody.
	s3 := h.f.State()
	h.apply(CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: "nobody", Now: &timestamppb.Timestamp{Seconds: 3}})
	if touched, all := h.f.State().TouchedAgents(); all || len(touched) != 0 {
		t.Fatalf("a rejected entry touched %v (all %v)", touched, all)
	}
	var named []string
	if !h.f.State().TouchedSince(s3.FeedPos(), func(id string) { named = append(named, id) }) || len(named) != 0 {
		t.Fatalf("TouchedSince over a rejected entry: %v", named)
	}
}
