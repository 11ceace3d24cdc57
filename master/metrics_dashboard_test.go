package master

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardUsesDocumentedSeries: every agora series the Grafana
// dashboard queries is one docs/metrics.md documents (and so one the
// scrape test checks), so a renamed series cannot silently blank a panel.
func TestDashboardUsesDocumentedSeries(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/agora.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`agora_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				queried++
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
				if !strings.Contains(string(doc), "`"+base+"`") {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not document", p.Title, n)
				}
			}
		}
	}
	if queried < 20 {
		t.Fatalf("the dashboard queries only %d agora series", queried)
	}
}
