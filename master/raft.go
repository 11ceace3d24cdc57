package master

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
)

const (
	// defaultApplyTimeout bounds how long a proposal may wait to be
	// enqueued when the caller's context has no deadline.
	defaultApplyTimeout = 10 * time.Second
	barrierTimeout      = 10 * time.Second
	leaderCheckInterval = 250 * time.Millisecond
	// readyWait bounds how long a request waits for a new leader's
	// Barrier before it is answered Unavailable.
	readyWait = 5 * time.Second
)

// leaderSet is one term's leader work (see leader.run).
type leaderSet struct {
	term   uint64
	cancel context.CancelFunc
	done   chan struct{}
}

// leaderLoop starts and stops the leader-only work as leadership comes and
// goes. It re-reads raft's state on every notification and on a short
// ticker, so a notification overwritten by a fast flip is never missed; a
// change of term restarts the set (with a new Barrier).
func (m *Master) leaderLoop(ctx context.Context) {
	var cur *leaderSet
	stop := func() {
		if cur == nil {
			return
		}
		m.setReady(0)
		cur.cancel()
		<-cur.done
		m.log.Info("leader work stopped", "term", cur.term)
		cur = nil
	}
	defer stop()
	tick := time.NewTicker(leaderCheckInterval)
	defer tick.Stop()
	check := func() {
		leader := m.raft.State() == raft.Leader
		term := m.raft.CurrentTerm()
		if cur != nil && (!leader || cur.term != term) {
			stop()
		}
		if leader && cur == nil {
			cur = m.startLeaderSet(ctx, term)
		}
		m.metrics.setLeader(leader)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.raft.LeaderCh():
			check()
		case <-tick.C:
			check()
		case <-m.releadCh:
			stop() // a restored snapshot: start the leader work afresh
			check()
		}
	}
}

func (m *Master) startLeaderSet(parent context.Context, term uint64) *leaderSet {
	ctx, cancel := context.WithCancel(parent)
	s := &leaderSet{term: term, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if !m.leadershipBarrier(ctx, term) {
			return
		}
		m.setReady(term)
		m.leader.run(ctx, term)
	}()
	return s
}

// waitFuture waits for a Raft future, or until the master begins to stop.
// hashicorp/raft v1.7.3 gives the futures of Apply and Barrier no
// shutdown channel: an entry committed but not yet handed to the FSM when
// Raft shuts down is never answered, and its Error() blocks forever. The
// leader's allocation loop was caught so (a CI rehearsal's master test
// hung in ShutdownAll: teardown waited for the leader run, which waited in
// Apply). On stop it answers ErrRaftShutdown; the goroutine that still
// waits on the future is left to the process's end.
func (m *Master) waitFuture(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-m.quit:
		select {
		case err := <-done: // answered meanwhile
			return err
		default:
			return raft.ErrRaftShutdown
		}
	}
}

