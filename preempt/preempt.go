package preempt

import (
	"cmp"
	"container/heap"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/resources"
)

// Input is everything a preemption pass looks at. The master builds it
// from replicated state; Plan never modifies it.
type Input struct {
	// Agents are the active agents.
	Agents []Agent
	// Demands are the connected frameworks' demand for roles they have not
	// suppressed.
	Demands []Demand
	// Earmarks are the preemptions in force: resources held for a
	// framework's role on an agent.
	Earmarks []Earmark
	// Kinds names the entries of the agents' Dense vectors: entry k is
	// the scalar Kinds[k]. Only agents with a Dense use it.
	Kinds []string
}

// Agent is one active agent.
type Agent struct {
	ID string
	// Total is the agent's capacity; a shape larger than every agent's
	// Total is unsatisfiable.
	Total resources.Resources
	// Free is what is free and unreserved now (not used, not offered).
	Free resources.Resources
	// Offers are the outstanding offers on the agent (their unreserved
	// scalars).
	Offers []Offer
	// Tasks are the agent's revocable live tasks that are not being killed:
	// the only possible victims.
	Tasks []Task
	// Dense, if not nil, is Total, Free and the Tasks' scalars, priorities
	// and start times as dense vectors (see Dense): Decide reads them
	// instead of the maps. It must agree with Total, Free and Tasks.
	Dense *Dense
}

// Dense is one agent's scalars as vectors over the first Stride kinds of
// Input.Kinds (a kind past Stride is 0 on the agent), and its tasks'
// priorities and start times, in the order of Agent.Tasks. The master
// keeps them between passes, so that a pass looks up no map per task.
type Dense struct {
	Stride int
	// Total and Free are Stride long.
	Total, Free []int64
	// Tasks holds Stride entries per task.
	Tasks []int64
	// Prios are the tasks' Priority; Starts their Started in Unix
	// nanoseconds.
	Prios  []int32
	Starts []int64
	// Sorted: Agent.Tasks are in reprieve order (as SortTasks leaves
	// them), so Decide need not sort them.
	Sorted bool
}

// SortTasks puts tasks in reprieve order: higher priorities first, then
// the earlier started, then by framework and task id. Decide's result does
// not depend on the order of an agent's tasks; an agent whose tasks are in
// this order (Dense.Sorted) costs it less.
func SortTasks(tasks []Task) {
	slices.SortFunc(tasks, func(x, y Task) int {
		if c := cmp.Compare(y.Priority, x.Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Started.UnixNano(), y.Started.UnixNano()); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(x.FrameworkID, y.FrameworkID), strings.Compare(x.ID, y.ID))
	})
}

// Offer is an outstanding offer.
type Offer struct {
	ID, FrameworkID, Role string
	// Priority is the priority of Role.
	Priority  int32
	Resources resources.Resources
}

// Task is a revocable live task, a possible victim.
type Task struct {
	FrameworkID, ID, Role string
	// Priority is the priority of Role.
	Priority  int32
	Resources resources.Resources
	// Started is when the task was launched.
	Started time.Time
	// KillGrace is the task's kill grace period; Decide does not use it,
	// the caller bounds its decisions with it.
	KillGrace time.Duration
}

// Demand is Count tasks of Shape that FrameworkID wants to run for Role.
type Demand struct {
	FrameworkID, Role string
	// Priority is the priority of Role.
	Priority int32
	Shape    resources.Resources
	Count    int
	// Excluded are agents the framework filtered (declined): nothing on
	// them counts for the demand, and nothing is rescinded or preempted
	// there for it.
	Excluded map[string]bool
}

// Earmark holds Resources of AgentID for FrameworkID's Role: a preemption
// in force.
type Earmark struct {
	AgentID, FrameworkID, Role string
	Resources                  resources.Resources
}

// Plan is the outcome of a pass: offers to rescind, preemptions to decide,
// and a verdict per demand.
type Plan struct {
	// Rescinds are the offers of lower priorities to withdraw, in order.
	Rescinds []Rescind
	// Preemptions are the decisions, in order.
	Preemptions []Preemption
	// Verdicts has one entry per demand, in the order of Input.Demands.
	Verdicts []Verdict
}

