package chaos

import (
	"sync"
	"time"

	"github.com/agora-sched/agora/chaos/check"
)

// Op is one client operation in the run's history, as it is written to
// history.jsonl in the output directory.
type Op struct {
	Client int    `json:"client"`
	Kind   string `json:"kind"` // set-role, delete-role, list-roles, accept, decline, kill, ...
	// Input and Output describe the call and its answer.
	Input  string `json:"input"`
	Output string `json:"output,omitempty"`
	// Call and Return are nanoseconds since the start of the run; Return is
	// check.Pending when the outcome is unknown.
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
	OK     bool  `json:"ok"`
}

// History records what the workload's clients did and saw. It is safe for
// concurrent use.
type History struct {
	start time.Time

	mu        sync.Mutex
	ops       []Op
	registers []check.RegisterOp
	// accepted: offer id -> number of acknowledged accepts.
	accepted map[string]int
	// tasks and volumes the cluster acknowledged creating, and those a
	// kill or destroy was attempted for.
	tasksAcked, volumesAcked     map[string]bool
	tasksRemoved, volumesRemoved map[string]bool
	// tasksEnded: tasks a framework saw a terminal status for (the FSM
	// forgets a terminal task once its status is acknowledged).
	tasksEnded map[string]bool
	// seen: framework id -> status keys its scheduler received.
	seen map[string]map[string]bool
}

// NewHistory starts an empty history; times count from now.
func NewHistory() *History {
	return &History{start: time.Now(), accepted: map[string]int{},
		tasksAcked: map[string]bool{}, volumesAcked: map[string]bool{},
		tasksRemoved: map[string]bool{}, volumesRemoved: map[string]bool{}, tasksEnded: map[string]bool{},
		seen: map[string]map[string]bool{}}
}

// Now is the time since the start of the run in nanoseconds.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records an operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// AddRegister records a register operation for the linearizability checker.
func (h *History) AddRegister(ops ...check.RegisterOp) {
	h.mu.Lock()
	h.registers = append(h.registers, ops...)
	h.mu.Unlock()
}

// Seen records a status update a framework received.
func (h *History) Seen(frameworkID, key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.seen[frameworkID]
	if m == nil {
		m = map[string]bool{}
		h.seen[frameworkID] = m
	}
	m[key] = true
}

// Ops returns a copy of the recorded operations.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Registers returns a copy of the register operations.
func (h *History) Registers() []check.RegisterOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]check.RegisterOp(nil), h.registers...)
}
