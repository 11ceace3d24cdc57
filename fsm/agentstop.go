package fsm

import (
	"strings"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// agentStopped records an agent's goodbye.
//
// For a restart (decommission false) an ACTIVE, DRAINING or DRAINED agent becomes
// RESTARTING since now: its offers are rescinded, its tasks keep their
// state (frameworks see no status update), nothing is offered on it and it
// reports no status until it registers again. Saying it twice changes
// nothing (a drained agent keeps its drain record and comes back drained).
// An UNREACHABLE agent must register first (FailedPrecondition);
// a GONE one is refused too.
//
// Decommissioned, the agent becomes GONE: offers rescinded, live tasks
// GONE_BY_OPERATOR (partition-aware frameworks) or LOST, reservations and
// volumes deleted, and its id may not register again. An agent decommissions itself after killing its
// tasks, so usually none is left. Decommissioning a gone agent changes
// nothing.
func (x *txn) agentStopped(c *agorav1.AgentStoppedCommand) *Rejection {
	id := c.GetAgentId()
	if !ValidAgentID(id) {
		return reject(CodeInvalidArgument, "invalid agent id %q", id)
	}
	a, ok := x.agent(id)
	if !ok {
		return reject(CodeNotFound, "agent %s is not registered", id)
	}
	now := ts(c.GetNow())
	if c.GetDecommission() {
		if a.GetState() == agorav1.AgentState_AGENT_STATE_GONE {
			return nil
		}
		x.uuids = c.GetStatusUuids()
		x.agentLost(a, agorav1.AgentState_AGENT_STATE_GONE, agorav1.TaskState_TASK_STATE_GONE_BY_OPERATOR, "agent decommissioned", now)
		return nil
	}
	switch a.GetState() {
	case agorav1.AgentState_AGENT_STATE_RESTARTING:
		return nil
	case agorav1.AgentState_AGENT_STATE_ACTIVE, agorav1.AgentState_AGENT_STATE_DRAINING, agorav1.AgentState_AGENT_STATE_DRAINED:
	default:
		return reject(CodeFailedPrecondition, "agent %s is %s; only an active agent can stop for a restart", id, agentStateName(a.GetState()))
	}
	n := clone(a)
	n.State, n.StateSince = agorav1.AgentState_AGENT_STATE_RESTARTING, now
	x.putAgent(n)
	for _, o := range x.offersOnAgent(id) {
		x.removeOffer(o, "rescinded: agent stopping for a restart", true)
	}
	return nil
}

// agentStateName is an agent state in lower case ("restarting").
func agentStateName(s agorav1.AgentState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "AGENT_STATE_"))
}
