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
