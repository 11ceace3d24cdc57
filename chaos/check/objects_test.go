package check

import "testing"

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