// Rescind withdraws an offer so that a demand of a higher priority fits.
type Rescind struct {
	OfferID, FrameworkID, AgentID string
	// For names the demand served: framework and role.
	ForFramework, ForRole string
}

// Preemption is one decision: kill Victims on AgentID so that Units
// shapes of a demand fit there (Resources is their sum), rescinding
// Offers (lower-priority offers on the agent) too.
type Preemption struct {
	AgentID, FrameworkID, Role string
	Priority                   int32
	Units                      int
	// Shape is the demand's shape; Resources is Units of it.
	Shape     resources.Resources
	Resources resources.Resources
	Victims   []Task
	Offers    []Offer
	// Room is what the agent had free for the demand before the decision
	// (after the units and decisions planned before it in the pass).
	Room resources.Resources
}

// Verdict is how a pass judged one demand: Placed units fit in free
// resources, the framework's own offers or its earmarks; Rescinding units
// fit once lower-priority offers are rescinded; Preempting units fit once
// victims are killed; Unmet units did not fit, for Reason.
type Verdict struct {
	FrameworkID, Role string
	Shape             resources.Resources
	Count             int
	Placed            int
	Rescinding        int
	Preempting        int
	Unmet             int
	Reason            Reason
}

// Reason says why demand is unmet.
type Reason int

// Reasons of unmet demand.
const (
	// ReasonNone: nothing is unmet.
	ReasonNone Reason = iota
	// ReasonUnsatisfiable: the shape is larger than any agent's total.
	ReasonUnsatisfiable
	// ReasonNoVictims: no agent can make room from free resources,
	// lower-priority offers and lower-priority revocable tasks.
	ReasonNoVictims
)

// String is the reason's stable name: "", "unsatisfiable", "no_victims".
func (r Reason) String() string {
	switch r {
	case ReasonUnsatisfiable:
		return "unsatisfiable"
	case ReasonNoVictims:
		return "no_victims"
	}
	return ""
}

// vec is a dense scalar vector in milli-units.
type vec []int64

func (v vec) fits(need vec) bool {
	for i, n := range need {
		if n > v[i] {
			return false
		}
	}
	return true
}

func (v vec) add(o vec) {
	for i := range o {
		v[i] += o[i]
	}
}

func (v vec) sub(o vec) {
	for i := range o {
		v[i] -= o[i]
	}
}

// fitsMinus reports whether v - o still holds need.
func (v vec) fitsMinus(o, need vec) bool {
	for i, n := range need {
		if v[i]-o[i] < n {
			return false
		}
	}
	return true
}

// decideBufs are a pass's largest buffers, reused by the next pass
// (decidePool); a Plan never points into them.
type decideBufs struct {
	agents []agent
	tasks  []task
	vecs   vec
	ptrs   []*agent
	cands  []candidate // the planner's first slab
}

var decidePool sync.Pool

// release drops what b points to and gives it back to decidePool.
func (b *decideBufs) release() {
	clear(b.agents)
	clear(b.ptrs)
	clear(b.cands[:cap(b.cands)])
	decidePool.Put(b)
}

