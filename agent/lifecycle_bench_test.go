package agent_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// BenchmarkGracefulRestart: an agent running 5 tasks of a framework that
// is not partition-aware stops gracefully and starts again; timed from the
// stop until the masters have it ACTIVE again with its tasks RUNNING (same
// status uuid: nothing for the framework). Reports p50/p99 (ms) and fails
// if the framework saw any status update across the restarts. stop-p50-ms
// is the part spent stopping (goodbye committed, gossip left).
//
//	go test -run '^$' -bench GracefulRestart -benchtime 30x ./agent/
func BenchmarkGracefulRestart(b *testing.B) {
	c := startLifeCluster(b, 10*time.Minute)
	s := &launcher{}
	c.runFramework(b, "plain", false, s)
	ids := []string{"b1", "b2", "b3", "b4", "b5"}
	var tasks = make([]*agorav1.TaskInfo, len(ids))
	for i, id := range ids {
		tasks[i] = lifeTask(id, pidTask)
	}
	s.launch(false, tasks...)
	for _, id := range ids {
		waitSeen(b, s, 30*time.Second, id, agorav1.TaskState_TASK_STATE_RUNNING)
	}
	fw := c.state().task("", "b1").GetFrameworkId()
	uuids := map[string]string{}
	seen := map[string]int{}
	for _, id := range ids {
		c.taskPid(b, fw, id)
		uuids[id] = c.state().task(fw, id).GetStatus().GetUuid()
		seen[id] = len(s.seen(id))
	}
	ctx := context.Background()
	var took, stops []time.Duration
	b.ResetTimer()
	for range b.N {
		since := c.state().agent("a1").GetStateSince().AsTime()
		start := time.Now()
		if err := c.StopAgent("a1"); err != nil {
			b.Fatal(err)
		}
		stops = append(stops, time.Since(start))
		if _, err := c.StartAgent(ctx, c.agent); err != nil {
			b.Fatal(err)
		}
		poll(b, 30*time.Second, "a1 ACTIVE again with its tasks", func() error {
			st := c.state()
			a := st.agent("a1")
			if ag := c.Agent("a1"); ag == nil || !ag.Registered() {
				return fmt.Errorf("a1 has not seen its registration committed")
			}
			if a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE || !a.GetStateSince().AsTime().After(since) {
				return fmt.Errorf("agent %s since %v", a.GetState(), a.GetStateSince().AsTime())
			}
			for _, id := range ids {
				t := st.task(fw, id)
				if t.GetState() != agorav1.TaskState_TASK_STATE_RUNNING || t.GetStatus().GetUuid() != uuids[id] {
					b.Fatalf("task %s is %s (uuid %s) after the restart; updates %v; tasks %v", id, t.GetState(), t.GetStatus().GetUuid(), s.seen(id), st.m.State().Tasks())
				}
			}
			return nil
		})
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	for _, id := range ids {
		if got := len(s.seen(id)); got != seen[id] {
			b.Fatalf("framework saw %d status updates of %s across the restarts", got-seen[id], id)
		}
	}
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(took, 0.50), "p50-ms")
	b.ReportMetric(pct(took, 0.99), "p99-ms")
	b.ReportMetric(pct(stops, 0.50), "stop-p50-ms")
	b.ReportMetric(0, "framework-updates")
}
