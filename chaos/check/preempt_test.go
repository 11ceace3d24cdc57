package check

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestPreemptionsPlanted(t *testing.T) {
	batch := func(task string) PreemptVictim {
		return PreemptVictim{Task: task, Found: true, Revocable: true, Role: "batch", Priority: 0}
	}
	clean := PreemptDecision{ID: "p1", Framework: "hi", Role: "prod", Priority: 10, Victims: []PreemptVictim{batch("rev/b1"), batch("rev/b2")}}
	killed := func(task string, state agorav1.TaskState) *agorav1.TaskStatus {
		fw, id, _ := strings.Cut(task, "/")
		return &agorav1.TaskStatus{FrameworkId: fw, TaskId: id, State: state, Reason: fsm.KillReasonPreempted}
	}
	p := NewPreemptions(fsm.New(fsm.Config{}).State())
	if v := p.Decided(5, clean); len(v) != 0 {
		t.Fatalf("false positives on a clean decision: %v", v)
	}
	for _, task := range []string{"rev/b1", "rev/b2"} {
		for _, s := range []agorav1.TaskState{agorav1.TaskState_TASK_STATE_KILLING, agorav1.TaskState_TASK_STATE_KILLED} {
			if v := p.Killed(6, killed(task, s), nil); len(v) != 0 {
				t.Fatalf("false positive on a decided kill: %v", v)
			}
		}
	}
	// A status of another reason, of a task no decision names, is no
	// preemption.
	if v := p.Killed(7, &agorav1.TaskStatus{FrameworkId: "f", TaskId: "x", State: agorav1.TaskState_TASK_STATE_KILLED, Reason: "DRAINED"}, nil); len(v) != 0 {
		t.Fatalf("false positive on a drain kill: %v", v)
	}
	if p.Decisions != 1 || p.VictimCount != 2 || p.Kills != 2 {
		t.Fatalf("counts: %d decisions, %d victims, %d kills; want 1, 2, 2", p.Decisions, p.VictimCount, p.Kills)
	}

	plant := map[string]func(p *Preemptions) []Violation{
		"PREEMPTED kill without a decision": func(p *Preemptions) []Violation {
			v := p.Killed(9, killed("rev/b9", agorav1.TaskState_TASK_STATE_KILLING), nil)
			// The same task's KILLED adds nothing: one violation per task.
			return append(v, p.Killed(9, killed("rev/b9", agorav1.TaskState_TASK_STATE_KILLED), nil)...)
		},
		"kill_reason PREEMPTED without a decision": func(p *Preemptions) []Violation {
			st := &agorav1.TaskStatus{FrameworkId: "rev", TaskId: "b9", State: agorav1.TaskState_TASK_STATE_KILLING}
			return p.Killed(9, st, &agorav1.Task{Id: "b9", FrameworkId: "rev", KillReason: fsm.KillReasonPreempted})
		},
		"non-revocable victim": func(p *Preemptions) []Violation {
			v := batch("plain/n1")
			v.Revocable = false
			return p.Decided(9, PreemptDecision{ID: "p2", Role: "prod", Priority: 10, Victims: []PreemptVictim{v}})
		},
		"equal-priority victim": func(p *Preemptions) []Violation {
			v := batch("rev/b7")
			v.Role, v.Priority = "prod", 10
			return p.Decided(9, PreemptDecision{ID: "p2", Role: "prod", Priority: 10, Victims: []PreemptVictim{v}})
		},
		"higher-priority victim": func(p *Preemptions) []Violation {
			v := batch("rev/b7")
			v.Role, v.Priority = "gold", 20
			return p.Decided(9, PreemptDecision{ID: "p2", Role: "prod", Priority: 10, Victims: []PreemptVictim{v}})
		},
		"victim that does not exist": func(p *Preemptions) []Violation {
			return p.Decided(9, PreemptDecision{ID: "p2", Role: "prod", Priority: 10, Victims: []PreemptVictim{{Task: "rev/gone"}}})
		},
		"victim named in two decisions": func(p *Preemptions) []Violation {
			return p.Decided(9, PreemptDecision{ID: "p2", Role: "prod", Priority: 10, Victims: []PreemptVictim{batch("rev/b3"), batch("rev/b1")}})
		},
	}
	for name, f := range plant {
		p := NewPreemptions(fsm.New(fsm.Config{}).State())
		p.Decided(5, clean)
		v := f(p)
		if len(v) != 1 || v[0].Checker != "preemption" || !strings.Contains(v[0].Detail, "index 9") {
			t.Errorf("%s: planted violation not caught as one preemption violation: %v", name, v)
		}
	}
}