// zeroed returns s resized to n zero values, reusing its array if it can.
func zeroed[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// take cuts the first n entries off *slab.
func take(slab *vec, n int) vec {
	v := (*slab)[:n:n]
	*slab = (*slab)[n:]
	return v
}

// gather sets dst[i] to src[cols[i]] (a dense vector of stride entries;
// a column past them, or -1, is 0: dst is zero already).
func gather(dst vec, src []int64, cols []int, stride int) {
	for i, c := range cols {
		if c >= 0 && c < stride {
			dst[i] = src[c]
		}
	}
}

type dims struct {
	index map[string]int
	names []string
	n     int
}

func (d *dims) see(r resources.Resources) {
	for name := range r.Scalars {
		if _, ok := d.index[name]; !ok {
			d.index[name] = d.n
			d.names = append(d.names, name)
			d.n++
		}
	}
}

// orderBy puts the kinds in the order of kinds, those not in it last by
// name.
func (d *dims) orderBy(kinds []string) {
	rank := func(name string) int {
		if k := slices.Index(kinds, name); k >= 0 {
			return k
		}
		return len(kinds)
	}
	slices.SortFunc(d.names, func(x, y string) int { return cmp.Or(cmp.Compare(rank(x), rank(y)), strings.Compare(x, y)) })
	for i, name := range d.names {
		d.index[name] = i
	}
}

// fill sets v to r's scalars of the known kinds.
func (d *dims) fill(v vec, r resources.Resources) {
	for i, name := range d.names {
		v[i] = r.Scalars[name]
	}
}

// res converts v back (positive entries only).
func (d *dims) res(v vec) resources.Resources {
	var out resources.Resources
	for name, i := range d.index {
		if v[i] > 0 {
			out = out.Add(resources.Milli(name, v[i]))
		}
	}
	return out
}

func (d *dims) vec(r resources.Resources) vec {
	v := make(vec, d.n)
	for name, m := range r.Scalars {
		if i, ok := d.index[name]; ok { // only the kinds demanded matter
			v[i] = m
		}
	}
	return v
}

// task holds no pointers, so that the pass's 100,000s of them cost the
// garbage collector nothing.
type task struct {
	start int64
	// idx is the task's index in Agent.Tasks and in its agent's tres.
	idx  int32
	prio int32
	gone bool // chosen as a victim in this pass
}

type offer struct {
	o    *Offer
	res  vec
	gone bool // rescinded in this pass
}

type agent struct {
	a *Agent
	// version counts changes to avail, tasks and offers in this pass.
	version int
	total   vec
	avail   vec // free for anyone: Free minus what earmarks hold
	// tasks are in input order until sorted is set, then in reprieve
	// order; only agents whose victims are chosen exactly get sorted.
	tasks  []task
	sorted bool
	// tres are the tasks' vectors, one after the other in input order;
	// read only (they may be the input's Dense.Tasks).
	tres   vec
	offers []*offer
}

// res is t's vector (n kinds).
func (a *agent) res(t *task, n int) vec {
	return a.tres[int(t.idx)*n : int(t.idx+1)*n : int(t.idx+1)*n]
}

// sortTasks puts a's tasks in reprieve order: keep higher priorities
// first, then the older, then by id; victims are what is left, so the
// lowest priority and the most recently started go first.
func (a *agent) sortTasks() {
	if a.sorted {
		return
	}
	a.sorted = true
	slices.SortFunc(a.tasks, func(x, y task) int {
		if c := cmp.Compare(y.prio, x.prio); c != 0 {
			return c
		}
		if c := cmp.Compare(x.start, y.start); c != 0 {
			return c
		}
		tx, ty := &a.a.Tasks[x.idx], &a.a.Tasks[y.idx]
		return cmp.Or(strings.Compare(tx.FrameworkID, ty.FrameworkID), strings.Compare(tx.ID, ty.ID))
	})
}

type earmark struct {
	agent *agent
	m     *Earmark
	left  vec
}

// Decide runs one preemption pass over in (see the package documentation).
// It is pure: the same input gives the same plan.
func Decide(in Input) Plan {
	d := &dims{index: map[string]int{}}
	for i := range in.Demands {
		d.see(in.Demands[i].Shape)
	}
	var plan Plan
	plan.Verdicts = make([]Verdict, len(in.Demands))
	for i, dm := range in.Demands {
		plan.Verdicts[i] = Verdict{FrameworkID: dm.FrameworkID, Role: dm.Role, Shape: dm.Shape, Count: max(dm.Count, 0)}
	}
	if len(in.Demands) == 0 {
		return plan
	}
	// The pass's kinds in the order of Input.Kinds (any order gives the
	// same plan), so that cols, which maps them to the columns of the
	// agents' Dense vectors (-1: not among Input.Kinds), is the identity
	// when they are the first kinds of Input.Kinds: then an agent's Dense
	// task vectors of as many kinds serve as they are (never written).
	if len(in.Kinds) > 0 {
		d.orderBy(in.Kinds)
	}
	cols := make([]int, d.n)
	identity := true
	for i, name := range d.names {
		cols[i] = slices.Index(in.Kinds, name)
		identity = identity && cols[i] == i
	}
	shared := func(a *Agent) bool { return identity && a.Dense != nil && a.Dense.Stride == d.n }
	nTasks, nOffers, nVecs := 0, 0, 0
	for i := range in.Agents {
		a := &in.Agents[i]
		nTasks += len(a.Tasks)
		nOffers += len(a.Offers)
		if !shared(a) {
			nVecs += len(a.Tasks)
		}
	}
	// One allocation each for all agents, tasks, offers and their vectors.
	// The largest of them come from the previous pass (decidePool).
	b, _ := decidePool.Get().(*decideBufs)
	if b == nil {
		b = &decideBufs{}
	}
	defer b.release()
	b.agents = zeroed(b.agents, len(in.Agents))
	b.tasks = zeroed(b.tasks, nTasks)
	b.vecs = zeroed(b.vecs, (2*len(in.Agents)+nVecs+nOffers)*d.n)
	b.ptrs = zeroed(b.ptrs, len(in.Agents))
	agentStore, taskStore, vecs := b.agents, b.tasks, b.vecs
	offerStore := make([]offer, nOffers)
	offerPtrs := make([]*offer, nOffers)
	next := func(r resources.Resources) vec {
		v := take(&vecs, d.n)
		d.fill(v, r)
		return v
	}
	agents := b.ptrs
	for i := range in.Agents {
		a := &in.Agents[i]
		ag := &agentStore[i]
		ag.a = a
		ag.tasks = taskStore[:len(a.Tasks):len(a.Tasks)]
		taskStore = taskStore[len(a.Tasks):]
		if dn := a.Dense; dn != nil {
			ag.total, ag.avail = take(&vecs, d.n), take(&vecs, d.n)
			gather(ag.total, dn.Total, cols, dn.Stride)
			gather(ag.avail, dn.Free, cols, dn.Stride)
			if shared(a) {
				ag.tres = vec(dn.Tasks[: len(a.Tasks)*d.n : len(a.Tasks)*d.n])
			} else {
				ag.tres = take(&vecs, len(a.Tasks)*d.n)
				for j := range a.Tasks {
					gather(ag.tres[j*d.n:(j+1)*d.n], dn.Tasks[j*dn.Stride:(j+1)*dn.Stride], cols, dn.Stride)
				}
			}
			for j := range a.Tasks {
				ag.tasks[j] = task{start: dn.Starts[j], idx: int32(j), prio: dn.Prios[j]}
			}
			ag.sorted = dn.Sorted
		} else {
			ag.total, ag.avail = next(a.Total), next(a.Free)
			ag.tres = take(&vecs, len(a.Tasks)*d.n)
			for j := range a.Tasks {
				t := &a.Tasks[j]
				d.fill(ag.tres[j*d.n:(j+1)*d.n], t.Resources)
				ag.tasks[j] = task{start: t.Started.UnixNano(), idx: int32(j), prio: t.Priority}
			}
		}
		ag.offers = offerPtrs[:len(a.Offers):len(a.Offers)]
		offerPtrs = offerPtrs[len(a.Offers):]
		for j := range a.Offers {
			os := &offerStore[0]
			offerStore = offerStore[1:]
			*os = offer{o: &a.Offers[j], res: next(a.Offers[j].Resources)}
			ag.offers[j] = os
		}
		// Offers are rescinded lowest priority first, then by id.
		if len(ag.offers) > 1 {
			slices.SortFunc(ag.offers, func(x, y *offer) int {
				return cmp.Or(cmp.Compare(x.o.Priority, y.o.Priority), strings.Compare(x.o.ID, y.o.ID))
			})
		}
		agents[i] = ag
	}
	byID := func(x *agent, id string) int { return strings.Compare(x.a.ID, id) }
	if !slices.IsSortedFunc(agents, func(x, y *agent) int { return strings.Compare(x.a.ID, y.a.ID) }) {
		slices.SortFunc(agents, func(x, y *agent) int { return strings.Compare(x.a.ID, y.a.ID) })
	}
	var marks []*earmark
	for i := range in.Earmarks {
		m := &in.Earmarks[i]
		k, ok := slices.BinarySearchFunc(agents, m.AgentID, byID)
		if !ok {
			continue
		}
		ag := agents[k]
		em := &earmark{agent: ag, m: m, left: d.vec(m.Resources)}
		// The earmark holds what is free of it now; the rest is still in
		// its victims.
		for k := range em.left {
			ag.avail[k] -= min(em.left[k], ag.avail[k])
		}
		marks = append(marks, em)
	}
	order := make([]int, len(in.Demands))
	for i := range order {
		order[i] = i
	}
	// Higher priority first, then framework, role, input order.
	slices.SortStableFunc(order, func(x, y int) int {
		a, b := &in.Demands[x], &in.Demands[y]
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), strings.Compare(a.FrameworkID, b.FrameworkID), strings.Compare(a.Role, b.Role))
	})
	if cap(b.cands) < max(64, len(agents)) {
		b.cands = make([]candidate, 0, max(64, len(agents)))
	}
	p := &planner{d: d, agents: agents, marks: marks, plan: &plan, slab: b.cands[:0]}
	for _, i := range order {
		p.serve(&in.Demands[i], &plan.Verdicts[i])
	}
	return plan
}

