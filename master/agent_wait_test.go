package master

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// watchFixture is an FSM restored from a synthetic snapshot (agents with
// RUNNING tasks of framework fw-1) and a waiter per agent holding its
// current assignment, checked by hand (no watcher goroutine).
type watchFixture struct {
	tb    testing.TB
	f     *fsm.FSM
	w     *assignWaiters
	index uint64
	since fsm.FeedPos
	ws    map[string]*assignWaiter
}

func newWatchFixture(tb testing.TB, agents, tasks int) *watchFixture {
	var b bytes.Buffer
	if err := fsm.WriteSyntheticSnapshot(&b, agents, tasks); err != nil {
		tb.Fatal(err)
	}
	f := fsm.New(fsm.Config{})
	if err := f.Restore(io.NopCloser(&b)); err != nil {
		tb.Fatal(err)
	}
	x := &watchFixture{tb: tb, f: f, w: &assignWaiters{}, index: f.State().Index(), ws: map[string]*assignWaiter{}}
	x.w.once.Do(func() {}) // no watcher: the test calls check
	st := f.State()
	for i := range agents {
		id := fsm.SyntheticAgentID(i)
		x.ws[id] = x.w.add(nil, id, assignVersionOf(st, id))
	}
	// The restore names every agent: one full pass, nothing changed.
	if woken := x.check(); len(woken) != 0 {
		tb.Fatalf("first pass woke %v", woken)
	}
	return x
}

func (x *watchFixture) apply(typ fsm.CommandType, m proto.Message) {
	x.tb.Helper()
	x.index++
	res, err := x.f.ApplyMessage(x.index, typ, m)
	if err != nil || res.Err != nil {
		x.tb.Fatalf("%s: %v %v", typ, err, res.Err)
	}
}

// check runs one pass of the watcher and returns the agents whose waiter
// it woke (sorted); each gets a new waiter holding its new assignment.
func (x *watchFixture) check() []string {
	st := x.f.State()
	x.w.check(st, x.since)
	x.since = st.FeedPos()
	var woken []string
	for id, wt := range x.ws {
		select {
		case <-wt.ch:
			woken = append(woken, id)
			x.ws[id] = x.w.add(nil, id, assignVersionOf(st, id))
		default:
		}
	}
	slices.Sort(woken)
	return woken
}

// changed is the brute-force answer: the agents whose assignment differs
// from the one their waiter holds.
func (x *watchFixture) changed() []string {
	st := x.f.State()
	var out []string
	for id, wt := range x.ws {
		if !assignVersionOf(st, id).equal(wt.base) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// taskOn is the agent of a fixture of more tasks than agents: task n
// runs on agent n % agents; the tests name tasks below agents or add it.
func taskOn(i int) string { return fsm.SyntheticAgentID(i) }

// fmtTask is the id of task n of the synthetic snapshot.
func fmtTask(n int) string { return fmt.Sprintf("task-%07d", n) }

// TestAssignWatchWakesExactlyTheChangedAgents: after each command (kills
// by the framework, by preemption and by a drain, status updates, agent
// loss and removal, acknowledgements, commands that touch no agent, and
// several commands between two passes) the watcher wakes exactly the
// waiters whose agent's assignment changed, brute force over all agents.
// A kill must wake the killed task's agent: the test fails if the feed
// misses a kill.
func TestAssignWatchWakesExactlyTheChangedAgents(t *testing.T) {
	const agents = 50
	x := newWatchFixture(t, agents, 4*agents)
	now := func(s int64) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: 2_000_000_000 + s} }
	task := fmtTask // task n runs on agent n % agents
	steps := []struct {
		name string
		cmds []func()
		want []string // must be among the woken (the brute force decides the rest)
		none bool     // nobody may be woken
	}{
		{"kill", []func(){func() {
			x.apply(fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw-1", TaskId: task(7), Now: now(1)})
		}}, []string{taskOn(7)}, false},
		{"killed task ends", []func(){func() {
			x.apply(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: taskOn(7), Now: now(2), Statuses: []*agorav1.TaskStatus{{
				TaskId: task(7), FrameworkId: "fw-1", AgentId: taskOn(7), State: agorav1.TaskState_TASK_STATE_KILLED, Uuid: "u-7",
				Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}}})
		}}, []string{taskOn(7)}, false},
		{"acknowledged", []func(){func() {
			x.apply(fsm.CmdAcknowledge, &agorav1.AcknowledgeCommand{FrameworkId: "fw-1", TaskId: task(7), Uuid: "u-7"})
		}}, nil, true},
		{"the agent's own report", []func(){func() {
			x.apply(fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: taskOn(8), Now: now(2), Statuses: []*agorav1.TaskStatus{{
				TaskId: task(8), FrameworkId: "fw-1", AgentId: taskOn(8), State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u-8",
				Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Healthy: true}}})
		}}, nil, true},
		{"role only", []func(){func() {
			x.apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "other", Weight: 1}})
		}}, nil, true},
		{"drain kills", []func(){func() {
			x.apply(fsm.CmdDrainAgent, &agorav1.DrainAgentCommand{AgentId: taskOn(11), Now: now(3)})
		}}, []string{taskOn(11)}, false},
		{"two kills and a loss between passes", []func(){
			func() {
				x.apply(fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw-1", TaskId: task(12), Now: now(4)})
			},
			func() {
				x.apply(fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw-1", TaskId: task(13 + agents), Now: now(4)})
			},
			func() {
				x.apply(fsm.CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: taskOn(20), Now: now(5)})
			},
		}, []string{taskOn(12), taskOn(13), taskOn(20)}, false},
		{"gone", []func(){func() {
			x.apply(fsm.CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: taskOn(20), Now: now(6)})
		}}, []string{taskOn(20)}, false},
	}
	for _, s := range steps {
		for _, c := range s.cmds {
			c()
		}
		want := x.changed()
		got := x.check()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: woke %v, the assignment changed for %v", s.name, got, want)
		}
		for _, id := range s.want {
			if !slices.Contains(got, id) {
				t.Fatalf("%s: %s was not woken (woke %v)", s.name, id, got)
			}
		}
		if s.none && len(got) != 0 {
			t.Fatalf("%s: woke %v, want none", s.name, got)
		}
	}
}

// BenchmarkAssignWatch is one pass of the watcher over 10,000 waiting
// long polls after a kill on one agent: "feed" checks the agents the
// change feed names, "full" every waiter (as before the feed, and as after
// a restore). Each op wakes the killed task's agent and adds its waiter
// back.
func BenchmarkAssignWatch(b *testing.B) {
	for _, mode := range []string{"feed", "full"} {
		b.Run(mode, func(b *testing.B) {
			const agents = 10_000
			x := newWatchFixture(b, agents, agents)
			id := taskOn(0)
			base := x.ws[id].base
			since := x.f.State().FeedPos()
			x.apply(fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw-1", TaskId: fmtTask(0),
				Now: &timestamppb.Timestamp{Seconds: 2_000_000_000}})
			st := x.f.State()
			if mode == "full" {
				since = fsm.FeedPos{}
			}
			b.ReportAllocs()
			for b.Loop() {
				x.w.check(st, since)
				select {
				case <-x.ws[id].ch:
				default:
					b.Fatalf("%s not woken by the kill", id)
				}
				x.ws[id] = x.w.add(nil, id, base)
			}
		})
	}
}
