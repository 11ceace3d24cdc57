package master

import "time"

// LeaderWatchForTest returns the leader watch's counters: dials of a
// silent leader, how many were refused, and elections started.
func (m *Master) LeaderWatchForTest() (probes, refused, acted int64) {
	return m.watch.probes.Load(), m.watch.refused.Load(), m.watch.acted.Load()
}

// SetLeaderWatchStaleForTest sets how long a follower must have gone
// without contact from the leader before it probes the leader's Raft
// address. Call before Start.
func (m *Master) SetLeaderWatchStaleForTest(d time.Duration) {
	m.watch.stale = d
}
