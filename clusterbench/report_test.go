package clusterbench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/agora-sched/agora/devcluster"
)

// wellFormed decodes svg as XML and counts elements by name.
func wellFormed(t *testing.T, svg []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
		}
	}
}

func TestLineChartHasOneLinePerSeries(t *testing.T) {
	svg := LineChart("round <time>", "agents", "ms", []Series{
		{Name: "1 framework", X: []float64{1000, 10000}, Y: []float64{1, 12}},
		{Name: "1000 & more", X: []float64{1000, 10000}, Y: []float64{2, 20}},
	})
	n := wellFormed(t, svg)
	if n["polyline"] != 2 || n["circle"] != 4 {
		t.Fatalf("want 2 lines and 4 points, got %v", n)
	}
}

func TestTimelineHasAMarkPerEvent(t *testing.T) {
	svg := Timeline("failover", []string{"a", "b", "c"}, [][]float64{{100, 200, 300}, {150, 90, 400}})
	n := wellFormed(t, svg)
	if n["circle"] != 2*3+3 { // marks plus the legend
		t.Fatalf("circles: %v", n)
	}
}

func TestReplaceSectionIsIdempotent(t *testing.T) {
	doc := "# Benchmarks\n\nhand-written\n"
	once := ReplaceSection(doc, "## Generated", "table 1\n")
	if !strings.Contains(once, "hand-written") || !strings.Contains(once, "table 1") {
		t.Fatalf("first pass: %q", once)
	}
	twice := ReplaceSection(once, "## Generated", "table 2\n")
	if strings.Contains(twice, "table 1") || !strings.Contains(twice, "table 2") || strings.Count(twice, SectionBegin) != 1 {
		t.Fatalf("second pass: %q", twice)
	}
	if ReplaceSection(twice, "## Generated", "table 2\n") != twice {
		t.Fatal("not idempotent")
	}
}

func TestVsGoal(t *testing.T) {
	for _, c := range []struct {
		v, goal float64
		higher  bool
		want    string
	}{{5, 10, false, "met"}, {20, 10, false, "**not met**: 2.0x the goal"}, {0.95, 0.9, true, "met"}, {0.45, 0.9, true, "**not met**: 50% short"}} {
		if got := vsGoal(c.v, c.goal, c.higher); got != c.want {
			t.Errorf("vsGoal(%v, %v, %v) = %q, want %q", c.v, c.goal, c.higher, got, c.want)
		}
	}
}

// TestE2ERowVerdicts: the row shows the median run of a size (judged
// against the goal: met, or by how much not), every run's time in run
// order and how many met the goal; a size without a goal has no verdict.
func TestE2ERowVerdicts(t *testing.T) {
	run := func(s float64, entries uint64) E2ERun {
		return E2ERun{E2EResult: devcluster.E2EResult{Tasks: 1000000, Agents: 10000, Frameworks: 4, Seconds: s, TasksPerSec: 1e6 / s, RaftEntries: entries}, CPUSeconds: 2 * s}
	}
	sz := E2ESize{Agents: 10000, Tasks: 1000000, Frameworks: 4, GoalSeconds: 60, Anchor: "peer"}
	for _, tc := range []struct {
		name string
		sz   E2ESize
		runs []E2ERun
		want []string
	}{
		{"one run, met", sz, []E2ERun{run(54.3, 7)}, []string{"| 54.30 s (18416 tasks/s), 7 raft entries", "| peer | <= 60 s | met |"}},
		{"median of three, met", sz, []E2ERun{run(72.7, 1), run(54.6, 2), run(44.7, 3)},
			[]string{"median of 3 runs (72.70, 54.60, 44.70 s in run order; 2 of 3 within the goal): 54.60 s", "2 raft entries", "| met |"}},
		{"median of three, not met", sz, []E2ERun{run(90, 1), run(50, 2), run(95, 3)},
			[]string{"(90.00, 50.00, 95.00 s in run order; 1 of 3 within the goal): 90.00 s", "**not met**: 1.5x the goal |"}},
		{"even count: the slower middle run", sz, []E2ERun{run(50, 1), run(58, 2), run(61, 3), run(70, 4)},
			[]string{"): 61.00 s", "3 raft entries", "**not met**"}},
		{"no goal", E2ESize{Agents: 10000, Tasks: 1000000, Frameworks: 4}, []E2ERun{run(54.3, 7)}, []string{"| - | - | - |"}},
	} {
		row := e2eRow(tc.sz, tc.runs)
		if !strings.HasPrefix(row, "| 1000000 tasks, 10000 agents, 4 frameworks |") {
			t.Errorf("%s: row %q", tc.name, row)
		}
		for _, w := range tc.want {
			if !strings.Contains(row, w) {
				t.Errorf("%s: row %q lacks %q", tc.name, row, w)
			}
		}
	}
}

// TestLastLines keeps what a progress bar drew last on each line.
func TestLastLines(t *testing.T) {
	in := "masters: a b\n 10/200 RUNNING\r 200/200 RUNNING\n\n{\"tasks\":200}\n"
	if got := lastLines(in, 1); got != `{"tasks":200}` {
		t.Errorf("last line %q", got)
	}
	if got := lastLines(in, 2); got != `200/200 RUNNING | {"tasks":200}` {
		t.Errorf("last two lines %q", got)
	}
	if got := lastLines("", 3); got != "" {
		t.Errorf("empty input: %q", got)
	}
}
