package backup

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service/scheduler"
)

// Counts are a snapshot's objects by kind.
type Counts struct {
	Index         uint64         `json:"state_index"`
	Masters       int            `json:"masters"`
	Frameworks    int            `json:"frameworks"`
	Agents        int            `json:"agents"`
	AgentsByState map[string]int `json:"agents_by_state"`
	Tasks         int            `json:"tasks"`
	TasksByState  map[string]int `json:"tasks_by_state"`
	Offers        int            `json:"offers"`
	Reservations  int            `json:"reservations"`
	Volumes       int            `json:"volumes"`
	Roles         int            `json:"roles"`
	Records       int            `json:"records"`
	Services      int            `json:"services"`
	Preemptions   int            `json:"preemptions"`
}

// Inspect decodes a snapshot body (a backup's body, or a Raft snapshot
// of the FSM) and counts what it holds.
func Inspect(body io.Reader) (*Counts, *fsm.State, error) {
	st, err := fsm.ReadState(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: body does not decode: %w", ErrCorrupt, err)
	}
	return Count(st), st, nil
}

// Count counts a state's objects by kind.
func Count(st *fsm.State) *Counts {
	c := &Counts{
		Index:         st.Index(),
		Masters:       len(st.Masters()),
		AgentsByState: map[string]int{},
		TasksByState:  map[string]int{},
		Offers:        len(st.Offers()),
		Reservations:  len(st.Reservations()),
		Volumes:       len(st.Volumes()),
		Roles:         len(st.Roles()),
		Preemptions:   len(st.Preemptions()),
	}
	for _, a := range st.Agents() {
		c.Agents++
		c.AgentsByState[enumName(a.GetState().String(), "AGENT_STATE_")]++
	}
	for _, t := range st.Tasks() {
		c.Tasks++
		c.TasksByState[enumName(t.GetState().String(), "TASK_STATE_")]++
	}
	for _, fw := range st.Frameworks() {
		c.Frameworks++
		recs := st.Records(fw.GetId(), "")
		c.Records += len(recs)
		if strings.HasPrefix(fw.GetInfo().GetName(), scheduler.FrameworkPrefix) && fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			if _, ok := st.Record(fw.GetId(), scheduler.StateKey); ok {
				c.Services++
			}
		}
	}
	return c
}

// Lines renders counts as "kind: n (state=n ...)" lines.
func (c *Counts) Lines() []string {
	return []string{
		fmt.Sprintf("state index:  %d", c.Index),
		fmt.Sprintf("masters:      %d", c.Masters),
		fmt.Sprintf("frameworks:   %d", c.Frameworks),
		fmt.Sprintf("agents:       %d %s", c.Agents, byState(c.AgentsByState)),
		fmt.Sprintf("tasks:        %d %s", c.Tasks, byState(c.TasksByState)),
		fmt.Sprintf("offers:       %d", c.Offers),
		fmt.Sprintf("reservations: %d", c.Reservations),
		fmt.Sprintf("volumes:      %d", c.Volumes),
		fmt.Sprintf("roles:        %d", c.Roles),
		fmt.Sprintf("records:      %d", c.Records),
		fmt.Sprintf("services:     %d", c.Services),
		fmt.Sprintf("preemptions:  %d", c.Preemptions),
	}
}

func byState(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}
