package fsm

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// ReasonDrained is the reason of the KILLING and KILLED updates of a task
// killed at its agent's drain deadline.
const ReasonDrained = "DRAINED"

// Drain and maintenance. An agent's drain is its Agent.drain record, kept
// whatever the agent's state, so that an agent that restarts or is lost
// for a while comes back drained:
//
//   - DrainAgent: an ACTIVE agent becomes DRAINING (DRAINED at once when
//     no live task runs there); its outstanding offers are rescinded and
//     nothing new is offered on it (checkOffer wants ACTIVE). Each framework
//     with live tasks there gets an inverse offer (EventInverseOffer): the
//     agent, what its tasks hold and the deadline.
//   - A DRAINING agent whose last live task ends becomes DRAINED (putTask
//     and deleteTask call settleDrain).
//   - AnswerInverseOffer records a framework's answer (accept: it will
//     move; decline) in the drain record, for operators to see.
//   - DrainDeadline, the leader's proposal once the deadline has passed,
//     kills every live task there: KILLING with reason DRAINED, and the
//     agent's KILLED update carries that reason too (statusUpdate).
//   - UndrainAgent clears the record; a DRAINING or DRAINED agent is
//     ACTIVE again.

// isDrainState reports whether s is DRAINING or DRAINED.
func isDrainState(s agorav1.AgentState) bool {
	return s == agorav1.AgentState_AGENT_STATE_DRAINING || s == agorav1.AgentState_AGENT_STATE_DRAINED
}

// liveTasksOnAgent returns the agent's non-terminal tasks sorted by
// (framework, id).
func (x *txn) liveTasksOnAgent(agentID string) []*agorav1.Task {
	var out []*agorav1.Task
	for _, t := range x.tasksOnAgent(agentID) {
		if !IsTerminal(t.GetState()) {
			out = append(out, t)
		}
	}
	return out
}

// drainState is the state a drained agent that is up should be in.
func (x *txn) drainState(agentID string) agorav1.AgentState {
	if len(x.liveTasksOnAgent(agentID)) > 0 {
		return agorav1.AgentState_AGENT_STATE_DRAINING
	}
	return agorav1.AgentState_AGENT_STATE_DRAINED
}

// settleDrain moves a DRAINING agent whose last live task ended to DRAINED.
func (x *txn) settleDrain(agentID string) {
	a, ok := x.agent(agentID)
	if !ok || a.GetState() != agorav1.AgentState_AGENT_STATE_DRAINING {
		return
	}
	if x.drainState(agentID) != agorav1.AgentState_AGENT_STATE_DRAINED {
		return
	}
	n := clone(a)
	n.State = agorav1.AgentState_AGENT_STATE_DRAINED
	if x.now != nil {
		n.StateSince = ts(x.now)
	}
	x.putAgent(n)
}

// drainAgent drains an agent, or changes the deadline of a drained one (a
// new deadline also re-arms the kill and repeats the inverse offers). A
// deadline before now is InvalidArgument; a gone agent FailedPrecondition;
// draining again with the same deadline changes nothing.
func (x *txn) drainAgent(c *agorav1.DrainAgentCommand) *Rejection {
	id := c.GetAgentId()
	if !ValidAgentID(id) {
		return reject(CodeInvalidArgument, "invalid agent id %q", id)
	}
	a, ok := x.agent(id)
	if !ok {
		return reject(CodeNotFound, "agent %s is not registered", id)
	}
	now := ts(c.GetNow())
	if dl := c.GetDeadline(); dl != nil {
		if !dl.IsValid() {
			return reject(CodeInvalidArgument, "drain deadline is not a valid time")
		}
		if cmpTS(dl, now) < 0 {
			return reject(CodeInvalidArgument, "drain deadline %s is in the past (now %s)", fmtTS(dl), fmtTS(now))
		}
	}
	if a.GetState() == agorav1.AgentState_AGENT_STATE_GONE {
		return reject(CodeFailedPrecondition, "agent %s is gone", id)
	}
	n := clone(a)
	if d := a.GetDrain(); d != nil {
		if sameDeadline(d.GetDeadline(), c.GetDeadline()) {
			return nil
		}
		n.Drain.Deadline = cloneTS(c.GetDeadline())
		n.Drain.DeadlinePassed = false
		x.putAgent(n)
		x.inverseOffers(n)
		return nil
	}
	n.Drain = &agorav1.AgentDrain{StartedAt: now, Deadline: cloneTS(c.GetDeadline())}
	if a.GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE {
		n.State, n.StateSince = x.drainState(id), now
	}
	x.putAgent(n)
	for _, o := range x.offersOnAgent(id) {
		x.removeOffer(o, "rescinded: agent draining", true)
	}
	x.inverseOffers(n)
	return nil
}

