package ui

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// pageNames lists the page templates; each is parsed with the layout.
var pageNames = []string{
	"error", "overview", "agents", "agent", "frameworks", "framework", "explain",
	"tasks", "task", "offers", "reservations", "roles", "services", "service",
}

type navItem struct{ Key, Label, Href string }

var nav = []navItem{
	{"overview", "Overview", "/ui/"}, {"agents", "Agents", "/ui/agents"}, {"frameworks", "Frameworks", "/ui/frameworks"},
	{"tasks", "Tasks", "/ui/tasks"}, {"offers", "Offers", "/ui/offers"}, {"reservations", "Reservations & volumes", "/ui/reservations"},
	{"roles", "Roles", "/ui/roles"}, {"services", "Services", "/ui/services"},
}

// enumValues lists an enum's names without prefix and the UNSPECIFIED value.
func enumValues(names map[int32]string, prefix string) []string {
	out := make([]string, 0, len(names))
	for i := int32(1); int(i) < len(names)+1; i++ {
		if n, ok := names[i]; ok {
			out = append(out, strings.TrimPrefix(n, prefix))
		}
	}
	return out
}

var (
	agentStateNames = enumValues(agorav1.AgentState_name, "AGENT_STATE_")
	taskStateNames  = enumValues(agorav1.TaskState_name, "TASK_STATE_")
)

var funcs = template.FuncMap{
	"navItems":    func() []navItem { return nav },
	"raftToken":   raftToken,
	"agentStates": func() []string { return agentStateNames },
	"taskStates":  func() []string { return taskStateNames },
	"res":         resText,
	"attrs":       attrText,
	"ts": func(t *timestamppb.Timestamp) string {
		if t == nil {
			return ""
		}
		return t.AsTime().UTC().Format(time.RFC3339)
	},
	"time": func(t time.Time) string {
		if t.IsZero() || t.Unix() == 0 {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	// until is the time from now to t, rounded; negative says "ago".
	"until": func(now time.Time, t *timestamppb.Timestamp) string {
		if t == nil {
			return ""
		}
		d := t.AsTime().Sub(now).Round(time.Second)
		if d < 0 {
			return (-d).String() + " ago"
		}
		return "in " + d.String()
	},
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f) },
	"bar":   bar,
	"lower": strings.ToLower,
	"join":  strings.Join,
	"stateClass": func(s string) string {
		switch s {
		case "RUNNING", "ACTIVE", "CONNECTED", "FINISHED", "leader", "COMPLETE", "DONE":
			return "s-ok"
		case "DRAINING", "DRAINED", "KILLING", "STAGING", "STARTING", "DISCONNECTED", "RESTARTING", "PENDING", "UNREACHABLE", "follower", "candidate", "IN_PROGRESS":
			return "s-warn"
		case "FAILED", "KILLED", "ERROR", "LOST", "GONE", "TORN_DOWN", "DROPPED", "GONE_BY_OPERATOR", "UNKNOWN", "unknown":
			return "s-bad"
		}
		return ""
	},
	"victims": func(refs []*agorav1.TaskRef) string {
		parts := make([]string, 0, len(refs))
		for _, r := range refs {
			parts = append(parts, r.GetFrameworkId()+"/"+r.GetTaskId())
		}
		return strings.Join(parts, ", ")
	},
}

func parseTemplates() map[string]*template.Template {
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t := template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
		out[name] = t
	}
	return out
}

// bar draws a utilization bar: used and offered stacked on one line, and
// reserved (when > 0) as a thin line below, all in percent. It is SVG with
// attributes rather than inline styles, which the Content-Security-Policy
// forbids.
func bar(used, offered, reserved float64) template.HTML {
	clamp := func(v float64) float64 { return max(0, min(100, v)) }
	used, offered, reserved = clamp(used), clamp(offered), clamp(reserved)
	offered = min(offered, 100-used)
	return template.HTML(fmt.Sprintf(`<svg class="bar" viewBox="0 0 100 12" preserveAspectRatio="none" role="img" aria-label="%.1f%% used">`+
		`<rect class="track" width="100" height="9"/><rect class="used" width="%.2f" height="9"/>`+
		`<rect class="offered" x="%.2f" width="%.2f" height="9"/><rect class="reserved" y="10" width="%.2f" height="2"/></svg>`,
		used, used, used, offered, reserved))
}
