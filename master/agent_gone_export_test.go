package master

// AgentGoneStatsForTest is what a master counted of agent-gone hints.
type AgentGoneStatsForTest struct {
	// As the leader: hints received, and what the tracker made of them.
	Received, Probed, Ignored, Limited int64
	// Verdicts of all direct probes the leader ran.
	Answered, Missed int64
	// As any master: hints passed to the leader, and cut-off polls whose
	// agent polled again within the settle time (no hint).
	Forwarded, Repolled int64
}

// AgentGoneStatsForTest returns m's agent-gone hint counters.
func (m *Master) AgentGoneStatsForTest() AgentGoneStatsForTest {
	s := &m.leader.hintStats
	return AgentGoneStatsForTest{
		Received: s.received.Load(), Probed: s.probed.Load(), Ignored: s.ignored.Load(), Limited: s.limited.Load(),
		Answered: s.answered.Load(), Missed: s.missed.Load(),
		Forwarded: s.forwarded.Load(), Repolled: m.agentSrv.polls.repolled.Load(),
	}
}