func sameDeadline(a, b *timestamppb.Timestamp) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return cmpTS(a, b) == 0
}

func cloneTS(t *timestamppb.Timestamp) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return clone(t)
}

func fmtTS(t *timestamppb.Timestamp) string {
	return t.AsTime().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// inverseOffers emits one EventInverseOffer per framework (not torn down)
// with live tasks on the drained agent a, in framework id order.
func (x *txn) inverseOffers(a *agorav1.Agent) {
	for _, io := range inverseOffersOf(a, x.liveTasksOnAgent(a.GetId()), x.framework) {
		x.emit(Event{Kind: EventInverseOffer, FrameworkID: io.GetFrameworkId(), AgentID: a.GetId(), InverseOffer: io})
	}
}

// inverseOffersOf builds the inverse offers of drained agent a from its
// live tasks (sorted by framework): one per framework that is not torn
// down, with the resources its tasks hold.
func inverseOffersOf(a *agorav1.Agent, live []*agorav1.Task, framework func(string) (*agorav1.Framework, bool)) []*agorav1.InverseOffer {
	var out []*agorav1.InverseOffer
	var cur *agorav1.InverseOffer
	var held resourcepb.Pools
	flush := func() {
		if cur != nil {
			cur.Resources = held.ToProto()
			out = append(out, cur)
		}
	}
	for _, t := range live {
		fid := t.GetFrameworkId()
		if cur != nil && cur.GetFrameworkId() == fid {
			held = held.Add(pools(t.GetResources()))
			continue
		}
		flush()
		cur = nil
		if f, ok := framework(fid); !ok || f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			continue
		}
		cur = &agorav1.InverseOffer{AgentId: a.GetId(), FrameworkId: fid, Hostname: a.GetHostname(), Deadline: cloneTS(a.GetDrain().GetDeadline())}
		held = pools(t.GetResources())
	}
	flush()
	return out
}

// undrainAgent ends a drain: the record goes, and a DRAINING or DRAINED
// agent is ACTIVE again. An agent that is not drained is
// FailedPrecondition.
func (x *txn) undrainAgent(c *agorav1.UndrainAgentCommand) *Rejection {
	id := c.GetAgentId()
	if !ValidAgentID(id) {
		return reject(CodeInvalidArgument, "invalid agent id %q", id)
	}
	a, ok := x.agent(id)
	if !ok {
		return reject(CodeNotFound, "agent %s is not registered", id)
	}
	if a.GetDrain() == nil {
		return reject(CodeFailedPrecondition, "agent %s is not draining (it is %s)", id, agentStateName(a.GetState()))
	}
	n := clone(a)
	n.Drain = nil
	if isDrainState(a.GetState()) {
		n.State, n.StateSince = agorav1.AgentState_AGENT_STATE_ACTIVE, ts(c.GetNow())
	}
	x.putAgent(n)
	return nil
}

// drainDeadline kills, at a drain's deadline, every live task still on the
// agent: KILLING (kill requested, reason DRAINED, a master status update)
// or, for an UNREACHABLE task, a kill request for when its agent returns.
// Before the deadline, or without one, it is FailedPrecondition; once
// applied, proposing it again changes nothing.
func (x *txn) drainDeadline(c *agorav1.DrainDeadlineCommand) *Rejection {
	id := c.GetAgentId()
	a, ok := x.agent(id)
	if !ok {
		return reject(CodeNotFound, "agent %s is not registered", id)
	}
	d := a.GetDrain()
	now := ts(c.GetNow())
	switch {
	case d == nil:
		return reject(CodeFailedPrecondition, "agent %s is not draining", id)
	case d.GetDeadline() == nil:
		return reject(CodeFailedPrecondition, "agent %s drains without a deadline", id)
	case d.GetDeadlinePassed():
		return nil
	case cmpTS(d.GetDeadline(), now) > 0:
		return reject(CodeFailedPrecondition, "agent %s drains until %s, not yet reached (now %s)", id, fmtTS(d.GetDeadline()), fmtTS(now))
	}
	n := clone(a)
	n.Drain.DeadlinePassed = true
	x.putAgent(n)
	x.uuids = c.GetStatusUuids()
	for _, t := range x.liveTasksOnAgent(id) {
		if t.GetKillRequested() {
			continue // killed already (by its framework, or a teardown)
		}
		k := clone(t)
		k.KillRequested, k.KillReason = true, ReasonDrained
		if t.GetState() == agorav1.TaskState_TASK_STATE_UNREACHABLE {
			x.putTask(t, k)
			continue
		}
		x.setStatus(k, x.masterStatus(k, agorav1.TaskState_TASK_STATE_KILLING, ReasonDrained,
			"agent "+id+" drained: its deadline "+fmtTS(d.GetDeadline())+" passed", now))
	}
	return nil
}