// leadershipBarrier waits until every entry of earlier terms is applied to
// our FSM. It returns false when leadership or ctx ends first.
func (m *Master) leadershipBarrier(ctx context.Context, term uint64) bool {
	for {
		err := m.waitFuture(m.raft.Barrier(barrierTimeout))
		if err == nil {
			return m.raft.State() == raft.Leader && m.raft.CurrentTerm() == term && ctx.Err() == nil
		}
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			<-ctx.Done() // the leader loop cancels us once it sees the loss
			return false
		}
		m.log.Warn("leadership barrier failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *Master) setReady(term uint64) {
	m.readyMu.Lock()
	m.readyTerm.Store(term)
	close(m.readyCh)
	m.readyCh = make(chan struct{})
	m.readyMu.Unlock()
}

func (m *Master) readyChanged() <-chan struct{} {
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	return m.readyCh
}

// Apply proposes a command and waits until it is committed and applied.
// On a follower it returns NotLeaderError. When the FSM rejects the
// command the result is returned along with RejectionError(res.Err).
func (m *Master) Apply(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error) {
	start := time.Now()
	res, err := m.apply(ctx, t, msg, false)
	m.metrics.observeApply(t, start, err)
	return res, err
}

// proposeAsync appends a command that needs no dry run (a batch entry
// whose items were judged) to the log and returns at once with a wait for
// its result: proposals reach the log in the order of the calls, so a
// caller may have several in flight and keep their order.
func (m *Master) proposeAsync(t fsm.CommandType, msg proto.Message) (wait func() (fsm.Result, error), err error) {
	if err := m.canPropose(); err != nil {
		return nil, err
	}
	b, err := encodeEntry(t, msg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	fut := m.raft.Apply(b, defaultApplyTimeout)
	return func() (fsm.Result, error) {
		res, err := m.result(fut)
		if err == nil && res.Err != nil {
			err = RejectionError(res.Err)
		}
		m.metrics.observeApply(t, start, err)
		return res, err
	}, nil
}

// canPropose is nil when this master may propose: it leads and is not
// shutting down.
func (m *Master) canPropose() error {
	if m.raft == nil || m.raft.State() != raft.Leader {
		return m.NotLeaderError()
	}
	if m.stopping.Load() {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s is shutting down", m.cfg.ID))
	}
	return nil
}

// encodeEntry encodes a command as a log entry.
func encodeEntry(t fsm.CommandType, msg proto.Message) ([]byte, error) {
	b, err := fsm.Encode(t, msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("encode %v: %w", t, err))
	}
	return b, nil
}

// applyChange is Apply, except that a command the FSM judges, against the
// leader's state, to change nothing (a resent status update, an
// acknowledgement of a superseded update, a second kill) succeeds at the
// current index without a log entry. Only for commands whose no-op answer
// needs no quorum: an operator write that a linearizable history must
// order (SetRole) always goes through the log.
func (m *Master) applyChange(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error) {
	start := time.Now()
	res, err := m.apply(ctx, t, msg, true)
	m.metrics.observeApply(t, start, err)
	return res, err
}

func (m *Master) apply(ctx context.Context, t fsm.CommandType, msg proto.Message, skipNoop bool) (fsm.Result, error) {
	if err := m.canPropose(); err != nil {
		return fsm.Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return fsm.Result{}, connect.NewError(connect.CodeOf(err), err)
	}
	if dryRuns(t) {
		st, err := m.ReadyState(ctx)
		if err != nil {
			return fsm.Result{}, err
		}
		if res, done, err := prejudge(ctx, st, t, msg, skipNoop); done {
			return res, err
		}
	}
	if fsm.Batchable(t) {
		return m.batch.submit(ctx, t, msg)
	}
	b, err := encodeEntry(t, msg)
	if err != nil {
		return fsm.Result{}, err
	}
	timeout := defaultApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	res, err := m.propose(b, timeout)
	if err != nil {
		return fsm.Result{}, err
	}
	if res.Err != nil {
		return res, RejectionError(res.Err)
	}
	return res, nil
}

// propose appends an encoded entry to the log and waits until it is
// committed and applied; enqueue bounds the wait to be enqueued. A
// rejection is in the Result, not the error.
func (m *Master) propose(data []byte, enqueue time.Duration) (fsm.Result, error) {
	return m.result(m.raft.Apply(data, enqueue))
}

// result waits for a proposal's future and returns the FSM's Result.
func (m *Master) result(fut raft.ApplyFuture) (fsm.Result, error) {
	if err := m.waitFuture(fut); err != nil {
		return fsm.Result{}, m.raftError(err)
	}
	res, ok := fut.Response().(fsm.Result)
	if !ok {
		return fsm.Result{}, connect.NewError(connect.CodeInternal, fmt.Errorf("fsm returned %T", fut.Response()))
	}
	return res, nil
}

// dryRuns reports whether Apply judges a command against the leader's
// state before proposing it, so that a command that is invalid now never
// reaches the log (the FSM judges it again on every replica; it is the
// only judge). OffersCreated, Expire and RescindOffers are exempt: their
// Apply drops stale parts individually rather than rejecting the entry;
// so are the batch commands, whose items the coalescer judged one by one.
func dryRuns(t fsm.CommandType) bool {
	switch t {
	case fsm.CmdOffersCreated, fsm.CmdExpire, fsm.CmdRescindOffers, fsm.CmdAcknowledgeBatch, fsm.CmdStatusUpdateBatch, fsm.CmdBatch:
		return false
	}
	return true
}

// judgeSlots bounds the judgements (State.Judge dry runs) running at once
// in this process to its CPUs. Each caller's request handler judges its own
// command, and under load thousands of them (agents' status calls,
// frameworks' Accepts of 100 tasks) were runnable at once: raft's
// heartbeat and replication goroutines then waited behind them in the run
// queues long enough for the leader to lose its lease (500 ms) and for
// followers to call elections, 20 in one 1M-task e2e run on 2 loaded
// cores. A handler waiting for a slot is parked, not runnable.
var judgeSlots = make(chan struct{}, max(runtime.GOMAXPROCS(0), 1))

// prejudge is the leader's judgement of a command before proposing it,
// against st: done is true when the answer is known without the log (a
// rejection, or with skipNoop a command that changes nothing). It waits for
// a judgement slot (judgeSlots) while ctx lasts.
func prejudge(ctx context.Context, st *fsm.State, t fsm.CommandType, msg proto.Message, skipNoop bool) (res fsm.Result, done bool, err error) {
	select {
	case judgeSlots <- struct{}{}:
	case <-ctx.Done():
		return fsm.Result{}, true, ctxError(ctx.Err())
	}
	changed, rej := st.Judge(t, msg)
	<-judgeSlots
	if rej != nil {
		return fsm.Result{Index: st.Index(), Err: rej}, true, RejectionError(rej)
	}
	if skipNoop && !changed {
		return fsm.Result{Index: st.Index()}, true, nil
	}
	return fsm.Result{}, false, nil
}

// raftError maps an error from a raft future to a Connect error.
func (m *Master) raftError(err error) *connect.Error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return m.NotLeaderError()
	case errors.Is(err, raft.ErrLeadershipLost):
		e := m.NotLeaderError()
		return outcomeUnknown(withMessage(e, "leadership was lost while the write was in flight; it may or may not have been applied: "+e.Message()))
	case errors.Is(err, raft.ErrRaftShutdown):
		return outcomeUnknown(connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s is shutting down", m.cfg.ID)))
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s is overloaded: the write was not enqueued in time", m.cfg.ID))
	default:
		return outcomeUnknown(connect.NewError(connect.CodeUnavailable, fmt.Errorf("raft: %w", err)))
	}
}