type planner struct {
	d      *dims
	agents []*agent
	marks  []*earmark
	plan   *Plan
	// cands are the current demand's preemption candidates, best first
	// (nil until its first preemption); entries whose agent changed since
	// are re-evaluated when they come up.
	cands *candHeap
	// Scratch space reused across agents and demands.
	vecs   []vec
	prios  []int32
	starts []int64
	slab   []candidate
}

// serve places the units of one demand: earmarks, free resources and the
// framework's own offers, then rescinds, then preemption.
func (p *planner) serve(dm *Demand, v *Verdict) {
	p.cands = nil
	need := p.d.vec(dm.Shape)
	left := v.Count
	// Earmarks of the demand's framework and role.
	for _, m := range p.marks {
		for left > 0 && m.m.FrameworkID == dm.FrameworkID && m.m.Role == dm.Role && m.left.fits(need) {
			m.left.sub(need)
			left--
			v.Placed++
		}
	}
	for left > 0 {
		if p.placeFree(dm, need) {
			left--
			v.Placed++
			continue
		}
		if n := p.rescind(dm, need, left); n > 0 {
			left -= n
			v.Rescinding += n
			continue
		}
		if n := p.preempt(dm, need, left); n > 0 {
			left -= n
			v.Preempting += n
			continue
		}
		break
	}
	if left == 0 {
		return
	}
	v.Unmet = left
	v.Reason = ReasonNoVictims
	if !slices.ContainsFunc(p.agents, func(a *agent) bool { return a.total.fits(need) }) {
		v.Reason = ReasonUnsatisfiable
	}
}

