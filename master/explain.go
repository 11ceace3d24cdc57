package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/allocator"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// explainStore keeps the trace of the leader's last allocation round for
// `agora explain`. It lives in the memory of the master that ran the
// round and is not replicated: it is advisory, lost on restart, and a new
// leader has none until its first round (which runs as soon as it leads).
// Each round replaces it whole, so a framework that left the rounds
// (disconnected, torn down) drops out with the next one.
type explainStore struct {
	mu    sync.Mutex
	trace *allocator.Trace
	index uint64
	at    time.Time
}

// allocate runs one traced round over snap and keeps its trace.
func (e *explainStore) allocate(snap allocator.Snapshot, now time.Time, index uint64) []allocator.Offer {
	tr := new(allocator.Trace)
	offers := allocator.AllocateTraced(snap, now, index, tr)
	e.mu.Lock()
	e.trace, e.index, e.at = tr, index, now
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
// a reason its trace names (draining, unreachable; a gone agent is not
// named).
func appendExcluded(ex []allocator.ExcludedAgent, a *agorav1.Agent) []allocator.ExcludedAgent {
	switch a.GetState() {
	case agorav1.AgentState_AGENT_STATE_DRAINING:
		return append(ex, allocator.ExcludedAgent{ID: a.GetId(), Reason: allocator.ReasonAgentDraining})
	case agorav1.AgentState_AGENT_STATE_UNREACHABLE:
		return append(ex, allocator.ExcludedAgent{ID: a.GetId(), Reason: allocator.ReasonAgentUnreachable})
	}
	return ex
}

// ExplainFramework answers from the leader's last allocation round. The
// framework must exist in the replicated state (NotFound otherwise, after
// the usual linearizable leader check, so a follower answers NotLeaderError
// like every leader-only call). A torn-down or disconnected framework is in
// no round: FailedPrecondition, even if an older round still named it. A
// connected framework that no round on this leader has seen yet (it has
// just subscribed, or leadership has just moved) is Unavailable: retry.
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
	return connect.NewResponse(resp), nil
}
