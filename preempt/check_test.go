package preempt

// fataler is what checkPlan needs of *testing.T and *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// checkPlan checks what a plan promises against its input alone: every
// unit is accounted for; victims and rescinded offers are of a lower
// priority than the demand they serve and named once; each decision makes
// room for its units and keeping any one of its victims would leave no
// room for one unit (never more than needed).
func checkPlan(t fataler, in Input, p Plan) {
	t.Helper()
	tasks := map[string]Task{}
	offers := map[string]Offer{}
	for _, a := range in.Agents {
		for _, tk := range a.Tasks {
			tasks[a.ID+"/"+tk.FrameworkID+"/"+tk.ID] = tk
		}
		for _, o := range a.Offers {
			offers[o.ID] = o
		}
	}
	prio := map[string]int32{}
	for _, d := range in.Demands {
		prio[d.FrameworkID+"/"+d.Role] = d.Priority
	}
	for i, v := range p.Verdicts {
		if v.Placed+v.Rescinding+v.Preempting+v.Unmet != in.Demands[i].Count {
			t.Fatalf("verdict %+v does not account for count %d", v, in.Demands[i].Count)
		}
		if (v.Unmet > 0) != (v.Reason != ReasonNone) {
			t.Fatalf("verdict %+v: unmet and reason disagree", v)
		}
	}
	usedOffer := map[string]bool{}
	for _, r := range p.Rescinds {
		o, ok := offers[r.OfferID]
		if !ok || usedOffer[r.OfferID] {
			t.Fatalf("rescind %+v: unknown or repeated offer", r)
		}
		usedOffer[r.OfferID] = true
		if o.Priority >= prio[r.ForFramework+"/"+r.ForRole] {
			t.Fatalf("rescind %+v: offer priority %d is not below the demand's", r, o.Priority)
		}
	}
	usedTask := map[string]bool{}
	for _, pr := range p.Preemptions {
		if len(pr.Victims) == 0 || pr.Units < 1 {
			t.Fatalf("preemption %+v: no victims or no units", pr)
		}
		freed := pr.Room
		for _, v := range pr.Victims {
			k := pr.AgentID + "/" + v.FrameworkID + "/" + v.ID
			if _, ok := tasks[k]; !ok || usedTask[k] {
				t.Fatalf("preemption on %s: victim %s unknown or repeated", pr.AgentID, k)
			}
			usedTask[k] = true
			if v.Priority >= pr.Priority {
				t.Fatalf("preemption on %s: victim %s of priority %d is not below %d", pr.AgentID, k, v.Priority, pr.Priority)
			}
			freed = freed.Add(v.Resources)
		}
		for _, o := range pr.Offers {
			if usedOffer[o.ID] || o.Priority >= pr.Priority {
				t.Fatalf("preemption on %s: offer %s repeated or not of a lower priority", pr.AgentID, o.ID)
			}
			usedOffer[o.ID] = true
			freed = freed.Add(o.Resources)
		}
		if !freed.Contains(pr.Resources) {
			t.Fatalf("preemption on %s: freed %s does not hold %s", pr.AgentID, freed, pr.Resources)
		}
		shape := pr.Shape
		for _, v := range pr.Victims {
			kept, err := freed.Subtract(v.Resources)
			if err == nil && kept.Contains(shape) {
				t.Fatalf("preemption on %s: victim %s/%s could be kept (freed %s, shape %s)", pr.AgentID, v.FrameworkID, v.ID, freed, shape)
			}
		}
	}
}
