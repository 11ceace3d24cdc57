package devcluster

import "testing"

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
