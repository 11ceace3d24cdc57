package allocator

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/resources"
)

// Allocate runs one allocation round over s at time now and returns the
// offers, sorted by framework id, agent id and role. It is pure: the same
// (s, now, seed) always gives the same offers, and s is not modified.
// The rules are described in the package documentation.
func Allocate(s Snapshot, now time.Time, seed uint64) []Offer {
	return AllocateTraced(s, now, seed, nil)
}

// AllocateTraced is Allocate that also explains the round in tr: why each
// framework got no offer of each agent (see the package documentation). It
// returns the same offers as Allocate(s, now, seed). With a nil tr it does
// no tracing work at all.
func AllocateTraced(s Snapshot, now time.Time, seed uint64, tr *Trace) []Offer {
	full := s
	s, held := holdEarmarks(s, now)
	offers := allocateRound(s, now, seed, tr)
	if len(held) > 0 {
		if tr != nil {
			for _, o := range held {
				if i, ok := slices.BinarySearchFunc(tr.Frameworks, o.FrameworkID, func(f FrameworkTrace, id string) int { return strings.Compare(f.ID, id) }); ok {
					tr.Frameworks[i].Earmarked++
				}
			}
		}
		offers = append(held, offers...)
		slices.SortStableFunc(offers, func(a, b Offer) int {
			return cmp.Or(strings.Compare(a.FrameworkID, b.FrameworkID), strings.Compare(a.AgentID, b.AgentID), strings.Compare(a.Role, b.Role))
		})
	}
	markRevocable(full, offers)
	return offers
}

