package check

import (
	"testing"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestLostObjects(t *testing.T) {
	acked := map[string]bool{"f/t1": true, "f/t2": true, "f/t3": true}
	removed := map[string]bool{"f/t2": true}
	if v := LostObjects("task", acked, removed, map[string]bool{"f/t1": true, "f/t3": true}); len(v) != 0 {
		t.Fatalf("false positive: %v", v)
	}
	// Planted: t3 vanished; t2 may have been killed and cleaned up.
	v := LostObjects("task", acked, removed, map[string]bool{"f/t1": true})
	if len(v) != 1 || v[0].Checker != "lost-write" {
		t.Fatalf("lost task not caught: %v", v)
	}
}

func TestOfferTokens(t *testing.T) {
	if v := OfferTokens(map[string]int{"o1": 1, "o2": 0}); len(v) != 0 {
		t.Fatalf("false positive: %v", v)
	}
	if v := OfferTokens(map[string]int{"o1": 2}); len(v) != 1 {
		t.Fatalf("offer accepted twice not caught: %v", v)
	}
}

func TestConverged(t *testing.T) {
	mk := func(weight float64) *fsm.FSM {
		f := fsm.New(fsm.Config{})
		if res, err := f.ApplyMessage(1, fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "web", Weight: weight}}); err != nil || res.Err != nil {
			t.Fatalf("%v %v", err, res.Err)
		}
		return f
	}
	a, b := mk(2), mk(2)
	if v := Converged([]*fsm.State{a.State(), b.State()}); len(v) != 0 {
		t.Fatalf("false positive: %v", v)
	}
	// Planted: a replica applied a different value at the same index.
	v := Converged([]*fsm.State{a.State(), mk(3).State()})
	if len(v) != 1 || v[0].Checker != "divergence" {
		t.Fatalf("divergence not caught: %v", v)
	}
}
