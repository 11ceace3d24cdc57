package service

import (
	"slices"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestDrain: pods on drained agents move off one at a time, each as a
// replace (new reservation, empty volume, another agent), the old task
// stopped first and the next pod moved only once the moved one is ready.
func TestDrain(t *testing.T) {
	h := newHarness(t, kvSpec, 5, 1)
	h.settle()
	p1, p2 := *h.podOf("kv-kv-1"), *h.podOf("kv-kv-2")
	d1, d2 := p1.AgentID, p2.AgentID
	h.c.agent(d1).drained, h.c.agent(d2).drained = true, true
	if !h.st.Drain(d1) || !h.st.Drain(d2) {
		t.Fatal("Drain says no pod runs on the drained agents")
	}
	if h.st.Drain(d1); !slices.Equal(h.st.Status().Draining, sortedPair(d1, d2)) {
		t.Fatalf("draining = %v", h.st.Status().Draining)
	}
	h.check()
	// Plan order: kv-kv-1 moves first; kv-kv-2 is not touched yet.
	if ks := h.st.Kills(); len(ks) != 1 || ks[0].TaskID != p1.TaskID {
		t.Fatalf("kills = %+v, want only %s", ks, p1.TaskID)
	}
	if got := h.plan(); got != "IN_PROGRESS move kv-kv-1: waiting for an offer" {
		t.Errorf("plan = %q", got)
	}
	h.kills()
	spare := ""
	for _, a := range h.c.agents {
		if !slices.ContainsFunc(h.st.Pods, func(p *Pod) bool { return p.AgentID == a.id }) && !a.drained {
			spare = a.id
		}
	}
	d := h.offer(spare)
	if !slices.Equal(opTypes(d), []string{"RESERVE", "CREATE", "LAUNCH"}) {
		t.Fatalf("offer from %s: %v %v", spare, opTypes(d), d.Reasons)
	}
	moved := h.podOf("kv-kv-1")
	if moved.AgentID != spare || moved.VolumeID == p1.VolumeID {
		t.Fatalf("kv-kv-1 after the move: %+v", moved)
	}
	h.status(moved.TaskID, agorav1.TaskState_TASK_STATE_RUNNING)
	if ks := h.st.Kills(); len(ks) != 0 {
		t.Fatalf("kv-kv-2 killed before kv-kv-1 is ready: %+v", ks)
	}
	if err := h.st.MarkReady(moved.TaskID); err != nil {
		t.Fatal(err)
	}
	if ks := h.st.Kills(); len(ks) != 1 || ks[0].TaskID != p2.TaskID {
		t.Fatalf("kills once kv-kv-1 is ready = %+v, want %s", ks, p2.TaskID)
	}
	h.settle()
	for _, name := range []string{"kv-kv-0", "kv-kv-1", "kv-kv-2"} {
		p := h.podOf(name)
		if p.AgentID == d1 || p.AgentID == d2 || !p.Ready {
			t.Fatalf("%s after the drain: %+v", name, p)
		}
	}
	if got := h.plan(); got != "COMPLETE " {
		t.Fatalf("plan = %q", got)
	}
	// The old placements wait for their agents to offer again (undrained)
	// or to be forgotten (gone).
	if len(h.st.Releases) != 2 {
		t.Fatalf("releases = %+v", h.st.Releases)
	}
	h.st.Undrain(d1)
	h.c.agent(d1).drained = false
	h.settle()
	h.st.ForgetAgent(d2)
	if len(h.st.Releases) != 0 || len(h.st.Status().Draining) != 0 {
		t.Fatalf("after undrain and forget: releases %+v, draining %v", h.st.Releases, h.st.Status().Draining)
	}
	if h.c.vols[p1.VolumeID] != nil {
		t.Fatalf("old volume %s not destroyed after the undrain", p1.VolumeID)
	}
	// Draining an agent the service has no pod on changes nothing but the list.
	if h.st.Drain("nobody") {
		t.Fatal("Drain of an empty agent says a pod runs there")
	}
	if ks := h.st.Kills(); len(ks) != 0 {
		t.Fatalf("kills after draining an empty agent: %+v", ks)
	}
}

func sortedPair(a, b string) []string {
	if a > b {
		a, b = b, a
	}
	return []string{a, b}
}
