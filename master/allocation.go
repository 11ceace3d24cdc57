package master

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/allocator"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

const (
	// minRoundGap spaces any two allocation rounds.
	minRoundGap = time.Millisecond
	// roundGapFactor spaces the starts of two rounds by this many times what
	// the first cost to compute, so that rounds take at most a quarter of a
	// core however often the state changes: at 10,000 agents a round costs
	// milliseconds and, under a load that changes the state a hundred times
	// a second, back-to-back rounds took a fifth of the leader's CPU
	// (issue 13). A small cluster's rounds cost microseconds: no change.
	roundGapFactor = 4
	// allocBurst is how many proposing rounds may run back to back before
	// they are paced at one per AllocationInterval.
	allocBurst = 3.0
	// maxIdleWake bounds how long the expiry loop sleeps between scans.
	maxIdleWake = 250 * time.Millisecond
	// maxDropBackoff bounds the pause after rounds whose offers the FSM
	// dropped entirely (allocator and FSM disagree: do not spam the log).
	maxDropBackoff = time.Second
	// maxExpireBackoff bounds the pause between Expire proposals that did
	// not remove the deadline that triggered them.
	maxExpireBackoff = 10 * time.Second
)

// allocState is the allocator's trigger: the FSM hook marks it dirty on
// every replica; the leader's allocation task waits on it.
type allocState struct {
	dirty chan struct{} // capacity 1
}

func newAllocState() *allocState { return &allocState{dirty: make(chan struct{}, 1)} }

func (a *allocState) markDirty() {
	select {
	case a.dirty <- struct{}{}:
	default:
	}
}