// excluded reports whether dm's framework filtered agent a.
func excluded(dm *Demand, a *agent) bool {
	return len(dm.Excluded) > 0 && dm.Excluded[a.a.ID]
}

// ownOffers is what the demand's framework holds in offers for its role on
// the agent.
func ownOffers(a *agent, dm *Demand, dst vec) vec {
	clear(dst)
	for _, o := range a.offers {
		if !o.gone && o.o.FrameworkID == dm.FrameworkID && o.o.Role == dm.Role {
			dst.add(o.res)
		}
	}
	return dst
}

// placeFree places one unit in an agent's free resources plus the
// framework's own offers there (first fit in id order).
func (p *planner) placeFree(dm *Demand, need vec) bool {
	pool := make(vec, p.d.n)
	for _, a := range p.agents {
		if excluded(dm, a) {
			continue
		}
		if a.avail.fits(need) {
			a.avail.sub(need)
			a.version++
			return true
		}
		if len(a.offers) == 0 {
			continue
		}
		ownOffers(a, dm, pool)
		pool.add(a.avail)
		if pool.fits(need) {
			// The unit takes the framework's own offered resources first.
			take := make(vec, p.d.n)
			copy(take, need)
			for _, o := range a.offers {
				if o.gone || o.o.FrameworkID != dm.FrameworkID || o.o.Role != dm.Role {
					continue
				}
				for k := range take {
					use := min(take[k], o.res[k])
					o.res[k] -= use
					take[k] -= use
				}
			}
			a.avail.sub(take)
			a.version++
			return true
		}
	}
	return false
}

