package check

import (
	"sort"
	"strings"

	"github.com/agora-sched/agora/fsm"
)

// VolumeUse is one live (non-terminal) task's use of a persistent volume,
// as the volume checker sees it.
type VolumeUse struct {
	// Volume is the volume id.
	Volume string
	// Task is "framework/task".
	Task string
	// TaskAgent is the agent the task runs on.
	TaskAgent string
	// VolumeAgent is the agent that holds the volume, empty when the state
	// has no such volume.
	VolumeAgent string
	// State is the task's state ("RUNNING").
	State string
}

// VolumeUsesOf lists every live task's volumes in st, sorted by volume then
// task. Live is what the FSM counts as not terminal (STAGING, STARTING,
// RUNNING, KILLING, UNREACHABLE): a task in any of these may be running.
func VolumeUsesOf(st *fsm.State) []VolumeUse {
	var out []VolumeUse
	for _, t := range st.Tasks() {
		if fsm.IsTerminal(t.GetState()) {
			continue
		}
		for _, vid := range t.GetVolumeIds() {
			u := VolumeUse{
				Volume:    vid,
				Task:      t.GetFrameworkId() + "/" + t.GetId(),
				TaskAgent: t.GetAgentId(),
				State:     strings.TrimPrefix(t.GetState().String(), "TASK_STATE_"),
			}
			if v, ok := st.Volume(vid); ok {
				u.VolumeAgent = v.GetAgentId()
			}
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Volume != out[j].Volume {
			return out[i].Volume < out[j].Volume
		}
		return out[i].Task < out[j].Task
	})
	return out
}

// CheckVolumeExclusive verifies the volume invariant at one index: a volume
// is never used by two live tasks at once, and a live task's volume exists
// on the task's own agent. index labels the violations.
func CheckVolumeExclusive(index uint64, uses []VolumeUse) []Violation {
	var out []Violation
	first := map[string]VolumeUse{}
	for _, u := range uses {
		if prev, ok := first[u.Volume]; ok {
			out = append(out, violation("volume-exclusive", "index %d: volume %s used by two live tasks: %s (%s) and %s (%s)",
				index, u.Volume, prev.Task, prev.State, u.Task, u.State))
		} else {
			first[u.Volume] = u
		}
		if u.VolumeAgent != u.TaskAgent {
			where := "does not exist"
			if u.VolumeAgent != "" {
				where = "is on agent " + u.VolumeAgent
			}
			out = append(out, violation("volume-exclusive", "index %d: live task %s on agent %s uses volume %s, which %s",
				index, u.Task, u.TaskAgent, u.Volume, where))
		}
	}
	return out
}