// runAllocation is the leader's allocation task: event-triggered and
// batched, each round one OffersCreated entry. Rounds that propose offers
// are paced by a token bucket refilled once per AllocationInterval with a
// small burst: a busy cluster gets at most one round per interval, while an
// idle one offers freed resources at once.
func (l *leader) runAllocation(ctx context.Context) {
	m := l.m
	interval := m.Config().AllocationInterval
	log := m.log.With("component", "allocation")
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	var (
		last    time.Time
		cost    time.Duration // of the last round's computation
		backoff time.Duration
		bucket  = newTokenBucket(float64(time.Second)/float64(interval), allocBurst, m.Now())
		cache   = &snapCache{}
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.alloc.dirty:
		case <-wake.C:
		}
		for {
			now := m.Now()
			wait := max(max(minRoundGap, backoff, roundGapFactor*cost)-now.Sub(last), bucket.wait(now))
			if wait <= 0 {
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = m.Now()
		// Dirty marks until now are covered by the round below.
		select {
		case <-l.alloc.dirty:
		default:
		}
		start := time.Now()
		var proposed, kept int
		var next time.Time
		proposed, kept, next, cost = l.allocateOnce(ctx, cache, log)
		m.metrics.observeRound(time.Since(start))
		if proposed > 0 {
			bucket.spend()
		}
		if proposed > 0 && kept == 0 {
			// The FSM dropped the whole round: allocator and FSM disagree.
			// Retry, but back off so as not to fill the log.
			backoff = min(max(2*backoff, interval), maxDropBackoff)
			l.alloc.markDirty()
		} else {
			backoff = 0
		}
		if !wake.Stop() {
			select {
			case <-wake.C:
			default:
			}
		}
		if !next.IsZero() {
			wake.Reset(max(next.Sub(m.Now()), time.Millisecond))
		}
	}
}

// allocateOnce runs one round (its snapshot reusing what cache kept of
// the previous round's): it returns how many offers it proposed, how many
// the FSM kept, when the earliest filter it honoured expires (zero when
// none), at which point the round should run again, and what computing
// the round cost (not its commit).
func (l *leader) allocateOnce(ctx context.Context, cache *snapCache, log *slog.Logger) (proposed, kept int, next time.Time, cost time.Duration) {
	st := l.m.State()
	start := time.Now()
	cmd, next := allocationRound(st, l.m.Now(), l.m.Config().OfferTimeout, NewID, l.m.explain.allocate, cache)
	cost = time.Since(start)
	if cmd == nil {
		return 0, 0, next, cost
	}
	res, err := l.m.Apply(ctx, fsm.CmdOffersCreated, cmd)
	if err != nil {
		log.Debug("allocation round rejected", "offers", len(cmd.Offers), "err", err)
		return len(cmd.Offers), 0, next, cost
	}
	if len(res.IDs) < len(cmd.Offers) {
		log.Debug("allocation round partly dropped", "offers", len(cmd.Offers), "kept", len(res.IDs), "index", res.Index)
	}
	return len(cmd.Offers), len(res.IDs), next, cost
}

// allocationRound is one allocation round as a function of the state, the
// leader's time, the offer timeout, an id source and the allocator
// (allocator.Allocate, or a traced run of it), with a snapshot cache (nil:
// none; it changes what is cloned, not the result): the OffersCreated
// command to propose (nil when nothing is offered) and when the earliest
// filter it honoured expires (zero when none).
func allocationRound(st *fsm.State, now time.Time, offerTimeout time.Duration, newID func() string,
	allocate func(allocator.Snapshot, time.Time, uint64) []allocator.Offer, cache *snapCache) (*agorav1.OffersCreatedCommand, time.Time) {
	snap, next := buildSnapshotCached(st, now, cache)
	offers := allocate(snap, now, st.Index())
	if len(offers) == 0 {
		return nil, next
	}
	cmd := &agorav1.OffersCreatedCommand{Now: timestamppb.New(now)}
	expires := timestamppb.New(now.Add(offerTimeout))
	created := timestamppb.New(now)
	listed := map[string]bool{} // volume ids already in an offer
	for _, o := range st.Offers() {
		for _, r := range resourcepb.IdleVolumes(o.GetResources()) {
			listed[r.GetVolume().GetId()] = true
		}
	}
	for _, o := range offers {
		a, _ := st.Agent(o.AgentID)
		var rs []*agorav1.Resource
		if !o.Unreserved.IsEmpty() {
			rs = resourcepb.ToProto("", o.Unreserved)
		}
		rs = append(rs, reservedResources(st, o.AgentID, o.Role, o.Reserved)...)
		rs = append(rs, idleVolumes(st, o.AgentID, o.Role, listed)...)
		cmd.Offers = append(cmd.Offers, &agorav1.Offer{
			Id:          newID(),
			FrameworkId: o.FrameworkID,
			AgentId:     o.AgentID,
			Role:        o.Role,
			Resources:   rs,
			CreatedAt:   created,
			ExpiresAt:   expires,
			Hostname:    a.GetHostname(),
			Attributes:  a.GetAttributes(),
			Revocable:   o.Revocable,
		})
	}
	return cmd, next
}

// reservedResources lists the offered reserved resources of role on an
// agent, each with the reservation it comes from (id, principal, labels),
// as Mesos offers do, so a framework re-finds its reservations from offers.
// The FSM accounts reservations per role, not per reservation, so what is
// free is attributed to the role's reservations in id order; anything left
// over (none, while the accounting holds) is listed without a reservation.
func reservedResources(st *fsm.State, agentID, role string, free resources.Resources) []*agorav1.Resource {
	if free.IsEmpty() {
		return nil
	}
	var out []*agorav1.Resource
	left := free
	for _, rv := range st.ReservationsByAgent(agentID) {
		if rv.GetRole() != role || left.IsEmpty() {
			continue
		}
		p, err := resourcepb.FromProto(rv.GetResources())
		if err != nil {
			continue
		}
		take := resourcepb.Intersect(left, p[role])
		if take.IsEmpty() {
			continue
		}
		left = resourcepb.SubtractClamped(left, take)
		info := &agorav1.ResourceReservation{Id: rv.GetId(), Principal: rv.GetPrincipal(), Labels: rv.GetLabels()}
		for _, r := range resourcepb.ToProto(role, take) {
			r.Reservation = info
			out = append(out, r)
		}
	}
	if !left.IsEmpty() {
		out = append(out, resourcepb.ToProto(role, left)...)
	}
	return out
}

// idleVolumes lists the persistent volumes of role on an agent that no
// live task uses and no offer lists yet (listed, updated), as volume
// resources: disk of the volume's size with the volume's id and container
// path, and the first reservation of the role on the agent whose disk can
// hold it. A framework launches with one by naming its id (or copying the
// resource into the task).
func idleVolumes(st *fsm.State, agentID, role string, listed map[string]bool) []*agorav1.Resource {
	vols := st.VolumesByAgent(agentID)
	if len(vols) == 0 {
		return nil
	}
	inUse := map[string]bool{}
	for _, t := range st.TasksByAgent(agentID) {
		if !fsm.IsTerminal(t.GetState()) {
			for _, vid := range t.GetVolumeIds() {
				inUse[vid] = true
			}
		}
	}
	var out []*agorav1.Resource
	for _, v := range vols {
		if v.GetRole() != role || inUse[v.GetId()] || listed[v.GetId()] {
			continue
		}
		listed[v.GetId()] = true
		r := &agorav1.Resource{
			Name: "disk", Scalar: v.GetSizeMib(), Role: role,
			Volume: &agorav1.ResourceVolume{Id: v.GetId(), ContainerPath: v.GetContainerPath(), Principal: v.GetPrincipal()},
		}
		for _, rv := range st.ReservationsByAgent(agentID) {
			if p, err := resourcepb.FromProto(rv.GetResources()); err == nil && rv.GetRole() == role && p[role].Scalar("disk") >= v.GetSizeMib() {
				r.Reservation = &agorav1.ResourceReservation{Id: rv.GetId(), Principal: rv.GetPrincipal(), Labels: rv.GetLabels()}
				break
			}
		}
		out = append(out, r)
	}
	return out
}

// buildSnapshot turns replicated state into the allocator's input: active
// agents with their free pools, connected frameworks, configured roles. It
// also returns the earliest filter expiry after now (zero when none).
func buildSnapshot(st *fsm.State, now time.Time) (allocator.Snapshot, time.Time) {
	return buildSnapshotCached(st, now, nil)
}

// buildSnapshotCached is buildSnapshot reusing, through cache (nil: none),
// the agents whose accounting did not change since the cache's last call.
func buildSnapshotCached(st *fsm.State, now time.Time, cache *snapCache) (allocator.Snapshot, time.Time) {
	var snap allocator.Snapshot
	var next time.Time
	for _, fw := range st.Frameworks() {
		if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
			continue
		}
		f := allocator.Framework{
			ID:        fw.GetId(),
			Roles:     fw.GetInfo().GetRoles(),
			Allocated: st.FrameworkAllocated(fw.GetId()),
			Revocable: slices.Contains(fw.GetInfo().GetCapabilities(), agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES),
		}
		if len(fw.GetSuppressedRoles()) > 0 {
			f.Suppressed = make(map[string]bool, len(fw.GetSuppressedRoles()))
			for _, r := range fw.GetSuppressedRoles() {
				f.Suppressed[r] = true
			}
		}
		for _, flt := range fw.GetFilters() {
			until := flt.GetUntil().AsTime()
			if !until.After(now) {
				continue
			}
			f.Filters = append(f.Filters, allocator.Filter{AgentID: flt.GetAgentId(), Until: until})
			if next.IsZero() || until.Before(next) {
				next = until
			}
		}
		snap.Frameworks = append(snap.Frameworks, f)
	}
	if len(snap.Frameworks) == 0 {
		return snap, next // nobody to offer to: skip the per-agent work
	}
	snap.Agents = cache.agents(st, &snap.Excluded)
	for _, p := range st.Preemptions() {
		if !fsm.PreemptionEnd(p).AsTime().After(now) {
			continue
		}
		held, _ := resourcepb.FromProto(p.GetResources())
		snap.Earmarks = append(snap.Earmarks, allocator.Earmark{
			AgentID: p.GetAgentId(), FrameworkID: p.GetFrameworkId(), Role: p.GetRole(), Resources: held.Total(),
			Pending: p.GetFreedAt() == nil,
		})
	}
	for _, r := range st.Roles() {
		guarantee, _ := resourcepb.FromProto(r.GetGuarantee())
		limit, _ := resourcepb.FromProto(r.GetLimit())
		snap.Roles = append(snap.Roles, allocator.Role{
			Name:           r.GetName(),
			Weight:         r.GetWeight(),
			Guarantee:      guarantee.Total(),
			Limit:          limit.Total(),
			Priority:       r.GetPriority(),
			MaxUtilization: r.GetMaxUtilization(),
		})
	}
	return snap, next
}

