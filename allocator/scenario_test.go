package allocator

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/resources"
	"github.com/cockroachdb/datadriven"
)

// cluster is the scenario harness: a mutable model of what the master
// replicates, from which each `allocate` builds a Snapshot. Offers made by
// `allocate` stay outstanding (counted as allocated, not free) until
// accepted, declined or rescinded, as in the master.
type cluster struct {
	agents      []*Agent
	frameworks  []*Framework
	roles       []Role
	min         resources.Resources
	outstanding []Offer
	excluded    map[string]Reason // agent id -> draining or unreachable
	earmarks    []Earmark
}

func (c *cluster) agent(t testing.TB, id string) *Agent {
	for _, a := range c.agents {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("unknown agent %q", id)
	return nil
}

func (c *cluster) framework(t testing.TB, id string) *Framework {
	for _, f := range c.frameworks {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("unknown framework %q", id)
	return nil
}

func parseRes(t testing.TB, d *datadriven.TestData, key string) resources.Resources {
	var spec string
	d.ScanArgs(t, key, &spec)
	r, err := resources.Parse(spec)
	if err != nil {
		t.Fatalf("%s: %v", d.Pos, err)
	}
	return r
}

func optArg(d *datadriven.TestData, key string) (string, bool) {
	arg, ok := d.Arg(key)
	if !ok || len(arg.Vals) == 0 {
		return "", false
	}
	return arg.Vals[0], true
}

func unix(t testing.TB, s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return time.Unix(n, 0)
}

// release returns the outstanding offers that match keep == false to the
// agents' free pools and the frameworks' allocations.
func (c *cluster) release(t testing.TB, match func(Offer) bool, toFree bool) int {
	n := 0
	var left []Offer
	for _, o := range c.outstanding {
		if !match(o) {
			left = append(left, o)
			continue
		}
		n++
		if !toFree {
			continue // accepted: stays allocated, now used by tasks
		}
		a := c.agent(t, o.AgentID)
		a.Unreserved = a.Unreserved.Add(o.Unreserved)
		if !o.Reserved.IsEmpty() {
			a.Reserved[o.Role] = a.Reserved[o.Role].Add(o.Reserved)
		}
		f := c.framework(t, o.FrameworkID)
		held, err := f.Allocated[o.Role].Subtract(o.Resources())
		if err != nil {
			t.Fatalf("releasing %+v: %v", o, err)
		}
		f.Allocated[o.Role] = held
	}
	c.outstanding = left
	return n
}

func (c *cluster) snapshot() Snapshot {
	s := Snapshot{Roles: c.roles, MinAllocatable: c.min, Earmarks: c.earmarks}
	for _, a := range c.agents {
		if r, ok := c.excluded[a.ID]; ok {
			s.Excluded = append(s.Excluded, ExcludedAgent{ID: a.ID, Reason: r})
			continue
		}
		s.Agents = append(s.Agents, *a)
	}
	for _, f := range c.frameworks {
		s.Frameworks = append(s.Frameworks, *f)
	}
	return s
}

// shares prints each role's and framework's dominant share of the cluster.
func (c *cluster) shares() string {
	var total resources.Resources
	for _, a := range c.agents {
		total = total.Add(a.Total)
	}
	share := func(r resources.Resources) float64 {
		m := 0.0
		for n, t := range total.Scalars {
			m = max(m, float64(r.Milli(n))/float64(t))
		}
		return m
	}
	weights := map[string]float64{}
	for _, r := range c.roles {
		weights[r.Name] = r.Weight
	}
	roleAlloc := map[string]resources.Resources{}
	fwShares := map[string][]string{}
	for _, f := range c.frameworks {
		for _, role := range f.Roles {
			roleAlloc[role] = roleAlloc[role].Add(f.Allocated[role])
			fwShares[role] = append(fwShares[role], fmt.Sprintf("%s=%.3f", f.ID, share(f.Allocated[role])))
		}
	}
	var names []string
	for n := range roleAlloc {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		w := weights[n]
		if w <= 0 {
			w = 1
		}
		fmt.Fprintf(&b, "role %s: share=%.3f weighted=%.3f [%s]\n", n, share(roleAlloc[n]), share(roleAlloc[n])/w, strings.Join(fwShares[n], " "))
	}
	return b.String()
}

func (c *cluster) run(t testing.TB, d *datadriven.TestData) string {
	switch d.Cmd {
	case "agent":
		// agent id=ID res=FREE [used=USED]: total is free + used + reservations.
		var id string
		d.ScanArgs(t, "id", &id)
		a := &Agent{ID: id, Unreserved: parseRes(t, d, "res"), Reserved: map[string]resources.Resources{}}
		a.Total = a.Unreserved
		if d.HasArg("used") {
			a.Total = a.Total.Add(parseRes(t, d, "used"))
		}
		c.agents = append(c.agents, a)
		return ""
	case "agent-state":
		// agent-state AGENT state=active|draining|unreachable: the master
		// offers nothing of a draining, restarting or unreachable agent.
		a := c.agent(t, d.CmdArgs[0].Key)
		var state string
		d.ScanArgs(t, "state", &state)
		if c.excluded == nil {
			c.excluded = map[string]Reason{}
		}
		switch state {
		case "active":
			delete(c.excluded, a.ID)
		case "draining":
			c.excluded[a.ID] = ReasonAgentDraining
		case "unreachable":
			c.excluded[a.ID] = ReasonAgentUnreachable
		case "restarting":
			c.excluded[a.ID] = ReasonAgentRestarting
		default:
			t.Fatalf("%s: unknown agent state %q", d.Pos, state)
		}
		return ""
	case "reserve":
		// reserve AGENT role=R res=RES: a free reservation, added to the agent's total.
		a := c.agent(t, d.CmdArgs[0].Key)
		var role string
		d.ScanArgs(t, "role", &role)
		r := parseRes(t, d, "res")
		a.Reserved[role] = a.Reserved[role].Add(r)
		a.Total = a.Total.Add(r)
		return ""
	case "framework":
		var id, roles string
		d.ScanArgs(t, "id", &id)
		d.ScanArgs(t, "roles", &roles)
		c.frameworks = append(c.frameworks, &Framework{
			ID: id, Roles: strings.Split(roles, ","),
			Suppressed: map[string]bool{}, Allocated: map[string]resources.Resources{},
			Revocable: d.HasArg("revocable"),
		})
		return ""
	case "earmark":
		// earmark agent=A fw=F role=R res=RES [pending]: hold RES of A for
		// F's role R (pending: its victims are still ending, so it is held
		// but not offered); "earmark clear" drops them all.
		if d.HasArg("clear") {
			c.earmarks = nil
			return ""
		}
		var m Earmark
		d.ScanArgs(t, "agent", &m.AgentID)
		d.ScanArgs(t, "fw", &m.FrameworkID)
		d.ScanArgs(t, "role", &m.Role)
		m.Resources = parseRes(t, d, "res")
		m.Pending = d.HasArg("pending")
		c.earmarks = append(c.earmarks, m)
		return ""
	case "role":
		var r Role
		d.ScanArgs(t, "name", &r.Name)
		if v, ok := optArg(d, "weight"); ok {
			r.Weight, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := optArg(d, "priority"); ok {
			p, _ := strconv.Atoi(v)
			r.Priority = int32(p)
		}
		if v, ok := optArg(d, "maxutil"); ok {
			r.MaxUtilization, _ = strconv.ParseFloat(v, 64)
		}
		if d.HasArg("guarantee") {
			r.Guarantee = parseRes(t, d, "guarantee")
		}
		if d.HasArg("limit") {
			r.Limit = parseRes(t, d, "limit")
		}
		c.roles = slices.DeleteFunc(c.roles, func(o Role) bool { return o.Name == r.Name })
		c.roles = append(c.roles, r)
		return ""
	case "allocated":
		// allocated FW role=R res=RES: what the framework holds (tasks) in R.
		f := c.framework(t, d.CmdArgs[0].Key)
		var role string
		d.ScanArgs(t, "role", &role)
		f.Allocated[role] = parseRes(t, d, "res")
		return ""
	case "filter":
		f := c.framework(t, d.CmdArgs[0].Key)
		var agent, until string
		d.ScanArgs(t, "agent", &agent)
		d.ScanArgs(t, "until", &until)
		f.Filters = append(f.Filters, Filter{AgentID: agent, Until: unix(t, until)})
		return ""
	case "suppress":
		f := c.framework(t, d.CmdArgs[0].Key)
		var role string
		d.ScanArgs(t, "role", &role)
		f.Suppressed[role] = true
		return ""
	case "revive":
		// revive FW [role=R]: unsuppress R (or all roles) and drop all filters.
		f := c.framework(t, d.CmdArgs[0].Key)
		if role, ok := optArg(d, "role"); ok {
			delete(f.Suppressed, role)
		} else {
			clear(f.Suppressed)
		}
		f.Filters = nil
		return ""
	case "minalloc":
		c.min = parseRes(t, d, "res")
		return ""
	case "decline":
		// decline FW agent=A [until=T]: return FW's outstanding offers on A, optionally filter A.
		fw := d.CmdArgs[0].Key
		var agent string
		d.ScanArgs(t, "agent", &agent)
		n := c.release(t, func(o Offer) bool { return o.FrameworkID == fw && o.AgentID == agent }, true)
		if until, ok := optArg(d, "until"); ok {
			f := c.framework(t, fw)
			f.Filters = append(f.Filters, Filter{AgentID: agent, Until: unix(t, until)})
		}
		return fmt.Sprintf("declined %d offer(s)", n)
	case "accept":
		// accept FW agent=A: the outstanding offers become used by tasks.
		fw := d.CmdArgs[0].Key
		var agent string
		d.ScanArgs(t, "agent", &agent)
		n := c.release(t, func(o Offer) bool { return o.FrameworkID == fw && o.AgentID == agent }, false)
		return fmt.Sprintf("accepted %d offer(s)", n)
	case "rescind":
		n := c.release(t, func(Offer) bool { return true }, true)
		return fmt.Sprintf("rescinded %d offer(s)", n)
	case "allocate":
		// allocate [now=T] [seed=S] [quiet]: one round; offers stay
		// outstanding. Prints the offers, the shares and, per framework,
		// a "why" line: its offers and the reasons it got nothing of the
		// other (role, agent) pairs, each with an example agent.
		now, seed := time.Unix(0, 0), uint64(1)
		if v, ok := optArg(d, "now"); ok {
			now = unix(t, v)
		}
		if v, ok := optArg(d, "seed"); ok {
			seed, _ = strconv.ParseUint(v, 10, 64)
		}
		s := c.snapshot()
		var tr Trace
		offers := AllocateTraced(s, now, seed, &tr)
		// With earmarks, the reference and the trace check run on the
		// snapshot with the earmarked resources held, the held offers first.
		rest, held := holdEarmarks(s, now)
		want := referenceAllocate(rest, now, seed)
		if len(held) > 0 {
			want = append(held, want...)
			slices.SortStableFunc(want, func(a, b Offer) int {
				return cmp.Or(strings.Compare(a.FrameworkID, b.FrameworkID), strings.Compare(a.AgentID, b.AgentID), strings.Compare(a.Role, b.Role))
			})
			markRevocable(s, want)
		}
		if formatOffers(want) != formatOffers(offers) {
			t.Fatalf("%s: Allocate differs from the reference:\n%s\nreference:\n%s", d.Pos, formatOffers(offers), formatOffers(want))
		}
		if len(held) == 0 {
			// rest is s unless pending earmarks hold resources unoffered.
			if err := checkTrace(rest, now, offers, &tr); err != nil {
				t.Fatalf("%s: %v", d.Pos, err)
			}
		}
		for _, o := range offers {
			a := c.agent(t, o.AgentID)
			left, err := a.Unreserved.Subtract(o.Unreserved)
			if err != nil {
				t.Fatalf("offer %+v: %v", o, err)
			}
			a.Unreserved = left
			if !o.Reserved.IsEmpty() {
				if a.Reserved[o.Role], err = a.Reserved[o.Role].Subtract(o.Reserved); err != nil {
					t.Fatalf("offer %+v: %v", o, err)
				}
			}
			f := c.framework(t, o.FrameworkID)
			f.Allocated[o.Role] = f.Allocated[o.Role].Add(o.Resources())
		}
		c.outstanding = append(c.outstanding, offers...)
		out := formatOffers(offers)
		if len(offers) == 0 {
			out = "no offers\n"
		}
		if d.HasArg("quiet") {
			out = fmt.Sprintf("%d offer(s)\n", len(offers))
		}
		return out + c.shares() + formatTrace(&tr)
	case "shares":
		return c.shares()
	case "offers":
		// offers: count outstanding offers per framework and role.
		counts := map[string]int{}
		for _, o := range c.outstanding {
			counts[o.FrameworkID+" role="+o.Role]++
		}
		var keys []string
		for k := range counts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %d\n", k, counts[k])
		}
		return b.String()
	}
	t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	return ""
}

func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		if !strings.HasSuffix(path, ".txt") {
			return // e.g. rapid's failure files under testdata/rapid
		}
		c := &cluster{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return c.run(t, d)
		})
	})
}