// answerInverseOffer records a framework's answer to a drained agent's
// inverse offer, replacing an earlier one. The framework must have a task
// on the agent (or have answered before); the same answer again changes
// nothing.
func (x *txn) answerInverseOffer(c *agorav1.AnswerInverseOfferCommand) *Rejection {
	fid, id := c.GetFrameworkId(), c.GetAgentId()
	if _, rej := x.liveFramework(fid); rej != nil {
		return rej
	}
	if !ValidAgentID(id) {
		return reject(CodeInvalidArgument, "invalid agent id %q", id)
	}
	a, ok := x.agent(id)
	if !ok {
		return reject(CodeNotFound, "agent %s is not registered", id)
	}
	d := a.GetDrain()
	if d == nil {
		return reject(CodeFailedPrecondition, "agent %s is not draining", id)
	}
	i := slices.IndexFunc(d.GetAnswers(), func(ans *agorav1.InverseOfferAnswer) bool { return ans.GetFrameworkId() == fid })
	if i >= 0 && d.GetAnswers()[i].GetAccepted() == c.GetAccept() {
		return nil
	}
	if i < 0 && !x.hasTaskOn(fid, id) {
		return reject(CodeFailedPrecondition, "framework %s has no task on agent %s", fid, id)
	}
	n := clone(a)
	ans := &agorav1.InverseOfferAnswer{FrameworkId: fid, Accepted: c.GetAccept(), AnsweredAt: ts(c.GetNow())}
	if i >= 0 {
		n.Drain.Answers[i] = ans
	} else {
		n.Drain.Answers = append(n.Drain.Answers, ans)
		slices.SortFunc(n.Drain.Answers, func(p, q *agorav1.InverseOfferAnswer) int {
			return strings.Compare(p.GetFrameworkId(), q.GetFrameworkId())
		})
	}
	x.putAgent(n)
	return nil
}

// hasTaskOn reports whether framework fid has a task (in any state) on agent.
func (x *txn) hasTaskOn(fid, agentID string) bool {
	found := false
	x.t.Root().WalkPrefix(tableKey(xTaskAgent, agentID, fid, ""), func([]byte, interface{}) bool {
		found = true
		return true
	})
	return found
}

// InverseOffers returns the inverse offers of the drained agents on which
// framework fid has live tasks, by agent id: what a (re)subscribing
// framework is told.
func (s *State) InverseOffers(fid string) []*agorav1.InverseOffer {
	var out []*agorav1.InverseOffer
	for _, a := range s.Agents() {
		if a.GetDrain() == nil {
			continue
		}
		var live []*agorav1.Task
		for _, t := range s.TasksByAgent(a.GetId()) {
			if t.GetFrameworkId() == fid && !IsTerminal(t.GetState()) {
				live = append(live, t)
			}
		}
		out = append(out, inverseOffersOf(a, live, s.Framework)...)
	}
	return out
}

// checkDrains audits the drain rules: an ACTIVE agent has no drain record
// and a DRAINING or DRAINED one has; DRAINED means no live task there and
// DRAINING at least one; a drained agent has no outstanding offer.
func (s *State) checkDrains() error {
	for _, a := range s.Agents() {
		id, st := a.GetId(), a.GetState()
		live := 0
		for _, t := range s.TasksByAgent(id) {
			if !IsTerminal(t.GetState()) {
				live++
			}
		}
		switch {
		case st == agorav1.AgentState_AGENT_STATE_ACTIVE && a.GetDrain() != nil:
			return fmt.Errorf("agent %s is ACTIVE with a drain record", id)
		case isDrainState(st) && a.GetDrain() == nil:
			return fmt.Errorf("agent %s is %s without a drain record", id, agentStateName(st))
		case st == agorav1.AgentState_AGENT_STATE_DRAINED && live > 0:
			return fmt.Errorf("agent %s is DRAINED with %d live tasks", id, live)
		case st == agorav1.AgentState_AGENT_STATE_DRAINING && live == 0:
			return fmt.Errorf("agent %s is DRAINING with no live task", id)
		case a.GetDrain() != nil && len(s.OffersByAgent(id)) > 0:
			return fmt.Errorf("drained agent %s has %d outstanding offers", id, len(s.OffersByAgent(id)))
		}
	}
	return nil
}