// snapCache keeps, per active agent, the allocator.Agent the last
// snapshot derived from the agent's accounting (fsm.State.EachAgentVersion's
// usage value: the state replaces it on every change, so the same value
// means the same accounting): a round converts, cloning their free pools,
// only the agents whose accounting changed since the previous round. The
// entries are kept in id order, the order EachAgentVersion walks, so a
// round finds an unchanged agent's entry without a map lookup. The
// snapshot shares the cached values (the allocator treats its input as
// read-only). A nil *snapCache caches nothing. It belongs to one goroutine
// (the leader's allocation task).
type snapCache struct {
	order, next []snapEntry
}

type snapEntry struct {
	usage any // the accounting ag was derived from (held: stays unique)
	ag    allocator.Agent
}

// agents returns the snapshot's active agents in id order, appending the
// others to excluded (see appendExcluded).
func (c *snapCache) agents(st *fsm.State, excluded *[]allocator.ExcludedAgent) []allocator.Agent {
	var out []allocator.Agent
	var next []snapEntry
	if c != nil {
		next = c.next[:0]
	}
	k := 0
	st.EachAgentVersion(func(a *agorav1.Agent, usage, _ any) {
		if a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
			*excluded = appendExcluded(*excluded, a)
			return
		}
		id := a.GetId()
		if c != nil {
			for k < len(c.order) && c.order[k].ag.ID < id {
				k++
			}
			if k < len(c.order) && c.order[k].ag.ID == id && c.order[k].usage == usage {
				e := c.order[k]
				next = append(next, e)
				out = append(out, e.ag)
				return
			}
		}
		ag := snapAgent(st, id)
		if c != nil {
			next = append(next, snapEntry{usage: usage, ag: ag})
		}
		out = append(out, ag)
	})
	if c != nil {
		clear(c.order) // drop references to old accounting
		c.order, c.next = next, c.order[:0]
	}
	return out
}

