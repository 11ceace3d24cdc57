package master

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/preempt"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

const (
	// preemptionGap spaces two preemption passes.
	preemptionGap = 100 * time.Millisecond
	// preemptionIdle bounds how long the pass waits without a state change.
	preemptionIdle = time.Second
	// preemptionDeadlineSlack is added to the victims' longest kill grace
	// and the window to bound a preemption whose victims never end.
	preemptionDeadlineSlack = time.Minute
	// earmarkUseLag: a task its framework launched into an earmark counts
	// as using it only this long after the launch. A framework lowers its
	// demand after its accept (a second write): until then its demand
	// still counts the launched unit, which the earmark must go on serving
	// lest a pass preempt for it again.
	earmarkUseLag = time.Second
)

// verdictStore keeps the leader's last preemption pass for `agora
// explain`: advisory, in memory, not replicated.
type verdictStore struct {
	mu       sync.Mutex
	verdicts []preempt.Verdict
	index    uint64
}

func (v *verdictStore) set(index uint64, verdicts []preempt.Verdict) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.verdicts, v.index = verdicts, index
}

// of returns framework fid's verdicts of the last pass.
func (v *verdictStore) of(fid string) []preempt.Verdict {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []preempt.Verdict
	for _, vd := range v.verdicts {
		if vd.FrameworkID == fid {
			out = append(out, vd)
		}
	}
	return out
}

// runPreemption is the leader's preemption task: after state changes (at
// most every preemptionGap) it runs preempt.Decide over the state and
// proposes what it decides: one RescindOffers entry for the offers to
// withdraw, one Preempt entry per decision. The FSM re-checks each
// decision, so a decision from a state that moved on, or one the previous
// leader already made, is rejected and kills nobody twice.
func (l *leader) runPreemption(ctx context.Context) {
	m := l.m
	log := m.log.With("component", "preemption")
	var backoff time.Duration
	cache := newPreemptCache()
	for {
		st := m.State()
		proposed, rejected := l.preemptOnce(ctx, st, cache, log)
		if proposed > 0 && rejected == proposed {
			backoff = min(max(2*backoff, preemptionGap), 2*time.Second)
		} else {
			backoff = 0
		}
		wait := time.NewTimer(preemptionGap + backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-wait.C:
		}
		// A demand's framework may have filtered agents (declined their
		// offers): they are excluded until the filter ends, which is no
		// state change, so wake then rather than after preemptionIdle.
		idle := time.NewTimer(min(preemptionIdle, max(time.Millisecond, demandFilterEnd(m.State(), m.Now()).Sub(m.Now()))))
		select {
		case <-ctx.Done():
			idle.Stop()
			return
		case <-st.Changed():
		case <-idle.C:
		}
		idle.Stop()
	}
}