// rescind finds the first agent (id order) where free resources plus the
// offers of lower priorities hold a unit, rescinds the fewest of those
// offers (lowest priority first), and places as many units there as fit
// (at most left). It returns how many units it placed.
func (p *planner) rescind(dm *Demand, need vec, left int) int {
	pool := make(vec, p.d.n)
	for _, a := range p.agents {
		if len(a.offers) == 0 || excluded(dm, a) {
			continue
		}
		copy(pool, a.avail)
		any := false
		for _, o := range a.offers {
			if !o.gone && o.o.Priority < dm.Priority {
				pool.add(o.res)
				any = true
			}
		}
		if !any || !pool.fits(need) {
			continue
		}
		units := 0
		for units < left && pool.fits(need) {
			pool.sub(need)
			units++
		}
		want := make(vec, p.d.n)
		for range units {
			want.add(need)
		}
		// Rescind lowest priority first until the units fit.
		got := make(vec, p.d.n)
		copy(got, a.avail)
		for _, o := range a.offers {
			if got.fits(want) {
				break
			}
			if o.gone || o.o.Priority >= dm.Priority {
				continue
			}
			o.gone = true
			got.add(o.res)
			p.plan.Rescinds = append(p.plan.Rescinds, Rescind{
				OfferID: o.o.ID, FrameworkID: o.o.FrameworkID, AgentID: a.a.ID,
				ForFramework: dm.FrameworkID, ForRole: dm.Role,
			})
		}
		got.sub(want)
		copy(a.avail, got)
		a.version++
		return units
	}
	return 0
}

// candidate is one agent's best victim set for a demand, or a bound on
// it: a key no worse than the exact one (see bound).
type candidate struct {
	agent   *agent
	victims []*task
	offers  []*offer
	version int
	maxPrio int32
	// count is how many victims (tasks) there are, or at least will be.
	count int
	// newest is the earliest start among the victims of the highest
	// priority: the later, the better.
	newest int64
	// bound: victims and offers are not chosen yet, the key is a bound.
	bound bool
}

func better(x, y *candidate) bool {
	if x.maxPrio != y.maxPrio {
		return x.maxPrio < y.maxPrio
	}
	if x.count != y.count {
		return x.count < y.count
	}
	if x.newest != y.newest {
		return x.newest > y.newest
	}
	return x.agent.a.ID < y.agent.a.ID
}

// preempt chooses the agent and victims for units of a demand as
// Kubernetes' scheduler does and records the decision. It returns how
// many units the decision serves (0: no agent can make room).
//
// Every agent that can make room enters a heap with a bound on its key;
// the best entry is replaced by its exact candidate until the best is
// exact and current. As no bound is better than the exact key it stands
// for, the winner is the agent whose exact candidate is best, and only
// the agents that came up had their tasks sorted and victims chosen.
func (p *planner) preempt(dm *Demand, need vec, left int) int {
	if p.cands == nil {
		p.cands = &candHeap{items: make([]*candidate, 0, len(p.agents))}
		for _, a := range p.agents {
			if c := p.candidate(a, dm, need, false); c != nil {
				p.cands.items = append(p.cands.items, c)
			}
		}
		heap.Init(p.cands)
	}
	// A candidate whose agent changed since it was computed can only have
	// got worse (less room): re-evaluate it when it comes up.
	var best *candidate
	for p.cands.Len() > 0 {
		c := p.cands.items[0]
		if c.version == c.agent.version && !c.bound {
			best = heap.Pop(p.cands).(*candidate)
			break
		}
		// A stale entry gets a new bound, a bound its exact candidate.
		if nc := p.candidate(c.agent, dm, need, c.version == c.agent.version); nc != nil {
			p.cands.items[0] = nc
			heap.Fix(p.cands, 0)
		} else {
			heap.Pop(p.cands)
		}
	}
	if best == nil {
		return 0
	}
	a := best.agent
	room := p.d.res(a.avail)
	// Units: the first one, plus as many more as the freed room holds
	// without more victims.
	freed := make(vec, p.d.n)
	copy(freed, a.avail)
	for _, t := range best.victims {
		t.gone = true
		freed.add(a.res(t, p.d.n))
	}
	for _, o := range best.offers {
		o.gone = true
		freed.add(o.res)
	}
	units := 0
	for units < left && freed.fits(need) {
		freed.sub(need)
		units++
	}
	copy(a.avail, freed)
	a.version++
	pr := Preemption{AgentID: a.a.ID, FrameworkID: dm.FrameworkID, Role: dm.Role, Priority: dm.Priority, Units: units, Room: room, Shape: dm.Shape}
	for range units {
		pr.Resources = pr.Resources.Add(dm.Shape)
	}
	for _, t := range best.victims {
		pr.Victims = append(pr.Victims, a.a.Tasks[t.idx])
	}
	for _, o := range best.offers {
		pr.Offers = append(pr.Offers, *o.o)
	}
	p.plan.Preemptions = append(p.plan.Preemptions, pr)
	if c := p.candidate(a, dm, need, false); c != nil {
		heap.Push(p.cands, c)
	}
	return units
}

