package service

import (
	"fmt"
	"slices"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Decision is the plan's answer to one offer: ACCEPT it with Operations,
// or DECLINE it when there are none.
type Decision struct {
	OfferID string
	// Operations for the ACCEPT, in order.
	Operations []*agorav1.Operation
	// Launched names the pods launched, Released the placements released.
	Launched []string
	Released []string
	// Reasons say why pods passed this offer over, one line each, such as
	// "kvservice-kv-1: agent a1 already runs kvservice-kv-0 (one_per agent)".
	Reasons []string
}

// Accept reports whether the offer is to be accepted.
func (d Decision) Accept() bool { return len(d.Operations) > 0 }

func (d *Decision) reason(format string, args ...any) {
	d.Reasons = append(d.Reasons, fmt.Sprintf(format, args...))
}

// offerPool is what is left of an offer as operations take from it.
type offerPool struct {
	unreserved, reserved resources.Resources
}

// HandleOffer decides what to do with an offer and updates the State as if
// the resulting accept succeeds. In order it:
//
//  1. learns reservations from their labels: confirms its pods', adopts
//     ones it has no record of (a re-run service or a lost record), and
//     marks stale ones of its pods for release;
//  2. releases (DESTROY, UNRESERVE) placements it no longer wants whose
//     resources the offer carries;
//  3. relaunches, in place, pods pinned to this agent whose task is gone:
//     a recovering pod with its own config, the plan's current pod with
//     the target config, each only when the offer carries the pod's own
//     reservation and volume;
//  4. places the plan's current pod, if it has no placement yet: RESERVE,
//     CREATE and LAUNCH in one accept, when the agent fits its resources
//     and placement constraint.
func (s *State) HandleOffer(o Offer) Decision {
	d := Decision{OfferID: o.ID}
	if o.AgentID == "" {
		d.reason("offer %s names no agent", o.ID)
		return d
	}
	s.learn(&o, &d)
	pool := &offerPool{unreserved: o.Unreserved, reserved: o.Reserved}
	s.release(&o, pool, &d)
	step := s.step()
	for _, p := range s.Pods {
		if p.AgentID == o.AgentID {
			s.relaunch(p, p == step, &o, pool, &d)
		}
	}
	if step != nil && !step.placed() {
		s.place(step, &o, pool, &d)
	}
	s.normalize()
	return d
}

func (s *State) learn(o *Offer, d *Decision) {
	for _, r := range o.Reservations {
		lb, ok := s.readLabels(r)
		if !ok {
			continue
		}
		if i := slices.IndexFunc(s.Releases, func(x *Release) bool { return x.Instance == lb.instance }); i >= 0 {
			s.Releases[i].ReservationID = r.ID
			continue
		}
		if i := slices.IndexFunc(s.Pods, func(p *Pod) bool { return p.Instance == lb.instance }); i >= 0 {
			if p := s.Pods[i]; p.AgentID == o.AgentID {
				p.Confirmed, p.ReservationID = true, r.ID
			}
			continue
		}
		pt, ok := s.Spec.Pod(lb.pod)
		if !ok || len(lb.ports) != len(pt.Resources.Ports) || (pt.Volume != nil) != (lb.volume != "") {
			d.reason("reservation %s: labels name %s of a pod type this spec does not have", r.ID, PodName(s.Spec.Name, lb.pod, lb.index))
			continue
		}
		i := slices.IndexFunc(s.Pods, func(p *Pod) bool { return p.Type == lb.pod && p.Index == lb.index })
		var p *Pod
		switch {
		case i < 0:
			p = &Pod{Type: lb.pod, Index: lb.index}
			s.Pods = append(s.Pods, p)
		case !s.Pods[i].placed():
			p = s.Pods[i]
		default:
			rel := &Release{Pod: PodName(s.Spec.Name, lb.pod, lb.index), AgentID: o.AgentID, Instance: lb.instance, ReservationID: r.ID, VolumeID: lb.volume, Resources: r.Resources.String()}
			if lb.volume != "" {
				rel.VolumeMiB = pt.Volume.Size
			}
			s.Releases = append(s.Releases, rel)
			d.reason("reservation %s: a stale placement of %s, to release", r.ID, PodName(s.Spec.Name, lb.pod, lb.index))
			continue
		}
		p.Instance, p.AgentID, p.Host, p.Attributes = lb.instance, o.AgentID, o.Hostname, o.Attributes
		p.Ports, p.VolumeID, p.ReservationID, p.Confirmed = lb.ports, lb.volume, r.ID, true
		d.reason("%s: adopted reservation %s", s.podName(p), r.ID)
	}
}

func (s *State) release(o *Offer, pool *offerPool, d *Decision) {
	kept := s.Releases[:0]
	for _, r := range s.Releases {
		if r.AgentID != o.AgentID || !taskGone(r.TaskState) {
			kept = append(kept, r)
			continue
		}
		_, resv := o.reservation(r.Instance)
		vol := r.VolumeID != "" && o.hasVolume(r.VolumeID)
		if !resv && !vol {
			// The agent's reservations and volumes are listed in full:
			// this placement is already gone.
			d.Released = append(d.Released, r.Instance)
			continue
		}
		res, err := resources.Parse(r.Resources)
		if err != nil {
			d.reason("release %s: bad resources %q: %v", r.Instance, r.Resources, err)
			kept = append(kept, r)
			continue
		}
		need := res
		if vol {
			need = resourcepb.SubtractClamped(res, resources.Scalar("disk", r.VolumeMiB))
		}
		if !pool.reserved.Contains(need) {
			d.reason("release %s: needs %s of role %s free, offer has %s", r.Instance, need, s.Spec.Role, orNothing(pool.reserved))
			kept = append(kept, r)
			continue
		}
		if vol {
			d.Operations = append(d.Operations, &agorav1.Operation{
				Type:    agorav1.OperationType_OPERATION_TYPE_DESTROY,
				Volumes: []*agorav1.VolumeInfo{{Id: r.VolumeID, Role: s.Spec.Role}},
			})
		}
		if resv {
			d.Operations = append(d.Operations, &agorav1.Operation{
				Type:      agorav1.OperationType_OPERATION_TYPE_UNRESERVE,
				Resources: resourcepb.ToProto(s.Spec.Role, res),
			})
			pool.reserved = resourcepb.SubtractClamped(pool.reserved, need)
		}
		d.Released = append(d.Released, r.Instance)
	}
	clear(s.Releases[len(kept):])
	s.Releases = kept
}

// step returns the pod the plan works on: a pod whose launch is in
// progress (launched, not yet ready) if there is one, else the first pod,
// in plan order, that should run and is not deployed with the target
// config. Nil when the plan is complete or halted by a failure. (A launch
// stays the step when a command makes an earlier pod not done, so steps
// never overlap; if its config is no longer the target it is killed.)
func (s *State) step() *Pod {
	if s.Failed != nil {
		return nil
	}
	for _, p := range s.Pods {
		if !s.retired(p) && p.live() && !p.Deployed {
			return p
		}
	}
	for _, p := range s.Pods {
		if !s.retired(p) && !s.done(p) {
			return p
		}
	}
	return nil
}

// done reports whether p's plan step is complete.
func (s *State) done(p *Pod) bool {
	pt, _ := s.Spec.Pod(p.Type)
	return p.placed() && p.Deployed && p.Config.equal(configOf(pt))
}

// recovering reports whether p is a deployed pod whose task died and that
// is relaunched in place with its own config, beside the plan.
func (s *State) recovering(p *Pod) bool {
	return p.placed() && p.Deployed && !p.live() && !s.retired(p) && !s.failedPod(p)
}

func (s *State) failedPod(p *Pod) bool { return s.Failed != nil && s.Failed.Pod == s.podName(p) }

func (s *State) relaunch(p *Pod, isStep bool, o *Offer, pool *offerPool, d *Decision) {
	if p.live() || s.retired(p) || (!isStep && !s.recovering(p)) {
		return
	}
	pt, _ := s.Spec.Pod(p.Type)
	cfg := p.Config
	if isStep || cfg == nil {
		cfg = configOf(pt)
	}
	name := s.podName(p)
	r, ok := o.reservation(p.Instance)
	if !ok {
		d.reason("%s: offer does not carry its reservation %s", name, p.Instance)
		return
	}
	if p.VolumeID != "" && !o.hasVolume(p.VolumeID) {
		d.reason("%s: offer does not carry its volume %s", name, p.VolumeID)
		return
	}
	need := pt.taskResources(p.Ports)
	if !pool.reserved.Contains(need) {
		d.reason("%s: needs %s of role %s free, offer has %s", name, need, s.Spec.Role, orNothing(pool.reserved))
		return
	}
	op, err := s.launchOp(p, pt, cfg, need)
	if err != nil {
		d.reason("%s: %v", name, err)
		return
	}
	pool.reserved = resourcepb.SubtractClamped(pool.reserved, need)
	p.Confirmed, p.ReservationID = true, r.ID
	d.Operations = append(d.Operations, op)
	d.Launched = append(d.Launched, name)
}

func (s *State) place(p *Pod, o *Offer, pool *offerPool, d *Decision) {
	pt, _ := s.Spec.Pod(p.Type)
	name := s.podName(p)
	if p.Avoid == o.AgentID {
		d.reason("%s: was replaced away from agent %s", name, o.AgentID)
		return
	}
	for _, r := range s.Releases {
		if r.Pod == name && !taskGone(r.TaskState) {
			// Never two tasks of one pod at once, even on different volumes.
			d.reason("%s: waiting for its old task %s on agent %s to stop", name, r.TaskID, r.AgentID)
			return
		}
	}
	if why := s.misfit(p, pt, o); why != "" {
		d.reason("%s: %s", name, why)
		return
	}
	ports, ok := pool.unreserved.PickRanges("ports", len(pt.Resources.Ports))
	if !ok {
		d.reason("%s: needs %d unreserved ports, offer has %s", name, len(pt.Resources.Ports), orNothing(pool.unreserved))
		return
	}
	need := pt.reserved(ports)
	left, err := pool.unreserved.Subtract(need)
	if err != nil {
		d.reason("%s: needs %s unreserved, offer has %s", name, need, orNothing(pool.unreserved))
		return
	}
	p.AgentID, p.Host, p.Attributes, p.Ports = o.AgentID, o.Hostname, o.Attributes, ports
	p.Instance = s.nextID("r", p)
	if pt.Volume != nil {
		p.VolumeID = p.Instance
	}
	p.Confirmed, p.ReservationID = false, ""
	launch, err := s.launchOp(p, pt, configOf(pt), pt.taskResources(ports))
	if err != nil {
		d.reason("%s: %v", name, err)
		p.Instance, p.AgentID, p.Host, p.Attributes, p.Ports, p.VolumeID = "", "", "", nil, nil, ""
		return
	}
	pool.unreserved = left
	d.Operations = append(d.Operations, &agorav1.Operation{
		Type:      agorav1.OperationType_OPERATION_TYPE_RESERVE,
		Resources: resourcepb.ToProto(s.Spec.Role, need),
		Labels:    s.labels(p),
	})
	if pt.Volume != nil {
		d.Operations = append(d.Operations, &agorav1.Operation{
			Type: agorav1.OperationType_OPERATION_TYPE_CREATE,
			Volumes: []*agorav1.VolumeInfo{{
				Id: p.VolumeID, SizeMib: pt.Volume.Size, ContainerPath: pt.Volume.Path, Role: s.Spec.Role,
			}},
		})
	}
	d.Operations = append(d.Operations, launch)
	d.Launched = append(d.Launched, name)
}

// misfit says why an offer's agent breaks p's placement constraint, or "".
// Every placed pod of the type counts, retired ones included: they keep
// their reservation and may be scaled back.
func (s *State) misfit(p *Pod, pt *PodSpec, o *Offer) string {
	by := pt.Placement.OnePer
	if by == "" {
		return ""
	}
	value := o.AgentID
	if by != AgentPlacement {
		v, ok := o.Attributes[by]
		if !ok {
			return fmt.Sprintf("agent %s has no attribute %q (one_per %s)", o.AgentID, by, by)
		}
		value = v
	}
	for _, q := range s.Pods {
		if q == p || q.Type != p.Type || !q.placed() {
			continue
		}
		qv := q.AgentID
		if by != AgentPlacement {
			qv = q.Attributes[by]
		}
		if qv == value {
			return fmt.Sprintf("%s %s already holds %s (one_per %s)", by, value, s.podName(q), by)
		}
	}
	return ""
}

// launchOp builds the LAUNCH of p's next task with cfg and records it.
func (s *State) launchOp(p *Pod, pt *PodSpec, cfg *PodConfig, res resources.Resources) (*agorav1.Operation, error) {
	// A recovering pod runs its own config, whose templates may be older
	// than the type's.
	withCfg := *pt
	withCfg.Env = cfg.Env
	env, err := Env(PodEnvInput{
		Service: s.Spec.Name, Pod: &withCfg, Count: pt.Count,
		Self: s.peer(p, pt), Peers: s.peers(p, pt),
	})
	if err != nil {
		return nil, err
	}
	taskID := s.nextID("t", p)
	ti := &agorav1.TaskInfo{
		TaskId:           taskID,
		Name:             s.podName(p),
		AgentId:          p.AgentID,
		Resources:        resourcepb.ToProto(s.Spec.Role, res),
		Command:          &agorav1.CommandInfo{Value: cfg.Command, Environment: env},
		KillGraceSeconds: cfg.KillGraceSeconds,
	}
	if p.VolumeID != "" {
		ti.VolumeIds = []string{p.VolumeID}
	}
	if !cfg.equal(p.Config) {
		p.Deployed = false
	}
	p.Config = cfg
	p.TaskID, p.TaskState, p.Ready, p.KillReason = taskID, "STAGING", false, ""
	return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{ti}}, nil
}

func (s *State) peer(p *Pod, pt *PodSpec) Peer {
	ports := make(map[string]uint64, len(p.Ports))
	for i, n := range pt.Resources.Ports {
		if i < len(p.Ports) {
			ports[n] = p.Ports[i]
		}
	}
	return Peer{Index: p.Index, Host: p.Host, Ports: ports}
}

// peers are the placed pods of p's type below its count, in index order.
func (s *State) peers(p *Pod, pt *PodSpec) []Peer {
	var out []Peer
	for _, q := range s.Pods {
		if q.Type == p.Type && q.placed() && !s.retired(q) {
			out = append(out, s.peer(q, pt))
		}
	}
	slices.SortFunc(out, func(a, b Peer) int { return a.Index - b.Index })
	return out
}

// orNothing prints r, or "nothing" when it is empty.
func orNothing(r resources.Resources) string {
	if r.IsEmpty() {
		return "nothing"
	}
	return r.String()
}
