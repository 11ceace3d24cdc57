package master

// HoldReadyForTest makes a leader look as if it had just won an election
// and its leadership Barrier had not completed yet; release marks it ready
// again for the term it had.
func (m *Master) HoldReadyForTest() (release func()) {
	term := m.readyTerm.Load()
	m.readyTerm.Store(0)
	return func() { m.setReady(term) }
}