// preemptOnce runs one pass over st and proposes its outcome; it returns
// how many entries it proposed and how many of them were rejected.
func (l *leader) preemptOnce(ctx context.Context, st *fsm.State, cache *preemptCache, log *slog.Logger) (proposed, rejected int) {
	m := l.m
	now := m.Now()
	in := cache.input(st, now)
	if len(in.Demands) == 0 {
		m.verdicts.set(st.Index(), nil)
		return 0, 0
	}
	plan := preempt.Decide(in)
	m.verdicts.set(st.Index(), plan.Verdicts)
	if len(plan.Rescinds) > 0 {
		cmd := &agorav1.RescindOffersCommand{Reason: "preempted for demand of a higher priority"}
		for _, r := range plan.Rescinds {
			cmd.OfferIds = append(cmd.OfferIds, r.OfferID)
		}
		proposed++
		if _, err := m.Apply(ctx, fsm.CmdRescindOffers, cmd); err != nil {
			rejected++
			log.Debug("rescinding offers for demand failed", "err", err)
		}
	}
	for _, pr := range plan.Preemptions {
		if len(pr.Offers) > 0 {
			cmd := &agorav1.RescindOffersCommand{Reason: "preempted for demand of role " + pr.Role}
			for _, o := range pr.Offers {
				cmd.OfferIds = append(cmd.OfferIds, o.ID)
			}
			if _, err := m.Apply(ctx, fsm.CmdRescindOffers, cmd); err != nil {
				log.Debug("rescinding offers for a preemption failed", "err", err)
			}
		}
		cmd := preemptCommand(pr, now, m.Config().PreemptionWindow)
		proposed++
		res, err := m.Apply(ctx, fsm.CmdPreempt, cmd)
		if err != nil {
			rejected++
			log.Debug("preemption rejected", "agent", pr.AgentID, "framework", pr.FrameworkID, "role", pr.Role, "err", err)
			continue
		}
		victims := make([]string, 0, len(pr.Victims))
		for _, v := range pr.Victims {
			victims = append(victims, v.FrameworkID+"/"+v.ID)
		}
		log.Info("preempting revocable tasks for demand", "preemption", cmd.GetPreemption().GetId(), "index", res.Index,
			"framework", pr.FrameworkID, "role", pr.Role, "priority", pr.Priority, "agent", pr.AgentID,
			"units", pr.Units, "victims", victims)
	}
	return proposed, rejected
}

// demandFilterEnd returns when the earliest filter of a connected
// framework with demand ends (far in the future when there is none): the
// preemption pass excludes filtered agents until then.
func demandFilterEnd(st *fsm.State, now time.Time) time.Time {
	end := now.Add(time.Hour)
	for _, fw := range st.Frameworks() {
		if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED || len(fw.GetDemand()) == 0 {
			continue
		}
		for _, flt := range fw.GetFilters() {
			if u := flt.GetUntil().AsTime(); u.After(now) && u.Before(end) {
				end = u
			}
		}
	}
	return end
}

// oldestDecision returns when the oldest preemption in force for k
// (agent, framework, role) was decided.
func oldestDecision(st *fsm.State, k [3]string, now time.Time) time.Time {
	var oldest time.Time
	for _, p := range st.Preemptions() {
		if p.GetAgentId() != k[0] || p.GetFrameworkId() != k[1] || p.GetRole() != k[2] || !fsm.PreemptionEnd(p).AsTime().After(now) {
			continue
		}
		if d := p.GetDecidedAt().AsTime(); oldest.IsZero() || d.Before(oldest) {
			oldest = d
		}
	}
	return oldest
}

// launchedSince sums the unreserved scalars of p's framework's live tasks
// of p's role on p's agent launched between since and until: the room of
// its earmarks there that it already uses.
func launchedSince(st *fsm.State, p *agorav1.Preemption, since, until time.Time) resources.Resources {
	var sum resources.Resources
	for _, t := range st.TasksByAgent(p.GetAgentId()) {
		if t.GetFrameworkId() != p.GetFrameworkId() || t.GetRole() != p.GetRole() || fsm.IsTerminal(t.GetState()) {
			continue
		}
		if c := t.GetCreatedAt().AsTime(); c.Before(since) || c.After(until) {
			continue
		}
		r, err := resourcepb.FromProto(t.GetResources())
		if err != nil {
			continue
		}
		sum = sum.Add(r[""])
	}
	return sum
}

// takeUsed takes what it can of used out of an earmark's scalars: it
// returns what is left of the earmark and of used.
func takeUsed(mark, used resources.Resources) (left, rest resources.Resources) {
	left, rest = mark.Clone(), used.Clone()
	for n, v := range left.Scalars {
		take := min(v, rest.Scalars[n])
		if take <= 0 {
			continue
		}
		left.Scalars[n] -= take
		rest.Scalars[n] -= take
		if left.Scalars[n] == 0 {
			delete(left.Scalars, n)
		}
	}
	return left, rest
}

