package master

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Drain and maintenance: the operator's DrainAgent and UndrainAgent, the
// frameworks' AnswerInverseOffer, and the leader's deadline task. The FSM
// (fsm/drain.go) judges every one of them; the edge only stamps the
// leader's time.

// DrainAgent drains an agent (see fsm/drain.go): the command goes through
// the log even when it changes nothing, so that its answer is ordered.
func (s *operatorServer) DrainAgent(ctx context.Context, req *connect.Request[agorav1.DrainAgentRequest]) (*connect.Response[agorav1.DrainAgentResponse], error) {
	id := req.Msg.GetAgentId()
	res, err := s.m.Apply(ctx, fsm.CmdDrainAgent, &agorav1.DrainAgentCommand{
		AgentId: id, Now: timestamppb.New(s.m.Now()), Deadline: req.Msg.GetDeadline(),
	})
	if err != nil {
		return nil, err
	}
	a, _ := s.m.State().Agent(id)
	return connect.NewResponse(&agorav1.DrainAgentResponse{Agent: a, Index: res.Index}), nil
}

// UndrainAgent ends an agent's drain.
func (s *operatorServer) UndrainAgent(ctx context.Context, req *connect.Request[agorav1.UndrainAgentRequest]) (*connect.Response[agorav1.UndrainAgentResponse], error) {
	id := req.Msg.GetAgentId()
	res, err := s.m.Apply(ctx, fsm.CmdUndrainAgent, &agorav1.UndrainAgentCommand{AgentId: id, Now: timestamppb.New(s.m.Now())})
	if err != nil {
		return nil, err
	}
	a, _ := s.m.State().Agent(id)
	return connect.NewResponse(&agorav1.UndrainAgentResponse{Agent: a, Index: res.Index}), nil
}

// AnswerInverseOffer records the framework's answer to a draining agent's
// inverse offer; the same answer again is answered without a log entry.
func (s *schedulerServer) AnswerInverseOffer(ctx context.Context, req *connect.Request[agorav1.AnswerInverseOfferRequest]) (*connect.Response[agorav1.AnswerInverseOfferResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	_, err = s.m.applyChange(ctx, fsm.CmdAnswerInverseOffer, &agorav1.AnswerInverseOfferCommand{
		FrameworkId: fw.GetId(), AgentId: req.Msg.GetAgentId(), Accept: req.Msg.GetAccept(), Now: timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.AnswerInverseOfferResponse{}), nil
}

// drainDue returns, from the state, the drained agents whose deadline has
// passed at now and whose kill is not applied yet (sorted by id), and the
// earliest deadline still ahead (zero when none).
func drainDue(st *fsm.State, now time.Time) (due []string, next time.Time) {
	st.EachAgent(func(a *agorav1.Agent) {
		d := a.GetDrain()
		if d.GetDeadline() == nil || d.GetDeadlinePassed() {
			return
		}
		at := d.GetDeadline().AsTime()
		if !at.After(now) {
			due = append(due, a.GetId())
			return
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	})
	slices.Sort(due)
	return due, next
}

// runDrainDeadlines is the leader's drain task: it proposes DrainDeadline
// for each drained agent whose deadline has passed. Everything it needs is
// in the state (deadline and whether its kill was applied), so a new
// leader picks up where the old one stopped. It wakes at the earliest
// deadline or after maxIdleWake (a new drain is seen within that).
func (l *leader) runDrainDeadlines(ctx context.Context) {
	m := l.m
	log := m.log.With("component", "drain")
	retryAt := map[string]time.Time{} // agent -> no proposal before
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		st := m.State()
		now := m.Now()
		due, next := drainDue(st, now)
		for _, id := range due {
			if at, ok := retryAt[id]; ok && now.Before(at) {
				next = earliest(next, at)
				continue
			}
			if l.proposeDrainDeadline(ctx, id, now, log) {
				delete(retryAt, id)
			} else {
				retryAt[id] = now.Add(time.Second)
				next = earliest(next, retryAt[id])
			}
		}
		wait := maxIdleWake
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		timer.Reset(wait)
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// proposeDrainDeadline proposes one deadline kill; false means try again
// later.
func (l *leader) proposeDrainDeadline(ctx context.Context, id string, now time.Time, log *slog.Logger) bool {
	m := l.m
	_, err := m.Apply(ctx, fsm.CmdDrainDeadline, &agorav1.DrainDeadlineCommand{AgentId: id, Now: timestamppb.New(now)})
	switch {
	case err == nil:
		log.Info("drain deadline passed: killing the agent's remaining tasks", "agent", id)
		return true
	case ctx.Err() != nil:
		return true // leadership ended; the next leader proposes it
	case connect.CodeOf(err) == connect.CodeUnavailable:
		return false
	default:
		log.Warn("drain deadline proposal refused", "agent", id, "err", err)
		return false
	}
}