// outcomeUnknown marks an Unavailable answer given after the write may
// have been proposed, so that clients do not take it for "not applied"
// and retry a write that is not safe to repeat (see rpc/client).
func outcomeUnknown(e *connect.Error) *connect.Error {
	e.Meta().Set("Agora-Outcome", "unknown")
	return e
}

// ReadState returns a state snapshot. With stale it is the local state.
// Otherwise it is linearizable: this master must be the leader with its
// leadership Barrier done, it confirms leadership with a quorum
// (VerifyLeader) and waits until the commit index it saw before that is
// applied. A follower answers NotLeaderError.
func (m *Master) ReadState(ctx context.Context, stale bool) (*fsm.State, error) {
	if stale {
		return m.fsm.State(), nil
	}
	for {
		if _, err := m.ReadyState(ctx); err != nil {
			return nil, err
		}
		idx := m.raft.CommitIndex()
		if err := m.waitFuture(m.raft.VerifyLeader()); err != nil {
			return nil, m.raftError(err)
		}
		if !m.LeaderReady() {
			continue // a new term began meanwhile: wait for its barrier
		}
		if err := m.waitApplied(ctx, idx); err != nil {
			return nil, err
		}
		return m.fsm.State(), nil
	}
}

// ReadyState returns the state a leader validates requests against: its
// local state once its leadership Barrier for the current term is done.
// A master that has just won an election may not yet have applied what its
// predecessor committed (after a full-cluster restart it holds only its
// snapshot until the first entry of the new term commits); judging a
// request against that state would refuse valid ones as unknown
// framework, offer or role, and a client takes such a refusal as final.
// It waits up to readyWait for the Barrier, then answers Unavailable; a
// follower answers NotLeaderError.
func (m *Master) ReadyState(ctx context.Context) (*fsm.State, error) {
	if m.LeaderReady() { // the common case, without timers
		return m.fsm.State(), nil
	}
	deadline := time.NewTimer(readyWait)
	defer deadline.Stop()
	for {
		changed := m.readyChanged()
		if !m.IsLeader() {
			return nil, m.NotLeaderError()
		}
		if m.LeaderReady() {
			return m.fsm.State(), nil
		}
		poll := time.NewTimer(leaderCheckInterval / 5)
		select {
		case <-changed:
		case <-poll.C:
		case <-deadline.C:
			poll.Stop()
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s leads but has not caught up with the log yet; retry", m.cfg.ID))
		case <-ctx.Done():
			poll.Stop()
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s leads but has not caught up with the log yet: %w", m.cfg.ID, ctx.Err()))
		}
		poll.Stop()
	}
}

func (m *Master) waitApplied(ctx context.Context, idx uint64) error {
	for m.raft.AppliedIndex() < idx {
		changed := m.fsm.Changed()
		if m.raft.AppliedIndex() >= idx {
			return nil
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("waiting for index %d to be applied: %w", idx, ctx.Err()))
		}
		t.Stop()
	}
	return nil
}

// raftStats is the subset of raft.Stats the status call reports.
type raftStats struct {
	term, commit, applied, lastSnapshot uint64
	state                               string
}

func (m *Master) raftStats() raftStats {
	s := m.raft.Stats()
	snap, _ := strconv.ParseUint(s["last_snapshot_index"], 10, 64)
	return raftStats{
		term:         m.raft.CurrentTerm(),
		commit:       m.raft.CommitIndex(),
		applied:      m.raft.AppliedIndex(),
		lastSnapshot: snap,
		state:        m.raft.State().String(),
	}
}