// preemptScenario: roles prod (10) and batch (0); "rev" (batch, revocable
// capability) runs b1 and b2 on a revocable offer, "plain" (batch, no
// capability) runs n1; "hi" (prod) demands room and the leader preempts b2,
// which the agent then reports KILLED.
func preemptScenario(t0 time.Time) []logEntry {
	ts := timestamppb.New
	res := func(c, m float64) []*agorav1.Resource {
		return []*agorav1.Resource{{Name: "cpus", Scalar: c}, {Name: "mem", Scalar: m}}
	}
	sub := func(id, role string, caps ...agorav1.Capability) logEntry {
		return logEntry{fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: ts(t0), Framework: &agorav1.Framework{Id: id, StreamToken: "s-" + id,
			Info: &agorav1.FrameworkInfo{Id: id, Name: id, Roles: []string{role}, FailoverTimeoutSeconds: 3600, Capabilities: caps}}}}
	}
	launch := func(ids ...string) []*agorav1.Operation {
		var ops []*agorav1.Operation
		for _, id := range ids {
			ops = append(ops, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{{TaskId: id,
				Resources: res(1, 512), Command: &agorav1.CommandInfo{Value: "sleep 100"}}}})
		}
		return ops
	}
	status := func(fw, task string, state agorav1.TaskState, uuid string) logEntry {
		return logEntry{fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: "a1", Now: ts(t0), Statuses: []*agorav1.TaskStatus{{
			TaskId: task, FrameworkId: fw, State: state, Uuid: uuid}}}}
	}
	return []logEntry{
		{fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "prod", Weight: 1, Priority: 10}}},
		{fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "batch", Weight: 1}}},
		{fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: ts(t0), Agent: &agorav1.Agent{Id: "a1", Hostname: "h1", Resources: res(3, 1536)}}},
		sub("rev", "batch", agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES),
		sub("plain", "batch"),
		sub("hi", "prod"),
		{fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: ts(t0), Offers: []*agorav1.Offer{
			{Id: "o1", FrameworkId: "rev", AgentId: "a1", Role: "batch", Resources: res(2, 1024), ExpiresAt: ts(t0.Add(time.Hour)), Revocable: true},
			{Id: "o2", FrameworkId: "plain", AgentId: "a1", Role: "batch", Resources: res(1, 512), ExpiresAt: ts(t0.Add(time.Hour))},
		}}},
		{fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "rev", OfferIds: []string{"o1"}, Now: ts(t0), Operations: launch("b1", "b2")}},
		{fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "plain", OfferIds: []string{"o2"}, Now: ts(t0), Operations: launch("n1")}},
		status("rev", "b1", agorav1.TaskState_TASK_STATE_RUNNING, "u1"),
		status("rev", "b2", agorav1.TaskState_TASK_STATE_RUNNING, "u2"),
		status("plain", "n1", agorav1.TaskState_TASK_STATE_RUNNING, "u3"),
		{fsm.CmdSetDemand, &agorav1.SetDemandCommand{FrameworkId: "hi", Demand: []*agorav1.Demand{{Role: "prod", Resources: res(1, 512), Count: 1}}}},
		{fsm.CmdPreempt, &agorav1.PreemptCommand{StatusUuids: []string{"k2"}, Preemption: &agorav1.Preemption{Id: "p1", FrameworkId: "hi", Role: "prod", Priority: 10,
			AgentId: "a1", Resources: res(1, 512), Victims: []*agorav1.TaskRef{{FrameworkId: "rev", TaskId: "b2"}},
			DecidedAt: ts(t0), Deadline: ts(t0.Add(time.Minute)), WindowSeconds: 10}}},
		status("rev", "b2", agorav1.TaskState_TASK_STATE_KILLED, "u4"),
	}
}

func TestReplayChecksPreemption(t *testing.T) {
	entries := preemptScenario(time.Unix(1000, 0))
	res, err := Replay(writeLog(t, entries), ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) != 0 {
		t.Fatalf("violations on a clean preemption log: %v", res.Violations)
	}
	if p := res.Preemptions; p.Decisions != 1 || p.VictimCount != 1 || p.Kills != 1 {
		t.Fatalf("counts: %d decisions, %d victims, %d kills; want 1, 1, 1", p.Decisions, p.VictimCount, p.Kills)
	}
	if b2, _ := res.Final.Task("rev", "b2"); b2.GetStatus().GetReason() != fsm.KillReasonPreempted {
		t.Fatalf("b2's KILLED not recorded as PREEMPTED: %v", b2.GetStatus())
	}
	// An agent's KILLED update of b1 that claims PREEMPTED, with no decision
	// behind it: the FSM takes it (the reason is the agent's), the checker
	// must not.
	planted := append(entries, logEntry{fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: "a1", Now: timestamppb.New(time.Unix(1001, 0)),
		Statuses: []*agorav1.TaskStatus{{TaskId: "b1", FrameworkId: "rev", State: agorav1.TaskState_TASK_STATE_KILLED, Uuid: "u5", Reason: fsm.KillReasonPreempted}}}})
	res, err = Replay(writeLog(t, planted), ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) != 1 || res.Violations[0].Checker != "preemption" || !strings.Contains(res.Violations[0].Detail, "rev/b1") {
		t.Fatalf("planted PREEMPTED kill without a decision not caught: %v", res.Violations)
	}
}
