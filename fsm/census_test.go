package fsm

import (
	"bytes"
	"maps"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestCensusMatchesTheLists holds Census to counts made from the list
// accessors, over a restored state with an unacknowledged update and a
// task in another state.
func TestCensusMatchesTheLists(t *testing.T) {
	f := New(Config{})
	if err := f.Restore(nopCloser{bytes.NewReader(syntheticSnapshot(1000))}); err != nil {
		t.Fatal(err)
	}
	res, err := f.ApplyMessage(f.State().Index()+1, CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: "agent-00000",
		Statuses: []*agorav1.TaskStatus{{TaskId: "task-0000000", FrameworkId: "fw-1", State: agorav1.TaskState_TASK_STATE_FAILED, Uuid: "census-1"}}})
	if err != nil || res.Err != nil {
		t.Fatalf("status update: %v %v", err, res.Err)
	}
	st := f.State()
	c := st.Census()
	tasks := map[agorav1.TaskState]int{}
	for _, tk := range st.Tasks() {
		tasks[tk.GetState()]++
	}
	agents := map[agorav1.AgentState]int{}
	for _, a := range st.Agents() {
		agents[a.GetState()]++
	}
	fws := map[agorav1.FrameworkState]int{}
	unacked := 0
	for _, fw := range st.Frameworks() {
		fws[fw.GetState()]++
		unacked += len(st.UnacknowledgedStatuses(fw.GetId()))
	}
	if tasks[agorav1.TaskState_TASK_STATE_FAILED] != 1 || unacked != 1 {
		t.Fatalf("setup: %v failed tasks, %d unacknowledged", tasks, unacked)
	}
	if !maps.Equal(c.Tasks, tasks) || !maps.Equal(c.Agents, agents) || !maps.Equal(c.Frameworks, fws) {
		t.Errorf("census %v %v %v; lists %v %v %v", c.Tasks, c.Agents, c.Frameworks, tasks, agents, fws)
	}
	if c.Unacknowledged != unacked || c.Offers != len(st.Offers()) || c.Preemptions != len(st.Preemptions()) {
		t.Errorf("census %+v; lists: %d unacknowledged, %d offers, %d preemptions", c, unacked, len(st.Offers()), len(st.Preemptions()))
	}
}
