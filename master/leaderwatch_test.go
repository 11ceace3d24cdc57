package master_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/master"
)

func startWatchCluster(t *testing.T, onNew func(int, *master.Master)) *devcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The default profile (1 s heartbeat timeout) leaves raft's own
	// detection far behind the watch's (300 ms), even under -race.
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: testLogger(),
		RaftProfile: master.RaftProfileDefault, OnNew: onNew})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// A killed leader's Raft address refuses connections: a follower's leader
// watch sees it and starts the election itself, without waiting out
// raft's heartbeat timeout. (Without the watch a survivor still wins, by
// raft's timeout, but no watch has acted.)
func TestLeaderWatchElectsWhenLeaderKilled(t *testing.T) {
	c := startWatchCluster(t, nil)
	li := c.LeaderIndex()
	old := c.Master(li)
	term := old.Raft().CurrentTerm()
	c.Kill(li)

	waitUntil(t, 30*time.Second, "a new leader among the survivors", func() error {
		for i, m := range c.Masters() {
			if i != li && m.IsLeader() && m.Raft().CurrentTerm() > term {
				return nil
			}
		}
		return fmt.Errorf("no survivor leads in a term after %d", term)
	})
	var acted, refused int64
	for i, m := range c.Masters() {
		if i == li {
			continue
		}
		_, r, a := m.LeaderWatchForTest()
		refused += r
		acted += a
	}
	if refused == 0 || acted == 0 {
		t.Fatalf("leader watch on the survivors: %d refused probes, %d elections started; want both > 0", refused, acted)
	}
}

// A live leader is never deposed by the watch: with followers that probe
// the leader on every chance (as if they were slow to hear from it, the
// threshold set to nothing), every dial is accepted, so none is counted
// refused and no follower starts an election. (Whether raft itself keeps
// the leader is raft's timing, not asserted: a loaded machine may time it
// out.)
func TestLeaderWatchLeavesLiveLeaderAlone(t *testing.T) {
	c := startWatchCluster(t, func(_ int, m *master.Master) { m.SetLeaderWatchStaleForTest(time.Nanosecond) })
	li := c.LeaderIndex()

	waitUntil(t, 30*time.Second, "followers probing the live leader", func() error {
		for i, m := range c.Masters() {
			if i == li {
				continue
			}
			if p, _, _ := m.LeaderWatchForTest(); p < 10 {
				return fmt.Errorf("%s probed the leader %d times", m.ID(), p)
			}
		}
		return nil
	})
	for _, m := range c.Masters() {
		if p, r, a := m.LeaderWatchForTest(); r != 0 || a != 0 {
			t.Errorf("%s: %d probes of a live leader, %d refused, %d elections started; want none refused or started", m.ID(), p, r, a)
		}
	}
}