// candidate is the best victim set on agent a for one unit of the
// demand (exact), or a bound on it, or nil when a cannot make room for
// it.
func (p *planner) candidate(a *agent, dm *Demand, need vec, exact bool) *candidate {
	if !a.total.fits(need) || excluded(dm, a) {
		return nil
	}
	// Everything that could go: free, lower offers, lower tasks.
	base, pool := p.scratch(0), p.scratch(1)
	copy(base, a.avail)
	for _, o := range a.offers {
		if !o.gone && o.o.Priority < dm.Priority {
			base.add(o.res)
		}
	}
	copy(pool, base)
	lower := 0
	for i := range a.tasks {
		if t := &a.tasks[i]; !t.gone && t.prio < dm.Priority {
			pool.add(a.res(t, p.d.n))
			lower++
		}
	}
	if lower == 0 || !pool.fits(need) {
		return nil
	}
	if !exact && !base.fits(need) {
		return p.bound(a, dm, need, base)
	}
	a.sortTasks()
	c := p.victims(a, dm, need, pool)
	c.version = a.version
	return c
}

// bound is a key no better than a's exact candidate, without sorting a's
// tasks or choosing victims, for an agent where base (free plus lower
// offers) does not hold need but base plus the lower tasks does. Let q be
// the lowest priority such that base plus the lower tasks of priority at
// most q holds need. Reprieve keeps every task above q (the room left
// still holds need) and cannot keep all of q's (base plus the tasks below
// q does not hold need), so the victims' highest priority is exactly q.
// The victims of priority q must cover what base plus the tasks below q
// lack (def); none is larger than the largest of q (big), so there are at
// least n = max over kinds of ceil(def/big) of them, and the earliest
// start among them is at most the n-th latest start of q.
func (p *planner) bound(a *agent, dm *Demand, need, base vec) *candidate {
	if a.sorted {
		return p.boundSorted(a, dm, need, base)
	}
	prios := p.prios[:0]
	for i := range a.tasks {
		if t := &a.tasks[i]; !t.gone && t.prio < dm.Priority {
			prios = append(prios, t.prio)
		}
	}
	slices.Sort(prios)
	prios = slices.Compact(prios)
	p.prios = prios
	acc, before := base, p.scratch(2)
	q := prios[len(prios)-1]
	for _, pr := range prios {
		copy(before, acc)
		for i := range a.tasks {
			if t := &a.tasks[i]; !t.gone && t.prio == pr {
				acc.add(a.res(t, p.d.n))
			}
		}
		if acc.fits(need) {
			q = pr
			break
		}
	}
	big := p.scratch(3)
	clear(big)
	starts := p.starts[:0]
	for i := range a.tasks {
		if t := &a.tasks[i]; !t.gone && t.prio == q {
			for k, r := range a.res(t, p.d.n) {
				big[k] = max(big[k], r)
			}
			starts = append(starts, t.start)
		}
	}
	p.starts = starts
	n := 1
	for k, r := range need {
		if def := r - before[k]; def > 0 {
			n = max(n, int((def+big[k]-1)/big[k]))
		}
	}
	slices.Sort(starts)
	c := p.newCandidate()
	*c = candidate{agent: a, version: a.version, maxPrio: q, count: n, newest: starts[len(starts)-n], bound: true}
	return c
}

