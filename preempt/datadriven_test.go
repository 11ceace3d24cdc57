package preempt

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/agora-sched/agora/resources"
)

// model is the scenario harness: a mutable cluster from which each `plan`
// builds an Input.
type model struct {
	agents   []*Agent
	demands  []Demand
	earmarks []Earmark
}

func (m *model) agent(t *testing.T, id string) *Agent {
	for _, a := range m.agents {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("unknown agent %s", id)
	return nil
}

func (m *model) input() Input {
	var in Input
	for _, a := range m.agents {
		c := *a
		c.Tasks = slices.Clone(a.Tasks)
		c.Offers = slices.Clone(a.Offers)
		in.Agents = append(in.Agents, c)
	}
	in.Demands = slices.Clone(m.demands)
	in.Earmarks = slices.Clone(m.earmarks)
	return in
}

func res(t *testing.T, d *datadriven.TestData, key string) resources.Resources {
	var spec string
	d.ScanArgs(t, key, &spec)
	r, err := resources.Parse(spec)
	if err != nil {
		t.Fatalf("%s: %v", d.Pos, err)
	}
	return r
}

func intArg(t *testing.T, d *datadriven.TestData, key string) int {
	var s string
	d.ScanArgs(t, key, &s)
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %s: %v", d.Pos, key, err)
	}
	return v
}

// TestDataDriven runs testdata/scenarios/*.txt:
//
//	agent id=A total=RES [free=RES]        free defaults to total
//	task A fw=F id=T role=R prio=P res=RES started=N
//	                                      a revocable task (N: seconds)
//	offer A id=O fw=F role=R prio=P res=RES
//	demand fw=F role=R prio=P shape=RES count=N [excluded=A,B]
//	earmark A fw=F role=R res=RES
//	plan [apply]                           one pass; with apply, the
//	                                      model carries it out: offers
//	                                      rescinded and victims ended
//	                                      (their resources free), and
//	                                      each decision an earmark
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		m := &model{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "agent":
				a := &Agent{}
				d.ScanArgs(t, "id", &a.ID)
				a.Total = res(t, d, "total")
				a.Free = a.Total
				if d.HasArg("free") {
					a.Free = res(t, d, "free")
				}
				m.agents = append(m.agents, a)
			case "task":
				a := m.agent(t, d.CmdArgs[0].Key)
				tk := Task{Priority: int32(intArg(t, d, "prio")), Resources: res(t, d, "res"),
					Started: time.Unix(int64(intArg(t, d, "started")), 0)}
				d.ScanArgs(t, "fw", &tk.FrameworkID)
				d.ScanArgs(t, "id", &tk.ID)
				d.ScanArgs(t, "role", &tk.Role)
				a.Tasks = append(a.Tasks, tk)
			case "offer":
				a := m.agent(t, d.CmdArgs[0].Key)
				o := Offer{Priority: int32(intArg(t, d, "prio")), Resources: res(t, d, "res")}
				d.ScanArgs(t, "id", &o.ID)
				d.ScanArgs(t, "fw", &o.FrameworkID)
				d.ScanArgs(t, "role", &o.Role)
				a.Offers = append(a.Offers, o)
			case "demand":
				dm := Demand{Priority: int32(intArg(t, d, "prio")), Shape: res(t, d, "shape"), Count: intArg(t, d, "count")}
				d.ScanArgs(t, "fw", &dm.FrameworkID)
				d.ScanArgs(t, "role", &dm.Role)
				if d.HasArg("excluded") {
					var ex string
					d.ScanArgs(t, "excluded", &ex)
					dm.Excluded = map[string]bool{}
					for _, a := range strings.Split(ex, ",") {
						dm.Excluded[a] = true
					}
				}
				m.demands = append(m.demands, dm)
			case "earmark":
				e := Earmark{AgentID: d.CmdArgs[0].Key, Resources: res(t, d, "res")}
				d.ScanArgs(t, "fw", &e.FrameworkID)
				d.ScanArgs(t, "role", &e.Role)
				m.earmarks = append(m.earmarks, e)
			case "plan":
				in := m.input()
				p := Decide(in)
				checkPlan(t, in, p)
				if d.HasArg("apply") {
					m.apply(t, p)
				}
				return format(p)
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			return ""
		})
	})
}

// apply carries a plan out in the model.
func (m *model) apply(t *testing.T, p Plan) {
	gone := map[string]bool{}
	for _, r := range p.Rescinds {
		gone[r.OfferID] = true
	}
	for _, pr := range p.Preemptions {
		for _, o := range pr.Offers {
			gone[o.ID] = true
		}
	}
	for _, a := range m.agents {
		a.Offers = slices.DeleteFunc(a.Offers, func(o Offer) bool {
			if gone[o.ID] {
				a.Free = a.Free.Add(o.Resources)
			}
			return gone[o.ID]
		})
	}
	for _, pr := range p.Preemptions {
		a := m.agent(t, pr.AgentID)
		for _, v := range pr.Victims {
			a.Tasks = slices.DeleteFunc(a.Tasks, func(x Task) bool { return x.FrameworkID == v.FrameworkID && x.ID == v.ID })
			a.Free = a.Free.Add(v.Resources)
		}
		m.earmarks = append(m.earmarks, Earmark{AgentID: pr.AgentID, FrameworkID: pr.FrameworkID, Role: pr.Role, Resources: pr.Resources})
	}
}

func format(p Plan) string {
	var b strings.Builder
	for _, r := range p.Rescinds {
		fmt.Fprintf(&b, "rescind %s (fw=%s agent=%s) for %s/%s\n", r.OfferID, r.FrameworkID, r.AgentID, r.ForFramework, r.ForRole)
	}
	for _, pr := range p.Preemptions {
		var vs []string
		for _, v := range pr.Victims {
			vs = append(vs, fmt.Sprintf("%s/%s(p%d,t%d)", v.FrameworkID, v.ID, v.Priority, v.Started.Unix()))
		}
		var os []string
		for _, o := range pr.Offers {
			os = append(os, o.ID)
		}
		fmt.Fprintf(&b, "preempt %s for %s/%s units=%d res=%s victims=[%s]", pr.AgentID, pr.FrameworkID, pr.Role, pr.Units, pr.Resources, strings.Join(vs, " "))
		if len(os) > 0 {
			fmt.Fprintf(&b, " offers=[%s]", strings.Join(os, " "))
		}
		b.WriteByte('\n')
	}
	for _, v := range p.Verdicts {
		fmt.Fprintf(&b, "demand %s/%s %s x%d: placed=%d rescinding=%d preempting=%d unmet=%d", v.FrameworkID, v.Role, v.Shape, v.Count, v.Placed, v.Rescinding, v.Preempting, v.Unmet)
		if v.Reason != ReasonNone {
			fmt.Fprintf(&b, " (%s)", v.Reason)
		}
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		return "nothing\n"
	}
	return b.String()
}
