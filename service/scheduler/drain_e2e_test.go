package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// agentView is the operator API's view of one agent.
func (e *e2e) agent(id string) (*agorav1.AgentView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.cl.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
	if err != nil {
		return nil, err
	}
	for _, a := range res.Msg.GetAgents() {
		if a.GetAgent().GetId() == id {
			return a, nil
		}
	}
	return nil, fmt.Errorf("no agent %s", id)
}

// TestServiceDrainEndToEnd: 3 kvservice pods (one per agent) on 4 agents;
// `agora drain` of a follower's agent with a deadline. The service moves
// the pod to the spare agent (new reservation, empty volume, caught up from
// the primary), the drained agent empties before its deadline and shows
// DRAINED, the keys written before are readable from the moved pod. The
// leader master is killed during the drain: the new leader carries it on
// and its deadline still fires (deadline_passed, applied by the new leader).
func TestServiceDrainEndToEnd(t *testing.T) {
	e := startE2E(t, 4)
	ctx := context.Background()
	addr := strings.Join(e.c.Addrs(), ",")

	spec := strings.Replace(string(kvSpec(e.bin, 3, "1")), `"kill_grace_seconds": 2`, `"placement": {"one_per": "agent"}, "kill_grace_seconds": 2`, 1)
	run, err := e.cl.Operator.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: []byte(spec)}))
	if err != nil {
		t.Fatal(err)
	}
	e.fid = run.Msg.GetFrameworkId()
	st := e.waitComplete("kvservice", 3)
	primary := st.Pods[0].Address
	for i := 0; i < 10; i++ {
		e.put(primary, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	victim := st.Pods[1]
	drained := victim.AgentID

	// Bad input through the CLI: one line, non-zero exit, nothing changes.
	for _, args := range [][]string{
		{"drain", "--addr", addr, "ghost"},
		{"drain", "--addr", addr, "--deadline", "-1m", drained},
		{"undrain", "--addr", addr, drained},
	} {
		out, err := exec.Command(e.bin, args...).CombinedOutput()
		if err == nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Fatalf("agora %v: %v %q, want a one-line error", args, err, out)
		}
	}
	if a, err := e.agent(drained); err != nil || a.GetAgent().GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		t.Fatalf("agent %s after refused CLI calls: %v %v", drained, a, err)
	}

	// Drain with a deadline well past the time a move takes.
	const drainFor = 45 * time.Second
	start := time.Now()
	out, err := exec.Command(e.bin, "drain", "--addr", addr, "--deadline", drainFor.String(), "--json", drained).Output()
	if err != nil {
		t.Fatalf("agora drain: %v %s", err, out)
	}
	var answer struct {
		State string `json:"state"`
		Drain struct {
			Deadline string `json:"deadline"`
		} `json:"drain"`
	}
	if err := json.Unmarshal(out, &answer); err != nil || answer.State != "DRAINING" || answer.Drain.Deadline == "" {
		t.Fatalf("agora drain --json = %s (%v)", out, err)
	}
	deadline := start.Add(drainFor)

	// The service answers the inverse offer; then the leader dies.
	e.poll("inverse offer accepted", func() (bool, string) {
		a, err := e.agent(drained)
		if err != nil {
			return false, err.Error()
		}
		for _, ans := range a.GetAgent().GetDrain().GetAnswers() {
			if ans.GetFrameworkId() == e.fid && ans.GetAccepted() {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%v", a.GetAgent().GetDrain())
	})
	old := e.c.LeaderIndex()
	if old < 0 {
		t.Fatal("no leader")
	}
	e.c.Kill(old)

	// The pod moves off; the agent empties and is DRAINED before the deadline.
	var emptiedAt time.Time
	e.poll("drained agent empty", func() (bool, string) {
		a, err := e.agent(drained)
		if err != nil {
			return false, err.Error()
		}
		if a.GetAgent().GetState() == agorav1.AgentState_AGENT_STATE_DRAINED {
			emptiedAt = time.Now()
			return true, ""
		}
		return false, a.GetAgent().GetState().String()
	})
	if emptiedAt.After(deadline) {
		t.Fatalf("agent %s emptied at %s, after its deadline %s", drained, emptiedAt, deadline)
	}
	t.Logf("drain of %s (1 kvservice pod, leader killed during it): empty after %s", drained, emptiedAt.Sub(start).Round(100*time.Millisecond))
	st = e.waitComplete("kvservice", 3)
	t.Logf("pod %s moved and ready %s after the drain", victim.Name, time.Since(start).Round(100*time.Millisecond))
	moved := st.Pods[1]
	if moved.AgentID == drained || moved.VolumeID == victim.VolumeID || moved.Address == victim.Address {
		t.Fatalf("pod 1 did not move: before %+v, after %+v", victim, moved)
	}
	for i := 0; i < 10; i++ {
		e.waitValue(moved.Address, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	if i := e.c.LeaderIndex(); i == old || i < 0 {
		t.Fatalf("leader after the kill: %d (was %d)", i, old)
	}

	// `agora agents` shows DRAINED.
	out, err = exec.Command(e.bin, "agents", "--addr", addr).Output()
	if err != nil {
		t.Fatalf("agora agents: %v", err)
	}
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == drained {
			found = f[2] == "DRAINED"
		}
	}
	if !found {
		t.Fatalf("agora agents does not show %s DRAINED:\n%s", drained, out)
	}

	// The new leader fires the deadline (nothing is left to kill).
	e.poll("deadline applied by the new leader", func() (bool, string) {
		a, err := e.agent(drained)
		if err != nil {
			return false, err.Error()
		}
		return a.GetAgent().GetDrain().GetDeadlinePassed(), fmt.Sprintf("%v", a.GetAgent().GetDrain())
	})
	if time.Now().Before(deadline) {
		t.Fatalf("deadline applied before %s", deadline)
	}

	// Undrain: ACTIVE again.
	out, err = exec.Command(e.bin, "undrain", "--addr", addr, drained).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ACTIVE") {
		t.Fatalf("agora undrain: %v %s", err, out)
	}
}