// snapAgent is the allocator's view of the active agent id: its total and
// its free pools, unreserved and per role (empty ones left out).
func snapAgent(st *fsm.State, id string) allocator.Agent {
	u := st.AgentUsage(id)
	ag := allocator.Agent{ID: id, Total: u.Total, Unreserved: u.Free[""]}
	for role, r := range u.Free {
		if role == "" || r.IsEmpty() {
			continue
		}
		if ag.Reserved == nil {
			ag.Reserved = map[string]resources.Resources{}
		}
		ag.Reserved[role] = r
	}
	return ag
}

// runExpiry is the leader's expiry task: it proposes Expire when an offer,
// a filter or a disconnected framework's failover timeout is past due, and
// marks frameworks disconnected that no stream serves once the grace after
// winning leadership has passed (their stream was on the old leader).
func (l *leader) runExpiry(ctx context.Context) {
	m := l.m
	cfg := m.Config()
	log := m.log.With("component", "expiry")
	graceEnd := m.Now().Add(cfg.FrameworkReconnectGrace)
	var (
		lastDue    time.Time // the deadline our last Expire was meant to clear
		retryAt    time.Time
		backoff    time.Duration
		orphanSent = map[string]string{} // framework -> token we proposed disconnected
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		st := m.State()
		now := m.Now()
		due, next := expiryDue(st, now)
		if !due.IsZero() && (!due.Equal(lastDue) || !now.Before(retryAt)) {
			if due.Equal(lastDue) {
				backoff = min(max(2*backoff, 100*time.Millisecond), maxExpireBackoff)
			} else {
				backoff = 0
			}
			lastDue, retryAt = due, now.Add(backoff)
			if _, err := m.Apply(ctx, fsm.CmdExpire, &agorav1.ExpireCommand{Now: timestamppb.New(now)}); err != nil {
				log.Debug("expire rejected", "err", err)
			}
			timer.Reset(0)
			continue
		}
		if now.After(graceEnd) {
			l.disconnectOrphans(ctx, st, now, orphanSent, log)
		}
		wait := maxIdleWake
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		if !due.IsZero() {
			wait = min(wait, max(retryAt.Sub(now), time.Millisecond))
		}
		timer.Reset(wait)
	}
}