// preemptCommand stamps one decision: id, time, window and deadline.
func preemptCommand(pr preempt.Preemption, now time.Time, window time.Duration) *agorav1.PreemptCommand {
	grace := 0.0
	p := &agorav1.Preemption{
		Id:            NewID(),
		FrameworkId:   pr.FrameworkID,
		Role:          pr.Role,
		Priority:      pr.Priority,
		AgentId:       pr.AgentID,
		Resources:     resourcepb.ToProto("", pr.Resources),
		DecidedAt:     timestamppb.New(now),
		WindowSeconds: window.Seconds(),
	}
	cmd := &agorav1.PreemptCommand{Preemption: p}
	for _, v := range pr.Victims {
		p.Victims = append(p.Victims, &agorav1.TaskRef{FrameworkId: v.FrameworkID, TaskId: v.ID})
		grace = max(grace, v.KillGrace.Seconds())
		cmd.StatusUuids = append(cmd.StatusUuids, newUUID())
	}
	p.Deadline = timestamppb.New(now.Add(time.Duration(grace*float64(time.Second)) + window + preemptionDeadlineSlack))
	return cmd
}

// newUUID returns a random RFC 4122 version 4 uuid.
func newUUID() string {
	h := NewID()
	b := []byte(h)
	b[12] = '4'
	b[16] = "89ab"[b[16]%4]
	return string(b[0:8]) + "-" + string(b[8:12]) + "-" + string(b[12:16]) + "-" + string(b[16:20]) + "-" + string(b[20:32])
}

// preemptInput builds the preemption pass's input from the state with no
// cache (tests and benchmarks; the leader keeps a preemptCache): a fresh
// cache converts every agent.
func preemptInput(st *fsm.State, now time.Time) preempt.Input {
	return newPreemptCache().input(st, now)
}

// preemptCache keeps, per agent, the part of the preemption input derived
// from its accounting and its tasks (free and total resources, revocable
// live tasks with parsed resources, and the same scalars as dense vectors
// over the cache's kinds: preempt.Dense), keyed by the two values
// fsm.State.EachAgentVersion gives: a pass converts only the agents whose
// tasks or usage changed since the last one. The entries are kept in id
// order between passes (the order EachAgentVersion walks), so a pass
// finds an unchanged agent's entry without a map lookup and rewrites none
// of the input's agents that did not change. It belongs to one leadership
// (one goroutine) and is dropped with it; role priorities are part of
// each entry, so a priority change empties it.
type preemptCache struct {
	prio   map[string]int32
	agents map[string]*cachedAgent
	// kinds are the scalar kinds of the dense vectors, in the order first
	// seen (Input.Kinds); kindOf indexes them.
	kinds  []string
	kindOf map[string]int
	// order is the last pass's entries in id order; buf is the last
	// pass's Input.Agents (buf[k] built from order[k]), reused by the
	// next pass: an Input is good until the next call of input.
	order, nextOrder []*cachedAgent
	buf              []preempt.Agent
	// offered: buf[k] carries offers (it is rewritten next pass).
	offered []bool
}

type cachedAgent struct {
	id           string
	agent        *agorav1.Agent // the active agent's record it was last seen with
	usage, tasks any
	ag           preempt.Agent // without offers
	seen         uint64        // the pass that last used it
}

func newPreemptCache() *preemptCache {
	return &preemptCache{agents: map[string]*cachedAgent{}, kindOf: map[string]int{}}
}

