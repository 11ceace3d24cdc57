package devcluster

import (
	"fmt"
	"net"
	"testing"
)

func TestE2ETaskIndex(t *testing.T) {
	r := &e2eRun{running: make([]bool, 7), base: []int{0, 4}} // 4 tasks of framework 0, 3 of framework 1
	for id, want := range map[string]int{"t0-0000000": 0, "t0-0000003": 3, "t1-0000000": 4, "t1-0000002": 6} {
		if got, ok := r.taskIndex(id); !ok || got != want {
			t.Errorf("taskIndex(%q) = %d, %v; want %d", id, got, ok, want)
		}
	}
	for _, id := range []string{"t0-0000004", "t1-0000003", "t2-0000000", "x0-0000000", "t0", "t-1-1", "t0-x", ""} {
		if i, ok := r.taskIndex(id); ok {
			t.Errorf("taskIndex(%q) = %d, want no task", id, i)
		}
	}
}

// TestFreeTCPPorts: every port of a range is free, and two ranges never
// overlap while both are held.
func TestFreeTCPPorts(t *testing.T) {
	a, err := FreeTCPPorts(40)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FreeTCPPorts(40)
	if err != nil {
		t.Fatal(err)
	}
	if a < b+40 && b < a+40 {
		t.Fatalf("ranges [%d, %d) and [%d, %d) overlap", a, a+40, b, b+40)
	}
	for p := a; p < a+40; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d of the range is not free: %v", p, err)
		}
		l.Close()
	}
}
