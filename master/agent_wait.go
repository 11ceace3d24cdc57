package master

import (
	"slices"
	"sync"
	"time"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// assignCheckInterval is the least time between two passes of the
// assignment watcher over the waiting long polls: commits that land within
// it are checked together.
const assignCheckInterval = 10 * time.Millisecond

// assignVersion identifies what an agent is asked to do in one state:
// its record, the version of its assignment (fsm.State.
// AgentAssignmentVersion: its live tasks and their kills, not their
// statuses and acknowledgements) and its volumes. Holding the values keeps
// them unique, so two states whose versions are equal ask the agent the
// same: a long poll is not answered for a status the agent reported
// itself or an acknowledgement (the answer, when it comes, carries the
// statuses as they are then).
type assignVersion struct {
	agent *agorav1.Agent // nil: unknown
	tasks any            // fsm.State.AgentAssignmentVersion
	vols  []*agorav1.Volume
}

func assignVersionOf(st *fsm.State, id string) assignVersion {
	a, _ := st.Agent(id)
	return assignVersion{agent: a, tasks: st.AgentAssignmentVersion(id), vols: st.VolumesByAgent(id)}
}

func (v assignVersion) equal(o assignVersion) bool {
	return v.agent == o.agent && v.tasks == o.tasks && slices.Equal(v.vols, o.vols)
}

// assignAnswer is the last answer this master gave an agent.
type assignAnswer struct {
	index uint64
	v     assignVersion
}

// assignWaiter is one long poll waiting for its agent's assignment to
// differ from base.
type assignWaiter struct {
	id   string
	base assignVersion
	ch   chan struct{} // closed when the assignment changed
}

// assignWaiters wakes a long poll only when its own agent's assignment
// changes (not at every commit, which would answer every agent its whole
// task list at every commit). It remembers the last answer given to each
// agent: a poll whose min_index is that answer's index waits for a
// different assignment. A poll this master cannot judge (its min_index is
// from another master, or from before a restart) waits, as before, only
// for the state to pass min_index: a spurious answer is harmless, a missed
// one is not.
//
// The watcher re-checks, at each new state, only the waiters of the agents
// the FSM's change feed names since the state it checked last (every
// waiter when the feed cannot tell, as after a restore); whether a waiter
// is answered stays assignVersion.equal. The feed marks an agent at every
// write of its record, tasks or volumes (fsm/feed.go), so narrowing by it
// skips only agents whose assignment is unchanged.
type assignWaiters struct {
	once sync.Once

	mu      sync.Mutex
	last    map[string]assignAnswer               // agent -> last answer
	waiting map[string]map[*assignWaiter]struct{} // agent -> its waiters
	touched map[string]struct{}                   // scratch of check
}

// baseline returns the assignment the agent holds when it asks with
// minIndex, if this master knows it: the one it last answered at minIndex,
// or the current one when st is at minIndex.
func (w *assignWaiters) baseline(id string, minIndex uint64, st *fsm.State) (assignVersion, bool) {
	w.mu.Lock()
	a, ok := w.last[id]
	w.mu.Unlock()
	if ok && a.index == minIndex {
		return a.v, true
	}
	if st.Index() == minIndex {
		return assignVersionOf(st, id), true
	}
	return assignVersion{}, false
}

// answered records the answer given at st (known false forgets the agent).
func (w *assignWaiters) answered(id string, st *fsm.State, v assignVersion, known bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !known {
		delete(w.last, id)
		return
	}
	if w.last == nil {
		w.last = map[string]assignAnswer{}
	}
	w.last[id] = assignAnswer{index: st.Index(), v: v}
}

// add registers a waiter (the caller then checks the state once more: a
// change applied before add may have been checked without it).
func (w *assignWaiters) add(m backend, id string, base assignVersion) *assignWaiter {
	w.once.Do(func() { go w.watch(m) })
	x := &assignWaiter{id: id, base: base, ch: make(chan struct{})}
	w.mu.Lock()
	if w.waiting == nil {
		w.waiting = map[string]map[*assignWaiter]struct{}{}
	}
	ws := w.waiting[id]
	if ws == nil {
		ws = map[*assignWaiter]struct{}{}
		w.waiting[id] = ws
	}
	ws[x] = struct{}{}
	w.mu.Unlock()
	return x
}

func (w *assignWaiters) remove(x *assignWaiter) {
	w.mu.Lock()
	w.removeLocked(x)
	w.mu.Unlock()
}

func (w *assignWaiters) removeLocked(x *assignWaiter) {
	ws := w.waiting[x.id]
	delete(ws, x)
	if len(ws) == 0 {
		delete(w.waiting, x.id)
	}
}

// watch checks the waiting polls at each new state (at most once per
// assignCheckInterval) until the master stops. A state is loaded before
// the waiters are locked and a waiter checks the state after it is added:
// a change is seen by the watcher's next check or by the waiter itself.
func (w *assignWaiters) watch(m backend) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	var since fsm.FeedPos // the zero position: check every waiter
	for {
		changed := m.FSM().Changed()
		st := m.State()
		w.check(st, since)
		since = st.FeedPos()
		select {
		case <-changed:
		case <-m.Done():
			return
		}
		pause.Reset(assignCheckInterval)
		select {
		case <-pause.C:
		case <-m.Done():
			return
		}
	}
}

// check wakes (and removes) the waiters whose assignment differs in st,
// looking only at the agents the feed names since the position since.
func (w *assignWaiters) check(st *fsm.State, since fsm.FeedPos) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.waiting) == 0 {
		return
	}
	if w.touched == nil {
		w.touched = map[string]struct{}{}
	}
	clear(w.touched)
	known := st.TouchedSince(since, func(id string) {
		if _, ok := w.waiting[id]; ok {
			w.touched[id] = struct{}{}
		}
	})
	if !known {
		for id := range w.waiting {
			w.checkAgent(st, id)
		}
		return
	}
	for id := range w.touched {
		w.checkAgent(st, id)
	}
}

// checkAgent wakes the agent's waiters whose assignment differs in st.
func (w *assignWaiters) checkAgent(st *fsm.State, id string) {
	ws := w.waiting[id]
	if len(ws) == 0 {
		return
	}
	v := assignVersionOf(st, id)
	for x := range ws {
		if !v.equal(x.base) {
			close(x.ch)
			w.removeLocked(x)
		}
	}
}