// input builds the preemption pass's input from the state: active agents
// with their free unreserved resources, outstanding offers and revocable
// live tasks not being killed; connected frameworks' demand for roles they
// have not suppressed; the preemptions in force. The Input's Agents are
// the cache's: good until the next call.
func (c *preemptCache) input(st *fsm.State, now time.Time) preempt.Input {
	var in preempt.Input
	prio := map[string]int32{}
	for _, r := range st.Roles() {
		prio[r.GetName()] = r.GetPriority()
	}
	for _, fw := range st.Frameworks() {
		// A framework without demand adds nothing; its filters (up to one
		// per agent) are not worth a map each pass.
		if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED || len(fw.GetDemand()) == 0 {
			continue
		}
		var filtered map[string]bool
		for _, flt := range fw.GetFilters() {
			if flt.GetUntil().AsTime().After(now) {
				if filtered == nil {
					filtered = map[string]bool{}
				}
				filtered[flt.GetAgentId()] = true
			}
		}
		for _, d := range fw.GetDemand() {
			if slices.Contains(fw.GetSuppressedRoles(), d.GetRole()) {
				continue
			}
			shape, err := resourcepb.FromProto(d.GetResources())
			if err != nil {
				continue
			}
			in.Demands = append(in.Demands, preempt.Demand{
				FrameworkID: fw.GetId(), Role: d.GetRole(), Priority: prio[d.GetRole()],
				Shape: shape.Total(), Count: int(d.GetCount()), Excluded: filtered,
			})
		}
	}
	if len(in.Demands) == 0 {
		return in
	}
	// used is, per (agent, framework, role) of an earmark, what the
	// framework launched there since its oldest decision in force, at
	// least earmarkUseLag ago: room of the earmarks it already took, which
	// serves no further unit.
	used := map[[3]string]resources.Resources{}
	for _, p := range st.Preemptions() {
		if !fsm.PreemptionEnd(p).AsTime().After(now) {
			continue
		}
		k := [3]string{p.GetAgentId(), p.GetFrameworkId(), p.GetRole()}
		if _, ok := used[k]; !ok {
			used[k] = launchedSince(st, p, oldestDecision(st, k, now), now.Add(-earmarkUseLag))
		}
	}
	for _, p := range st.Preemptions() {
		if !fsm.PreemptionEnd(p).AsTime().After(now) {
			continue
		}
		held, _ := resourcepb.FromProto(p.GetResources())
		k := [3]string{p.GetAgentId(), p.GetFrameworkId(), p.GetRole()}
		left, u := takeUsed(held.Total(), used[k])
		used[k] = u
		if left.IsEmpty() {
			continue
		}
		in.Earmarks = append(in.Earmarks, preempt.Earmark{AgentID: p.GetAgentId(), FrameworkID: p.GetFrameworkId(), Role: p.GetRole(), Resources: left})
	}
	if !maps.Equal(c.prio, prio) {
		*c = preemptCache{prio: prio, agents: map[string]*cachedAgent{}, kindOf: map[string]int{}}
	}
	var offers map[string][]preempt.Offer
	for _, o := range st.Offers() {
		p, err := resourcepb.FromProto(o.GetResources())
		if err != nil || p[""].IsEmpty() {
			continue
		}
		if offers == nil {
			offers = map[string][]preempt.Offer{}
		}
		offers[o.GetAgentId()] = append(offers[o.GetAgentId()], preempt.Offer{ID: o.GetId(), FrameworkID: o.GetFrameworkId(), Role: o.GetRole(),
			Priority: prio[o.GetRole()], Resources: p[""]})
	}
	pass := st.Index()
	next := c.nextOrder[:0]
	k := 0
	st.EachAgentVersion(func(a *agorav1.Agent, usage, tasks any) {
		// The state replaces an agent's record to change it: the same
		// record as last pass's k-th entry is that active agent, found
		// without reading the record.
		var e *cachedAgent
		if k < len(c.order) && c.order[k].agent == a {
			e = c.order[k]
		} else {
			if a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
				return
			}
			if k < len(c.order) && c.order[k].id == a.GetId() {
				e = c.order[k]
			} else {
				e = c.agents[a.GetId()]
			}
		}
		same := k < len(c.order) && c.order[k] == e
		if e == nil || e.usage != usage || e.tasks != tasks {
			id := a.GetId()
			e = &cachedAgent{id: id, usage: usage, tasks: tasks, ag: c.agentInput(st, id, prio)}
			c.agents[id] = e
			same = false
		}
		e.agent = a
		e.seen = pass
		next = append(next, e)
		var off []preempt.Offer
		if offers != nil {
			off = offers[e.id]
		}
		if k < len(c.buf) {
			if !same || c.offered[k] || off != nil {
				c.buf[k] = e.ag
				c.buf[k].Offers = off
				c.offered[k] = off != nil
			}
		} else {
			ag := e.ag
			ag.Offers = off
			c.buf = append(c.buf, ag)
			c.offered = append(c.offered, off != nil)
		}
		k++
	})
	clear(c.buf[k:])
	c.buf, c.offered = c.buf[:k], c.offered[:k]
	c.order, c.nextOrder = next, c.order[:0]
	clear(c.nextOrder[:cap(c.nextOrder)])
	if len(c.agents) > k {
		for id, e := range c.agents {
			if e.seen != pass {
				delete(c.agents, id)
			}
		}
	}
	in.Agents, in.Kinds = c.buf, c.kinds
	return in
}

