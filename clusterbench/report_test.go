package clusterbench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
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

// TestE2ERowVerdicts: a run within its size's goal is met, one over it says
// by how much, and a size without a goal has no verdict.
func TestE2ERowVerdicts(t *testing.T) {
	run := E2ERun{Tasks: 1000000, Agents: 10000, Frameworks: 4, Seconds: 54.3, TasksPerSec: 18416, RaftEntries: 10598, Elections: 0, CPUSeconds: 115.6}
	for _, tc := range []struct {
		goal    float64
		seconds float64
		want    string
	}{
		{60, 54.3, "| <= 60 s | met |"},
		{60, 90, "| <= 60 s | **not met**: 1.5x the goal |"},
		{0, 54.3, "| - | - |"},
	} {
		run.Seconds = tc.seconds
		row := e2eRow(E2ESize{Agents: 10000, Tasks: 1000000, Frameworks: 4, GoalSeconds: tc.goal, Anchor: "peer"}, run)
		if !strings.Contains(row, tc.want) || !strings.HasPrefix(row, "| 1000000 tasks, 10000 agents, 4 frameworks |") {
			t.Errorf("goal %g, %g s: row %q, want it to hold %q", tc.goal, tc.seconds, row, tc.want)
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