// allocateRound is one round of the passes below over s (earmarks already
// held).
func allocateRound(s Snapshot, now time.Time, seed uint64, tr *Trace) []Offer {
	st := newRound(s, now)
	order := sortedAgents(s.Agents)
	st.agentRank = make([]int32, len(order))
	for rank, ai := range order {
		st.agentRank[ai] = int32(rank)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	st.reservedPass(order)
	st.fairPass(order, true)
	st.fairPass(order, false)
	if tr != nil {
		st.explain(&s, now, tr)
	}
	out := st.result()
	st.release()
	return out
}

// shuffledAgents returns agent indexes ordered by id, then shuffled with a
// PCG seeded from seed. The id sort makes the result independent of the
// order of s.Agents.
func shuffledAgents(agents []Agent, seed uint64) []int32 {
	order := sortedAgents(agents)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	return order
}

// sortedAgents returns agent indexes in id order.
func sortedAgents(agents []Agent) []int32 {
	order := make([]int32, len(agents))
	for i := range order {
		order[i] = int32(i)
	}
	for i := 1; i < len(agents); i++ {
		if agents[i-1].ID > agents[i].ID {
			slices.SortStableFunc(order, func(a, b int32) int { return strings.Compare(agents[a].ID, agents[b].ID) })
			break
		}
	}
	return order
}

// roundBufs are a round's largest buffers, reused by the next round
// (bufPool): an allocation round allocates and the garbage collector
// scans them no more than once per goroutine. Only Allocate's rounds give
// them back (release); an Incremental keeps its round's.
type roundBufs struct {
	slab, orig vec
	agents     []agentState
	assign     []assignment
	offers     []pending
	idx        []int32
}

var bufPool sync.Pool

// poolBuffers turns bufPool on; tests that count allocations turn it off,
// since a sync.Pool may drop what is put in it at any time (the race
// detector drops a quarter of Puts on purpose).
var poolBuffers = true

// zeroed returns s resized to n zero values, reusing its array if it can.
func zeroed[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// release gives st's buffers back to bufPool, dropping what they point to;
// st is unusable afterwards.
func (st *round) release() {
	b := st.bufs
	if b == nil {
		return
	}
	st.bufs = nil
	if !poolBuffers {
		*st = round{}
		return
	}
	b.offers = st.offers // it may have grown
	clear(b.agents)
	clear(b.assign)
	clear(b.offers[:cap(b.offers)])
	b.offers = b.offers[:0]
	*st = round{}
	bufPool.Put(b)
}

// vec is a dense scalar vector in milli-units, indexed by dimension.
type vec []int64

const unlimited = math.MaxInt64

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

type agentState struct {
	id       string
	free     vec                 // unreserved free scalars
	extra    resources.Resources // unreserved ranges and sets; go with the first unreserved offer
	reserved []reservedPart      // sorted by role name
	assigned []assignment        // (role -> framework, offer) decided this round
}

type reservedPart struct {
	role  *roleState
	res   vec
	extra resources.Resources
}

type assignment struct {
	role  *roleState
	fe    *fwEntry
	offer int
}

type roleState struct {
	name      string
	weight    float64
	priority  int32
	maxUtil   float64
	guarantee vec // nil: no guarantee
	limit     vec // nil: unlimited; entries < 0 are unlimited
	alloc     vec
	unmet     vec // guarantee - alloc, floored at 0; nil with guarantee
	wshare    float64
	fws       fwHeap
	rank      int32 // the role's rank in name order
}

type fwEntry struct {
	fw    int32
	rank  int32 // the framework's rank in id order
	alloc vec
	share float64
	idx   int
}

type fwInfo struct {
	id         string
	hasFilters bool
}

type pending struct {
	fw, agent  int32
	role       *roleState
	unres, res vec
	unresExtra resources.Resources
	resExtra   resources.Resources
	// guaranteed: the guarantee pass gave to it (see Offer.Guaranteed).
	guaranteed bool
}

type round struct {
	// inGuaranteePass: give is called by the guarantee pass.
	inGuaranteePass bool
	names           []string
	dimOf           map[string]int
	total           vec
	shareDims       []int
	minAlloc        vec
	minDims         []int
	utilDims        []int
	free            vec // cluster free (unreserved + reserved), for utilization
	avail           vec // cluster unreserved free
	req             vec // sum of unmet guarantees
	agents          []agentState
	roles           []*roleState
	roleOf          map[string]*roleState
	fws             []fwInfo
	filtered        map[[2]int32]struct{}
	agentIdx        map[string]int32
	agentRank       []int32 // position of each agent in id order
	fwRank          []int32 // position of each framework in id order
	vecSlab         vec     // backing store for offer vectors
	src             []Agent // the snapshot's agents, to reuse their values in offers
	origFree        vec     // agents' free vectors at the start of the round, flattened
	offers          []pending
	bufs            *roundBufs
	scratch         vec
	asideR          []*roleState
	asideF          []*fwEntry
}

func (st *round) dim(name string) int {
	for d, n := range st.names { // a handful: cheaper than the map
		if n == name {
			return d
		}
	}
	if d, ok := st.dimOf[name]; ok {
		return d
	}
	d := len(st.names)
	st.names = append(st.names, name)
	st.dimOf[name] = d
	return d
}

func (st *round) addNames(r resources.Resources) {
	for n := range r.Scalars {
		st.dim(n)
	}
}

func (st *round) toVec(r resources.Resources, dst vec) vec {
	if dst == nil {
		dst = make(vec, len(st.names))
	}
	for n, v := range r.Scalars {
		if v > 0 {
			dst[st.dimOf[n]] = v
		}
	}
	return dst
}

func (st *round) buildAgentIndex() {
	st.agentIdx = make(map[string]int32, len(st.agents))
	for i := range st.agents {
		st.agentIdx[st.agents[i].id] = int32(i)
	}
}

func (st *round) role(name string) *roleState {
	if r, ok := st.roleOf[name]; ok {
		return r
	}
	r := &roleState{name: name, weight: 1}
	st.roleOf[name] = r
	st.roles = append(st.roles, r)
	return r
}

// nonScalar returns r's ranges and sets, sharing r's storage: the round
// never writes to them, and result clones them into the offers.
func nonScalar(r resources.Resources) resources.Resources {
	if !hasNonScalar(r) {
		return resources.Resources{}
	}
	return resources.Resources{Ranges: r.Ranges, Sets: r.Sets}
}

func hasNonScalar(r resources.Resources) bool {
	return len(r.Ranges) > 0 || len(r.Sets) > 0
}

// newVec returns a zeroed vector of the round's dimension from a slab.
func (st *round) newVec() vec {
	D := len(st.names)
	if len(st.vecSlab) < D {
		st.vecSlab = make(vec, 512*D)
	}
	v := st.vecSlab[:D:D]
	st.vecSlab = st.vecSlab[D:]
	return v
}

func newRound(s Snapshot, now time.Time) *round {
	st := &round{dimOf: map[string]int{}, roleOf: map[string]*roleState{}}
	if poolBuffers {
		st.bufs, _ = bufPool.Get().(*roundBufs)
	}
	if st.bufs == nil {
		st.bufs = &roundBufs{}
	}
	b := st.bufs
	minRes := s.MinAllocatable
	if len(minRes.Names()) == 0 {
		minRes = DefaultMinAllocatable
	}
	// Dimensions: every scalar name that appears anywhere.
	st.dim("cpus")
	st.dim("mem")
	st.addNames(minRes)
	for i := range s.Roles {
		st.addNames(s.Roles[i].Guarantee)
		st.addNames(s.Roles[i].Limit)
	}
	for i := range s.Frameworks {
		for _, r := range s.Frameworks[i].Allocated {
			st.addNames(r)
		}
	}
	// One pass over the agents' maps, straight into a slab of vectors of
	// stride S: room for the kinds known so far and a few more. A snapshot
	// with more kinds than that is scanned again with room for all.
	var slab, total, free vec
	for S := len(st.names) + 4; ; S = len(st.names) {
		b.slab = zeroed(b.slab, len(s.Agents)*S)
		slab, total, free = b.slab, make(vec, S), make(vec, S)
		for i := range s.Agents {
			a := &s.Agents[i]
			for n, v := range a.Total.Scalars {
				if d := st.dim(n); v > 0 && d < S {
					total[d] = satAdd(total[d], v)
				}
			}
			for n, v := range a.Unreserved.Scalars {
				if d := st.dim(n); v > 0 && d < S {
					slab[i*S+d] = v
					free[d] = satAdd(free[d], v)
				}
			}
			for _, r := range a.Reserved {
				st.addNames(r)
			}
		}
		if D := len(st.names); D <= S {
			// Cut the slab down to stride D (in place: D <= S).
			if D < S {
				for i := range s.Agents {
					copy(slab[i*D:(i+1)*D], slab[i*S:i*S+D])
				}
				slab, total, free = slab[:len(s.Agents)*D], total[:D:D], free[:D:D]
			}
			break
		}
	}
	D := len(st.names)
	st.total, st.free, st.avail, st.req = total, free, slices.Clone(free), make(vec, D)
	st.scratch = make(vec, D)
	st.minAlloc = st.toVec(minRes, nil)
	for d, v := range st.minAlloc {
		if v > 0 {
			st.minDims = append(st.minDims, d)
		}
	}

	// Roles: configured first, then any referenced.
	for i := range s.Roles {
		cfg := &s.Roles[i]
		r := st.role(cfg.Name)
		if cfg.Weight > 0 {
			r.weight = cfg.Weight
		}
		r.priority = cfg.Priority
		if cfg.MaxUtilization > 0 {
			r.maxUtil = cfg.MaxUtilization
		}
		if len(cfg.Guarantee.Names()) > 0 {
			r.guarantee = st.toVec(cfg.Guarantee, nil)
		}
		if len(cfg.Limit.Names()) > 0 {
			r.limit = make(vec, D)
			for d := range r.limit {
				r.limit[d] = -1
			}
			for n, v := range cfg.Limit.Scalars {
				r.limit[st.dimOf[n]] = max(v, 0)
			}
		}
		if r.guarantee != nil && r.limit != nil {
			// A guarantee beyond the limit could never be met: hold no
			// headroom for the part above the limit.
			for d, l := range r.limit {
				if l >= 0 {
					r.guarantee[d] = min(r.guarantee[d], l)
				}
			}
		}
	}

	// Agents.
	st.src = s.Agents
	b.assign = zeroed(b.assign, 2*len(s.Agents))
	b.agents = zeroed(b.agents, len(s.Agents))
	assignSlab := b.assign
	st.agents = b.agents
	for i := range s.Agents {
		a := &s.Agents[i]
		as := &st.agents[i]
		as.id = a.ID
		as.free = slab[i*D : (i+1)*D : (i+1)*D]
		as.assigned = assignSlab[i*2 : i*2 : i*2+2]
		as.extra = nonScalar(a.Unreserved)
		if len(a.Reserved) > 0 {
			for name, res := range a.Reserved {
				if res.IsEmpty() {
					continue
				}
				rp := reservedPart{role: st.role(name), res: st.toVec(res, nil), extra: nonScalar(res)}
				for d, v := range rp.res {
					st.free[d] = satAdd(st.free[d], v)
				}
				as.reserved = append(as.reserved, rp)
			}
			slices.SortFunc(as.reserved, func(x, y reservedPart) int { return strings.Compare(x.role.name, y.role.name) })
		}
	}
	b.orig = append(b.orig[:0], slab...)
	st.origFree = b.orig
	if cap(b.offers) < len(s.Agents)+len(s.Agents)/8 {
		b.offers = make([]pending, 0, len(s.Agents)+len(s.Agents)/8)
	}
	st.offers = b.offers[:0]
	for d, t := range st.total {
		if t > 0 {
			st.shareDims = append(st.shareDims, d)
		}
	}
	st.utilDims = st.shareDims // every scalar kind the cluster has

	// Frameworks.
	st.fws = make([]fwInfo, len(s.Frameworks))
	for i := range s.Frameworks {
		f := &s.Frameworks[i]
		st.fws[i].id = f.ID
		for name, res := range f.Allocated {
			r := st.role(name)
			if r.alloc == nil {
				r.alloc = make(vec, D)
			}
			for n, v := range res.Scalars {
				if v > 0 {
					d := st.dimOf[n]
					r.alloc[d] = satAdd(r.alloc[d], v)
				}
			}
		}
		for _, flt := range f.Filters {
			if !flt.Until.After(now) {
				continue
			}
			if st.filtered == nil {
				st.filtered = map[[2]int32]struct{}{}
				st.buildAgentIndex()
			}
			if ai, ok := st.agentIdx[flt.AgentID]; ok {
				st.filtered[[2]int32{int32(i), ai}] = struct{}{}
				st.fws[i].hasFilters = true
			}
		}
		for j, name := range f.Roles {
			if f.Suppressed[name] || slices.Contains(f.Roles[:j], name) {
				continue
			}
			r := st.role(name)
			r.fws.items = append(r.fws.items, &fwEntry{fw: int32(i), alloc: st.toVec(f.Allocated[name], nil)})
		}
	}
	// Ranks by name and by id: the heaps' and the result's tie-breaks
	// compare them rather than strings.
	byName := slices.Clone(st.roles)
	slices.SortFunc(byName, func(x, y *roleState) int { return strings.Compare(x.name, y.name) })
	for rank, r := range byName {
		r.rank = int32(rank)
	}
	st.fwRank = make([]int32, len(st.fws))
	fwOrder := make([]int32, len(st.fws))
	for i := range fwOrder {
		fwOrder[i] = int32(i)
	}
	for i := 1; i < len(st.fws); i++ {
		if st.fws[i-1].id > st.fws[i].id {
			slices.SortStableFunc(fwOrder, func(a, b int32) int { return strings.Compare(st.fws[a].id, st.fws[b].id) })
			break
		}
	}
	for rank, fi := range fwOrder {
		st.fwRank[fi] = int32(rank)
	}
	for _, r := range st.roles {
		if r.alloc == nil {
			r.alloc = make(vec, D)
		}
		if r.guarantee != nil {
			r.unmet = make(vec, D)
			for d, g := range r.guarantee {
				r.unmet[d] = max(0, g-r.alloc[d])
				st.req[d] = satAdd(st.req[d], r.unmet[d])
			}
		}
		r.wshare = st.share(r.alloc) / r.weight
		for _, fe := range r.fws.items {
			fe.share = st.share(fe.alloc)
			fe.rank = st.fwRank[fe.fw]
		}
		r.fws.init(st.fws)
	}
	return st
}

// share is the dominant share of v over the cluster totals.
func (st *round) share(v vec) float64 {
	m := 0.0
	for _, d := range st.shareDims {
		if x := float64(v[d]) / float64(st.total[d]); x > m {
			m = x
		}
	}
	return m
}

// capOf is the most of a resource kind with cluster total t that may be in
// use (held by tasks or offered) under utilization cap c. The small term
// keeps float noise (0.29*100 = 28.999...) from costing a milli-unit.
func capOf(c float64, t int64) int64 {
	return int64(c*float64(t) + 1e-6)
}

// capHeadroom is how much more of dimension d role r may be offered
// unreserved before the cluster's use of d passes r's utilization cap:
// unlimited without a cap. Used is total minus free (unreserved and
// reserved), so tasks, outstanding offers and this round's offers count.
func (st *round) capHeadroom(r *roleState, d int) int64 {
	if r.maxUtil <= 0 || st.total[d] <= 0 {
		return unlimited
	}
	return max(0, capOf(r.maxUtil, st.total[d])-(st.total[d]-st.free[d]))
}

// atCap reports whether some resource kind of the cluster is in use up to
// role r's utilization cap: r gets no more unreserved offers.
func (st *round) atCap(r *roleState) bool {
	if r.maxUtil <= 0 {
		return false
	}
	for _, d := range st.utilDims {
		if st.capHeadroom(r, d) == 0 {
			return true
		}
	}
	return false
}

func (st *round) allocatable(v vec) bool {
	for _, d := range st.minDims {
		if v[d] >= st.minAlloc[d] {
			return true
		}
	}
	return false
}

func (st *round) isFiltered(fw, agent int32) bool {
	if !st.fws[fw].hasFilters {
		return false
	}
	_, ok := st.filtered[[2]int32{fw, agent}]
	return ok
}

func (st *round) limitHeadroom(r *roleState, d int) int64 {
	if r.limit == nil || r.limit[d] < 0 {
		return unlimited
	}
	return max(0, r.limit[d]-r.alloc[d])
}

// capacity is what role r may take of dimension d in this pass, ignoring
// any agent: limit headroom, and unreserved headroom kept for others'
// unmet guarantees (in the guarantee pass, guaranteed dimensions are capped
// at the unmet guarantee itself).
func (st *round) capacity(r *roleState, d int, guaranteePass bool) int64 {
	spare := max(0, st.avail[d]-st.req[d])
	var c int64
	switch {
	case guaranteePass && r.guarantee[d] > 0:
		c = r.unmet[d]
	case r.unmet != nil:
		c = satAdd(spare, r.unmet[d])
	default:
		c = spare
	}
	return min(c, st.limitHeadroom(r, d), st.capHeadroom(r, d))
}

// roleOut reports whether r can get no more unreserved offers on any agent
// in this pass. Everything it looks at only shrinks during a pass, so a role
// out stays out.
func (st *round) roleOut(r *roleState, guaranteePass bool) bool {
	if st.atCap(r) {
		return true
	}
	c := st.scratch
	for d := range c {
		c[d] = st.capacity(r, d, guaranteePass)
	}
	if !st.allocatable(c) {
		return true
	}
	if guaranteePass {
		for d, u := range r.unmet {
			if u > 0 && c[d] > 0 {
				return false
			}
		}
		return true
	}
	return false
}

// offerVec fills st.scratch with what r would get of free in this pass and
// reports whether that is worth an offer.
func (st *round) offerVec(free vec, r *roleState, guaranteePass bool) bool {
	o := st.scratch
	for d, f := range free {
		o[d] = 0
		if f > 0 {
			o[d] = min(f, st.capacity(r, d, guaranteePass))
		}
	}
	if !st.allocatable(o) {
		return false
	}
	if guaranteePass {
		for d, u := range r.unmet {
			if u > 0 && o[d] > 0 {
				return true
			}
		}
		return false
	}
	return true
}

// pickFramework returns the framework of r that gets agent ai's resources
// for r: the one already chosen this round, else the lowest share one that
// has no filter for the agent. The entry stays in r's heap.
func (st *round) pickFramework(ai int32, a *agentState, r *roleState) *fwEntry {
	for _, as := range a.assigned {
		if as.role == r {
			return as.fe
		}
	}
	if len(r.fws.items) == 0 {
		return nil
	}
	if top := r.fws.items[0]; !st.isFiltered(top.fw, ai) {
		return top
	}
	aside := st.asideF[:0]
	var found *fwEntry
	for len(r.fws.items) > 0 {
		fe := r.fws.pop()
		aside = append(aside, fe)
		if !st.isFiltered(fe.fw, ai) {
			found = fe
			break
		}
	}
	for _, fe := range aside {
		r.fws.push(fe)
	}
	st.asideF = aside[:0]
	return found
}

// give records v of agent ai for framework entry fe in role r.
func (st *round) give(ai int32, r *roleState, fe *fwEntry, v vec, reserved bool, extra resources.Resources) {
	a := &st.agents[ai]
	oi := -1
	for _, as := range a.assigned {
		if as.role == r {
			oi = as.offer
			break
		}
	}
	if oi < 0 {
		oi = len(st.offers)
		st.offers = append(st.offers, pending{fw: fe.fw, agent: ai, role: r})
		a.assigned = append(a.assigned, assignment{role: r, fe: fe, offer: oi})
	}
	p := &st.offers[oi]
	p.guaranteed = p.guaranteed || st.inGuaranteePass
	target, targetExtra := &p.unres, &p.unresExtra
	if reserved {
		target, targetExtra = &p.res, &p.resExtra
	}
	if hasNonScalar(extra) {
		if hasNonScalar(*targetExtra) {
			*targetExtra = targetExtra.Add(extra)
		} else {
			*targetExtra = extra
		}
	}
	if *target == nil {
		*target = st.newVec()
	}
	for d, x := range v {
		if x == 0 {
			continue
		}
		(*target)[d] += x
		fe.alloc[d] = satAdd(fe.alloc[d], x)
		r.alloc[d] = satAdd(r.alloc[d], x)
		st.free[d] -= x
		if !reserved {
			a.free[d] -= x
			st.avail[d] -= x
		}
		if r.unmet != nil {
			u := max(0, r.guarantee[d]-r.alloc[d])
			st.req[d] -= r.unmet[d] - u
			r.unmet[d] = u
		}
	}
	fe.share = st.share(fe.alloc)
	r.fws.fix(fe.idx)
	r.wshare = st.share(r.alloc) / r.weight
}

// reservedPass offers each agent's reservations to their roles.
func (st *round) reservedPass(order []int32) {
	for _, ai := range order {
		a := &st.agents[ai]
		for i := range a.reserved {
			rp := &a.reserved[i]
			if !st.allocatable(rp.res) {
				continue
			}
			fe := st.pickFramework(ai, a, rp.role)
			if fe == nil {
				continue
			}
			st.give(ai, rp.role, fe, rp.res, true, rp.extra)
		}
	}
}

// fairPass offers unreserved resources: with guaranteePass, only to roles
// below their guarantee and only up to it; otherwise to every role in
// priority then weighted DRF order, keeping headroom for unmet guarantees.
func (st *round) fairPass(order []int32, guaranteePass bool) {
	st.inGuaranteePass = guaranteePass
	defer func() { st.inGuaranteePass = false }()
	var h roleHeap
	for _, r := range st.roles {
		if len(r.fws.items) == 0 || (guaranteePass && r.unmet == nil) || st.roleOut(r, guaranteePass) {
			continue
		}
		h = append(h, r)
	}
	h.init()
	for _, ai := range order {
		if len(h) == 0 {
			return
		}
		a := &st.agents[ai]
		aside := st.asideR[:0]
		for len(h) > 0 && st.allocatable(a.free) {
			r := h.pop()
			if st.atCap(r) {
				continue // utilization only grows within a round
			}
			if !st.offerVec(a.free, r, guaranteePass) {
				if !st.roleOut(r, guaranteePass) {
					aside = append(aside, r)
				}
				continue
			}
			fe := st.pickFramework(ai, a, r)
			if fe == nil {
				aside = append(aside, r)
				continue
			}
			extra := a.extra
			a.extra = resources.Resources{}
			st.give(ai, r, fe, st.scratch, false, extra)
			h.push(r)
		}
		for _, r := range aside {
			h.push(r)
		}
		st.asideR = aside[:0]
	}
}

// toResources builds the resources of one side of an offer. Ranges and sets
// are shared with the snapshot, never copied.
func (st *round) toResources(v vec, extra resources.Resources) resources.Resources {
	var r resources.Resources
	if hasNonScalar(extra) {
		r.Ranges, r.Sets = extra.Ranges, extra.Sets
	}
	n := 0
	for _, x := range v {
		if x > 0 {
			n++
		}
	}
	if n > 0 {
		r.Scalars = make(map[string]int64, n)
		for d, x := range v {
			if x > 0 {
				r.Scalars[st.names[d]] = x
			}
		}
	}
	return r
}

// unreservedOf returns the unreserved side of offer p. An offer of an
// agent's whole free resources (the common case) reuses the snapshot's
// value instead of building a new one.
func (st *round) unreservedOf(p *pending) resources.Resources {
	if p.unres == nil {
		return resources.Resources{}
	}
	src := st.src[p.agent].Unreserved
	D := len(st.names)
	whole := slices.Equal(p.unres, st.origFree[int(p.agent)*D:int(p.agent+1)*D]) &&
		hasNonScalar(p.unresExtra) == hasNonScalar(src)
	if whole {
		n := 0
		for _, x := range p.unres {
			if x > 0 {
				n++
			}
		}
		if n == len(src.Scalars) { // src holds no zero or negative entries
			return src
		}
	}
	return st.toResources(p.unres, p.unresExtra)
}

// reservedOf returns the reserved side of offer p: always a whole
// reservation, so the snapshot's value when it is in canonical form.
func (st *round) reservedOf(p *pending) resources.Resources {
	if p.res == nil {
		return resources.Resources{}
	}
	src := st.src[p.agent].Reserved[p.role.name]
	n := 0
	for _, x := range p.res {
		if x > 0 {
			n++
		}
	}
	if n == len(src.Scalars) {
		return src
	}
	return st.toResources(p.res, p.resExtra)
}

// result turns the pending offers into Offers sorted by framework id, agent
// id and role, comparing precomputed ranks rather than strings.
func (st *round) result() []Offer {
	fwRank := st.fwRank
	// LSD radix sort of the offers' indexes: stable counting sorts by
	// agent rank, then by framework rank. The offers of one framework and
	// agent (one per role) end up adjacent and are put in role name order.
	n := len(st.offers)
	st.bufs.idx = zeroed(st.bufs.idx, 2*n+max(len(st.agents), len(st.fws))+1)
	order, tmp, count := st.bufs.idx[:n], st.bufs.idx[n:2*n], st.bufs.idx[2*n:]
	countingSort := func(dst, src []int32, buckets int, rank func(i int32) int32) {
		c := count[:buckets+1]
		clear(c)
		for _, i := range src {
			c[rank(i)+1]++
		}
		for b := 1; b < len(c); b++ {
			c[b] += c[b-1]
		}
		for _, i := range src {
			r := rank(i)
			dst[c[r]] = i
			c[r]++
		}
	}
	for i := range tmp {
		tmp[i] = int32(i)
	}
	countingSort(order, tmp, len(st.agents), func(i int32) int32 { return st.agentRank[st.offers[i].agent] })
	copy(tmp, order)
	countingSort(order, tmp, len(st.fws), func(i int32) int32 { return fwRank[st.offers[i].fw] })
	for j := 0; j < n; {
		e := j + 1
		for e < n && st.offers[order[e]].fw == st.offers[order[j]].fw && st.offers[order[e]].agent == st.offers[order[j]].agent {
			e++
		}
		if e-j > 1 {
			slices.SortFunc(order[j:e], func(a, b int32) int { return cmp.Compare(st.offers[a].role.rank, st.offers[b].role.rank) })
		}
		j = e
	}
	out := make([]Offer, len(st.offers))
	for j, oi := range order {
		p := &st.offers[oi]
		out[j] = Offer{
			FrameworkID: st.fws[p.fw].id,
			AgentID:     st.agents[p.agent].id,
			Role:        p.role.name,
			Unreserved:  st.unreservedOf(p),
			Reserved:    st.reservedOf(p),
			Guaranteed:  p.guaranteed,
		}
	}
	return out
}

// roleLess orders roles: higher priority first, then lower weighted
// dominant share, then name.
func roleLess(a, b *roleState) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	if a.wshare != b.wshare {
		return a.wshare < b.wshare
	}
	return a.rank < b.rank // name order
}

type roleHeap []*roleState

func (h roleHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *roleHeap) push(r *roleState) {
	*h = append(*h, r)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !roleLess(s[i], s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *roleHeap) pop() *roleState {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = nil
	*h = s[:last]
	h.down(0)
	return top
}

func (h roleHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && roleLess(h[r], h[l]) {
			m = r
		}
		if !roleLess(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// fwHeap orders a role's frameworks by dominant share, then id.
type fwHeap struct {
	items []*fwEntry
	fws   []fwInfo
}

func (h *fwHeap) less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.share != b.share {
		return a.share < b.share
	}
	return a.rank < b.rank // id order
}

func (h *fwHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].idx = i
	h.items[j].idx = j
}

func (h *fwHeap) init(fws []fwInfo) {
	h.fws = fws
	for i, fe := range h.items {
		fe.idx = i
	}
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *fwHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *fwHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h.items) {
			break
		}
		m := l
		if r := l + 1; r < len(h.items) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

func (h *fwHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *fwHeap) push(fe *fwEntry) {
	fe.idx = len(h.items)
	h.items = append(h.items, fe)
	h.up(fe.idx)
}

func (h *fwHeap) pop() *fwEntry {
	last := len(h.items) - 1
	h.swap(0, last)
	fe := h.items[last]
	h.items[last] = nil
	h.items = h.items[:last]
	if last > 0 {
		h.down(0)
	}
	fe.idx = -1
	return fe
}
