package master

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
)

// HoldReadyForTest makes a leader look as if it had just won an election
// and its leadership Barrier had not completed yet; release marks it ready
// again for the term it had.
func (m *Master) HoldReadyForTest() (release func()) {
	term := m.readyTerm.Load()
	m.readyTerm.Store(0)
	return func() { m.setReady(term) }
}

// AddLeaderTaskForTest adds run to the leader's tasks: started after every
// leadership Barrier, cancelled when leadership ends. Call before Start.
func (m *Master) AddLeaderTaskForTest(name string, run func(ctx context.Context)) {
	m.leader.mu.Lock()
	defer m.leader.mu.Unlock()
	m.leader.extra = append(m.leader.extra, leaderTask{name: name, run: run})
}

// OnApplyForTest registers fn to be called at the end of every FSM Apply
// that changed state, with the entry's index and events. Call before Start.
func (m *Master) OnApplyForTest(fn func(index uint64, events []fsm.Event)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		panic("master: OnApplyForTest called after Start")
	}
	m.applyHooks = append(m.applyHooks, fn)
}

// BatchForTest queues judged batchable commands together, as concurrent
// callers would have, and returns each one's result and error; when no
// other batchable write is in flight they go out in one entry.
func (m *Master) BatchForTest(ctx context.Context, ts []fsm.CommandType, msgs []proto.Message) ([]fsm.Result, []error) {
	ps := make([]*batched, len(ts))
	for i := range ts {
		ps[i] = &batched{ctx: ctx, t: ts[i], msg: msgs[i], done: make(chan struct{})}
	}
	m.batch.enqueue(ps...)
	res, errs := make([]fsm.Result, len(ps)), make([]error, len(ps))
	for i, p := range ps {
		m.batch.await(p)
		res[i], errs[i] = p.res, p.err
	}
	return res, errs
}

// AssignmentPollsWaitingForTest returns how many GetAssignments long polls
// wait for their own agent's assignment to change on m.
func (m *Master) AssignmentPollsWaitingForTest() int {
	m.agentSrv.waiters.mu.Lock()
	defer m.agentSrv.waiters.mu.Unlock()
	n := 0
	for _, ws := range m.agentSrv.waiters.waiting {
		n += len(ws)
	}
	return n
}