// agentInput is one agent's part of the input without its offers, with
// its dense vectors over c's kinds (adding the kinds it has that c has
// not seen).
func (c *preemptCache) agentInput(st *fsm.State, id string, prio map[string]int32) preempt.Agent {
	free, total := st.AgentFree(id)
	ag := preempt.Agent{ID: id, Total: total, Free: free}
	for _, t := range st.TasksByAgent(id) {
		if !t.GetRevocable() || t.GetKillRequested() || fsm.IsTerminal(t.GetState()) || t.GetState() == agorav1.TaskState_TASK_STATE_UNREACHABLE {
			continue
		}
		p, err := resourcepb.FromProto(t.GetResources())
		if err != nil {
			continue
		}
		ag.Tasks = append(ag.Tasks, preempt.Task{FrameworkID: t.GetFrameworkId(), ID: t.GetId(), Role: t.GetRole(),
			Priority: prio[t.GetRole()], Resources: p[""], Started: t.GetCreatedAt().AsTime(),
			KillGrace: time.Duration(t.GetKillGraceSeconds() * float64(time.Second))})
	}
	preempt.SortTasks(ag.Tasks) // in reprieve order, so Decide sorts none
	c.see(total)
	c.see(free)
	for i := range ag.Tasks {
		c.see(ag.Tasks[i].Resources)
	}
	n := len(c.kinds)
	slab := make([]int64, (2+len(ag.Tasks))*n)
	dn := &preempt.Dense{Stride: n, Total: slab[:n:n], Free: slab[n : 2*n : 2*n], Tasks: slab[2*n:],
		Prios: make([]int32, len(ag.Tasks)), Starts: make([]int64, len(ag.Tasks)), Sorted: true}
	c.fill(dn.Total, total)
	c.fill(dn.Free, free)
	for i := range ag.Tasks {
		t := &ag.Tasks[i]
		c.fill(dn.Tasks[i*n:(i+1)*n], t.Resources)
		dn.Prios[i], dn.Starts[i] = t.Priority, t.Started.UnixNano()
	}
	ag.Dense = dn
	return ag
}

// see adds r's scalar kinds that c has not seen, in name order.
func (c *preemptCache) see(r resources.Resources) {
	var added []string
	for name := range r.Scalars {
		if _, ok := c.kindOf[name]; !ok {
			added = append(added, name)
		}
	}
	slices.Sort(added)
	for _, name := range added {
		c.kindOf[name] = len(c.kinds)
		c.kinds = append(c.kinds, name)
	}
}

// fill sets v to r's scalars by c's kinds.
func (c *preemptCache) fill(v []int64, r resources.Resources) {
	for name, m := range r.Scalars {
		v[c.kindOf[name]] = m
	}
}
