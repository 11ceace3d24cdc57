package master

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/allocator"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// explainStore keeps the trace of the leader's last traced allocation
// round for `agora explain`. It lives in the memory of the master that ran
// the round and is not replicated: it is advisory and lost on restart.
//
// Tracing is off on the hot path: rounds run untraced (allocator.Allocate,
// no extra cost) unless an explanation was asked for in the last
// explainWindow; an ExplainFramework call asks for one, triggers a round
// and waits briefly for it, so its answer is about the current state.
type explainStore struct {
	mu        sync.Mutex
	trace     *allocator.Trace
	index     uint64
	at        time.Time
	wantUntil time.Time     // trace rounds until then
	fresh     chan struct{} // closed when the next traced round lands
}

// explainWindow is how long rounds stay traced after an explanation was
// asked for (a user running `agora explain` repeatedly pays for one
// traced round per allocation, not one request each).
const explainWindow = time.Minute

// explainWait bounds how long ExplainFramework waits for a fresh round.
const explainWait = 3 * time.Second

// want asks for traced rounds from now on for explainWindow and returns a
// channel closed when the next traced round has landed.
func (e *explainStore) want(now time.Time) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.wantUntil = now.Add(explainWindow)
	if e.fresh == nil {
		e.fresh = make(chan struct{})
	}
	return e.fresh
}

// allocate runs one round over snap, traced (and the trace kept) only
// while an explanation is wanted.
func (e *explainStore) allocate(snap allocator.Snapshot, now time.Time, index uint64) []allocator.Offer {
	e.mu.Lock()
	traced := now.Before(e.wantUntil)
	e.mu.Unlock()
	if !traced {
		return allocator.Allocate(snap, now, index)
	}
	tr := new(allocator.Trace)
	offers := allocator.AllocateTraced(snap, now, index, tr)
	e.mu.Lock()
	e.trace, e.index, e.at = tr, index, now
	if e.fresh != nil {
		close(e.fresh)
		e.fresh = nil
	}
	e.mu.Unlock()
	return offers
}

// lookup returns framework id's part of the last round, with the round's
// state index and time.
func (e *explainStore) lookup(id string) (allocator.FrameworkTrace, uint64, time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.trace == nil {
		return allocator.FrameworkTrace{}, 0, time.Time{}, false
	}
	ft, ok := e.trace.Framework(id)
	return ft, e.index, e.at, ok
}

// appendExcluded adds agent a to ex if the round offers nothing of it for
// a reason its trace names (draining, restarting, unreachable; a gone
// agent is not named).
func appendExcluded(ex []allocator.ExcludedAgent, a *agorav1.Agent) []allocator.ExcludedAgent {
	switch a.GetState() {
	case agorav1.AgentState_AGENT_STATE_DRAINING, agorav1.AgentState_AGENT_STATE_DRAINED:
		return append(ex, allocator.ExcludedAgent{ID: a.GetId(), Reason: allocator.ReasonAgentDraining})
	case agorav1.AgentState_AGENT_STATE_UNREACHABLE:
		return append(ex, allocator.ExcludedAgent{ID: a.GetId(), Reason: allocator.ReasonAgentUnreachable})
	case agorav1.AgentState_AGENT_STATE_RESTARTING:
		return append(ex, allocator.ExcludedAgent{ID: a.GetId(), Reason: allocator.ReasonAgentRestarting})
	}
	return ex
}

// ExplainFramework answers from the leader's last allocation round. The
// framework must exist in the replicated state (NotFound otherwise, after
// the usual linearizable leader check, so a follower answers NotLeaderError
// like every leader-only call). A torn-down or disconnected framework is in
// no round: FailedPrecondition, even if an older round still named it. A
// connected framework that no traced round on this leader has seen (none
// came within explainWait) is Unavailable: retry.
func (s *operatorServer) ExplainFramework(ctx context.Context, req *connect.Request[agorav1.ExplainFrameworkRequest]) (*connect.Response[agorav1.ExplainFrameworkResponse], error) {
	fid := req.Msg.GetFrameworkId()
	if fid == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("framework id is required"))
	}
	st, err := s.m.ReadState(ctx, false)
	if err != nil {
		return nil, err
	}
	fw, ok := st.Framework(fid)
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("framework %q does not exist", fid))
	}
	switch fw.GetState() {
	case agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN:
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("framework %s is torn down: it gets no offers", fid))
	case agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED:
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("framework %s is disconnected: it gets no offers until it subscribes again", fid))
	}
	fresh := s.m.explain.want(s.m.Now())
	s.m.MarkAllocationDirty()
	wait := time.NewTimer(explainWait)
	select {
	case <-fresh:
	case <-wait.C: // answer from the last traced round, if any
	case <-ctx.Done():
	}
	wait.Stop()
	ft, index, at, ok := s.m.explain.lookup(fid)
	if !ok {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("no allocation round on master %s has considered framework %s yet; retry shortly", s.m.cfg.ID, fid))
	}
	resp := &agorav1.ExplainFrameworkResponse{
		FrameworkId: ft.ID,
		Roles:       ft.Roles,
		Offered:     uint64(ft.Offered),
		RoundIndex:  index,
		RoundTime:   timestamppb.New(at),
	}
	for _, rc := range ft.Reasons {
		resp.Reasons = append(resp.Reasons, &agorav1.SkipReason{
			Reason: rc.Reason.String(), Count: uint64(rc.Count), ExampleAgent: rc.ExampleAgent,
		})
	}
	for _, v := range s.m.verdicts.of(fid) {
		resp.Demands = append(resp.Demands, &agorav1.DemandVerdict{
			Role: v.Role, Resources: resourcepb.ToProto("", v.Shape), Count: uint32(v.Count),
			Placed: uint32(v.Placed), Preempting: uint32(v.Preempting + v.Rescinding), Unmet: uint32(v.Unmet),
			Reason: v.Reason.String(),
		})
	}
	for _, p := range st.Preemptions() {
		mine := p.GetFrameworkId() == fid || slices.ContainsFunc(p.GetVictims(), func(r *agorav1.TaskRef) bool { return r.GetFrameworkId() == fid })
		if mine {
			resp.Preemptions = append(resp.Preemptions, p)
		}
	}
	return connect.NewResponse(resp), nil
}