// boundSorted is bound for an agent whose tasks are in reprieve order
// (priorities descending, then starts ascending): one walk from the last
// task finds q, the tasks below it and q's own, with no sorting.
func (p *planner) boundSorted(a *agent, dm *Demand, need, base vec) *candidate {
	acc, before, big := base, p.scratch(2), p.scratch(3)
	n := p.d.n
	// The lower tasks are a suffix; walk its priority groups upwards.
	lo, hi := len(a.tasks), len(a.tasks) // q's group is a.tasks[lo:hi]
	for i := len(a.tasks) - 1; i >= 0 && a.tasks[i].prio < dm.Priority; {
		pr := a.tasks[i].prio
		copy(before, acc)
		hi = i + 1
		for ; i >= 0 && a.tasks[i].prio == pr; i-- {
			if t := &a.tasks[i]; !t.gone {
				acc.add(a.res(t, n))
			}
		}
		lo = i + 1
		if acc.fits(need) {
			break
		}
	}
	// q's tasks, not gone: their largest of each kind, and their starts
	// (ascending) to count back from.
	clear(big)
	starts := p.starts[:0]
	for i := lo; i < hi; i++ {
		if t := &a.tasks[i]; !t.gone {
			for k, r := range a.res(t, n) {
				big[k] = max(big[k], r)
			}
			starts = append(starts, t.start)
		}
	}
	p.starts = starts
	units := 1
	for k, r := range need {
		if def := r - before[k]; def > 0 {
			units = max(units, int((def+big[k]-1)/big[k]))
		}
	}
	c := p.newCandidate()
	*c = candidate{agent: a, version: a.version, maxPrio: a.tasks[lo].prio, count: units, newest: starts[len(starts)-units], bound: true}
	return c
}

// scratch is the planner's i-th scratch vector.
func (p *planner) scratch(i int) vec {
	for len(p.vecs) <= i {
		p.vecs = append(p.vecs, make(vec, p.d.n))
	}
	return p.vecs[i]
}

// newCandidate returns a candidate from the planner's slabs.
func (p *planner) newCandidate() *candidate {
	if len(p.slab) == cap(p.slab) {
		p.slab = make([]candidate, 0, max(64, len(p.agents)))
	}
	p.slab = p.slab[:len(p.slab)+1]
	return &p.slab[len(p.slab)-1]
}

// candHeap orders candidates best first.
type candHeap struct{ items []*candidate }

func (h *candHeap) Len() int           { return len(h.items) }
func (h *candHeap) Less(i, j int) bool { return better(h.items[i], h.items[j]) }
func (h *candHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *candHeap) Push(x any)         { h.items = append(h.items, x.(*candidate)) }
func (h *candHeap) Pop() any {
	n := len(h.items) - 1
	c := h.items[n]
	h.items = h.items[:n]
	return c
}

// victims picks the victims on one agent, its tasks sorted: start from
// everything of a lower priority gone (pool), then reprieve tasks in
// reprieve order (highest priority, oldest first) while one unit still
// fits, then reprieve offers the same way. What is not reprieved goes.
func (p *planner) victims(a *agent, dm *Demand, need, pool vec) *candidate {
	c := p.newCandidate()
	*c = candidate{agent: a, maxPrio: -1 << 31}
	for i := range a.tasks {
		t := &a.tasks[i]
		if t.gone || t.prio >= dm.Priority {
			continue
		}
		if r := a.res(t, p.d.n); pool.fitsMinus(r, need) {
			pool.sub(r)
			continue
		}
		c.victims = append(c.victims, t)
	}
	for i := len(a.offers) - 1; i >= 0; i-- { // highest priority kept first
		o := a.offers[i]
		if o.gone || o.o.Priority >= dm.Priority {
			continue
		}
		if pool.fitsMinus(o.res, need) {
			pool.sub(o.res)
			continue
		}
		c.offers = append(c.offers, o)
	}
	slices.Reverse(c.offers)
	c.count = len(c.victims)
	for _, t := range c.victims {
		if t.prio > c.maxPrio {
			c.maxPrio, c.newest = t.prio, t.start
		} else if t.prio == c.maxPrio {
			c.newest = min(c.newest, t.start)
		}
	}
	return c
}