// disconnectOrphans proposes FrameworkDisconnected for connected frameworks
// that have no stream on this master, once per (framework, token).
func (l *leader) disconnectOrphans(ctx context.Context, st *fsm.State, now time.Time, sent map[string]string, log *slog.Logger) {
	for _, fw := range st.Frameworks() {
		if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED || l.m.schedSrv.broker.has(fw.GetId()) {
			continue
		}
		if sent[fw.GetId()] == fw.GetStreamToken() {
			continue
		}
		// st was taken before this pass: a subscription may have replaced
		// the stream since (the FSM then ignores the command, as it is for
		// another token, but it would be an entry and a false log line).
		if cur, ok := l.m.State().Framework(fw.GetId()); !ok || cur.GetStreamToken() != fw.GetStreamToken() ||
			cur.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED || l.m.schedSrv.broker.has(fw.GetId()) {
			continue
		}
		res, err := l.m.Apply(ctx, fsm.CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{
			FrameworkId: fw.GetId(), StreamToken: fw.GetStreamToken(), Now: timestamppb.New(now),
		})
		if err == nil || res.Err != nil {
			// Applied, or rejected for good: do not propose it again.
			sent[fw.GetId()] = fw.GetStreamToken()
		}
		if err != nil {
			log.Debug("marking framework without stream disconnected failed", "framework", fw.GetId(), "err", err)
			continue
		}
		if after, ok := l.m.State().Framework(fw.GetId()); ok && after.GetStreamToken() == fw.GetStreamToken() &&
			after.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED {
			log.Info("framework has no stream after the leader change; marked disconnected", "framework", fw.GetId())
		}
	}
}

// expiryDue returns the earliest deadline at or before now (zero when
// nothing is due) and the earliest one after now (zero when none): offer
// expiry, filter expiry, disconnected framework failover.
func expiryDue(st *fsm.State, now time.Time) (due, next time.Time) {
	see := func(t time.Time) {
		if !t.After(now) {
			if due.IsZero() || t.Before(due) {
				due = t
			}
			return
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, o := range st.Offers() {
		see(o.GetExpiresAt().AsTime())
	}
	for _, p := range st.Preemptions() {
		see(fsm.PreemptionEnd(p).AsTime())
	}
	for _, fw := range st.Frameworks() {
		for _, f := range fw.GetFilters() {
			see(f.GetUntil().AsTime())
		}
		if fw.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED {
			// As the FSM counts it: the stored (effective) timeout.
			ft := time.Duration(fw.GetInfo().GetFailoverTimeoutSeconds() * float64(time.Second))
			see(fw.GetDisconnectedAt().AsTime().Add(ft))
		}
	}
	return due, next
}
