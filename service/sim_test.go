package service

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// cluster is a naive master for tests: agents, reservations, volumes and
// tasks, with the FSM's accept rules written plainly (a reference, not a
// copy: pools are recomputed from scratch every time). It makes the offers
// the plan sees and checks every accept the plan makes, failing on the
// invariants the plan must keep.
type cluster struct {
	role   string
	agents []*simAgent
	resv   map[string]*simResv
	vols   map[string]*simVol
	tasks  map[string]*simTask
	n      int
	// home maps a pod name to the agent and volume of its placement;
	// forgotten on Replace.
	home map[string][2]string
}

type simAgent struct {
	id, host string
	attrs    map[string]string
	total    resources.Resources
	gone     bool
	// drained: the agent makes no offers and its pods may move off it.
	drained bool
}

type simResv struct {
	id, agent string
	labels    map[string]string
	res       resources.Resources
}

type simVol struct {
	id, agent string
	size      float64
}

type simTask struct {
	id, agent, pod string
	res            resources.Resources
	vols           []string
	env            map[string]string
	state          agorav1.TaskState
}

func (t *simTask) live() bool { return !taskGone(stateName(t.state)) }

func newCluster(role string, agents int, racks int) *cluster {
	c := &cluster{role: role, resv: map[string]*simResv{}, vols: map[string]*simVol{}, tasks: map[string]*simTask{}, home: map[string][2]string{}}
	for i := 0; i < agents; i++ {
		a := &simAgent{
			id:    fmt.Sprintf("a%d", i),
			host:  fmt.Sprintf("h%d", i),
			attrs: map[string]string{"rack": fmt.Sprintf("r%d", i%max(racks, 1))},
			total: resources.MustParse(fmt.Sprintf("cpus:4;mem:4096;disk:10000;ports:[%d-%d]", 31000+i*100, 31009+i*100)),
		}
		c.agents = append(c.agents, a)
	}
	return c
}

func (c *cluster) agent(id string) *simAgent {
	for _, a := range c.agents {
		if a.id == id {
			return a
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// free returns an agent's unreserved and role-reserved free resources.
func (c *cluster) free(agentID string) (unreserved, reserved resources.Resources) {
	a := c.agent(agentID)
	unreserved = a.total
	for _, id := range sortedKeys(c.resv) {
		if r := c.resv[id]; r.agent == agentID {
			unreserved = resourcepb.SubtractClamped(unreserved, r.res)
			reserved = reserved.Add(r.res)
		}
	}
	for _, id := range sortedKeys(c.tasks) {
		if t := c.tasks[id]; t.agent == agentID && t.live() {
			reserved = resourcepb.SubtractClamped(reserved, t.res)
		}
	}
	for _, id := range sortedKeys(c.vols) {
		if v := c.vols[id]; v.agent == agentID {
			reserved = resourcepb.SubtractClamped(reserved, resources.Scalar("disk", v.size))
		}
	}
	return unreserved, reserved
}

func (c *cluster) offer(agentID string) Offer {
	a := c.agent(agentID)
	c.n++
	un, re := c.free(agentID)
	o := Offer{ID: fmt.Sprintf("o%d", c.n), AgentID: a.id, Hostname: a.host, Attributes: maps.Clone(a.attrs), Unreserved: un, Reserved: re}
	for _, id := range sortedKeys(c.resv) {
		if r := c.resv[id]; r.agent == agentID {
			o.Reservations = append(o.Reservations, Reservation{ID: r.id, Labels: maps.Clone(r.labels), Resources: r.res})
		}
	}
	for _, id := range sortedKeys(c.vols) {
		if v := c.vols[id]; v.agent == agentID {
			o.Volumes = append(o.Volumes, Volume{ID: v.id, SizeMiB: v.size})
		}
	}
	return o
}

// apply carries out an accept on agentID, checking each operation as the
// master would and the plan's invariants. It changes nothing on error.
func (c *cluster) apply(agentID string, ops []*agorav1.Operation) error {
	save := c.snapshot()
	if err := c.applyOps(agentID, ops); err != nil {
		c.restore(save)
		return err
	}
	return nil
}

func (c *cluster) applyOps(agentID string, ops []*agorav1.Operation) error {
	for i, op := range ops {
		un, re := c.free(agentID)
		p, err := resourcepb.FromProto(op.GetResources())
		if err != nil {
			return fmt.Errorf("op %d: %v", i, err)
		}
		switch op.GetType() {
		case agorav1.OperationType_OPERATION_TYPE_RESERVE:
			if !un.Contains(p[c.role]) || len(p.Roles()) != 1 {
				return fmt.Errorf("op %d: reserve %s, free %s", i, p, un)
			}
			c.n++
			id := fmt.Sprintf("resv%d", c.n)
			c.resv[id] = &simResv{id: id, agent: agentID, labels: maps.Clone(op.GetLabels()), res: p[c.role]}
		case agorav1.OperationType_OPERATION_TYPE_UNRESERVE:
			var match *simResv
			for _, id := range sortedKeys(c.resv) {
				if r := c.resv[id]; r.agent == agentID && r.res.Equal(p[c.role]) {
					match = r
					break
				}
			}
			if match == nil || !re.Contains(p[c.role]) {
				return fmt.Errorf("op %d: unreserve %s: no such free reservation (free %s)", i, p, re)
			}
			delete(c.resv, match.id)
		case agorav1.OperationType_OPERATION_TYPE_CREATE:
			for _, v := range op.GetVolumes() {
				if c.vols[v.GetId()] != nil {
					return fmt.Errorf("op %d: volume %s exists", i, v.GetId())
				}
				if !re.Contains(resources.Scalar("disk", v.GetSizeMib())) {
					return fmt.Errorf("op %d: create %s needs disk %g, reserved free %s", i, v.GetId(), v.GetSizeMib(), re)
				}
				c.vols[v.GetId()] = &simVol{id: v.GetId(), agent: agentID, size: v.GetSizeMib()}
			}
		case agorav1.OperationType_OPERATION_TYPE_DESTROY:
			for _, v := range op.GetVolumes() {
				vol := c.vols[v.GetId()]
				if vol == nil || vol.agent != agentID {
					return fmt.Errorf("op %d: destroy %s: no such volume here", i, v.GetId())
				}
				for _, t := range c.tasks {
					if t.live() && slices.Contains(t.vols, v.GetId()) {
						return fmt.Errorf("op %d: destroy %s: in use by %s", i, v.GetId(), t.id)
					}
				}
				delete(c.vols, v.GetId())
				for pod, h := range c.home {
					if h[1] == v.GetId() {
						delete(c.home, pod) // a purged pod starts afresh
					}
				}
			}
		case agorav1.OperationType_OPERATION_TYPE_LAUNCH:
			for _, ti := range op.GetTasks() {
				tp, err := resourcepb.FromProto(ti.GetResources())
				if err != nil {
					return err
				}
				if c.tasks[ti.GetTaskId()] != nil {
					return fmt.Errorf("op %d: task %s exists", i, ti.GetTaskId())
				}
				if ti.GetAgentId() != agentID {
					return fmt.Errorf("op %d: task %s for agent %s on %s", i, ti.GetTaskId(), ti.GetAgentId(), agentID)
				}
				if !tp[""].IsEmpty() || !re.Contains(tp[c.role]) {
					return fmt.Errorf("op %d: task %s needs %s, reserved free %s", i, ti.GetTaskId(), tp, re)
				}
				for _, vid := range ti.GetVolumeIds() {
					v := c.vols[vid]
					if v == nil || v.agent != agentID {
						return fmt.Errorf("op %d: task %s: volume %s not on agent %s", i, ti.GetTaskId(), vid, agentID)
					}
					for _, t := range c.tasks {
						if t.live() && slices.Contains(t.vols, vid) {
							return fmt.Errorf("INVARIANT: task %s launched on volume %s, in use by running task %s", ti.GetTaskId(), vid, t.id)
						}
					}
				}
				pod := ti.GetName()
				for _, t := range c.tasks {
					if t.live() && t.pod == pod {
						return fmt.Errorf("INVARIANT: task %s of %s launched while %s of the same pod runs", ti.GetTaskId(), pod, t.id)
					}
				}
				vol := strings.Join(ti.GetVolumeIds(), ",")
				if h, ok := c.home[pod]; ok && (h[0] != agentID || h[1] != vol) && !c.agent(h[0]).drained {
					return fmt.Errorf("INVARIANT: %s relaunched on agent %s volume %q, its home is agent %s volume %q", pod, agentID, vol, h[0], h[1])
				}
				c.home[pod] = [2]string{agentID, vol}
				c.tasks[ti.GetTaskId()] = &simTask{id: ti.GetTaskId(), agent: agentID, pod: pod, res: tp[c.role], vols: ti.GetVolumeIds(), env: ti.GetCommand().GetEnvironment(), state: agorav1.TaskState_TASK_STATE_STAGING}
				re = resourcepb.SubtractClamped(re, tp[c.role])
			}
		default:
			return fmt.Errorf("op %d: unexpected %v", i, op.GetType())
		}
	}
	return nil
}

type clusterSave struct {
	resv  map[string]simResv
	vols  map[string]simVol
	tasks map[string]simTask
	home  map[string][2]string
}

func (c *cluster) snapshot() clusterSave {
	s := clusterSave{resv: map[string]simResv{}, vols: map[string]simVol{}, tasks: map[string]simTask{}, home: maps.Clone(c.home)}
	for k, v := range c.resv {
		s.resv[k] = *v
	}
	for k, v := range c.vols {
		s.vols[k] = *v
	}
	for k, v := range c.tasks {
		s.tasks[k] = *v
	}
	return s
}

func (c *cluster) restore(s clusterSave) {
	c.resv, c.vols, c.tasks, c.home = map[string]*simResv{}, map[string]*simVol{}, map[string]*simTask{}, s.home
	for k, v := range s.resv {
		c.resv[k] = &v
	}
	for k, v := range s.vols {
		c.vols[k] = &v
	}
	for k, v := range s.tasks {
		c.tasks[k] = &v
	}
}

// liveTasks returns the ids of live tasks, sorted.
func (c *cluster) liveTasks() []string {
	var out []string
	for id, t := range c.tasks {
		if t.live() {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// loseAgent marks an agent gone: its tasks are LOST and it makes no offers.
func (c *cluster) loseAgent(id string) []string {
	c.agent(id).gone = true
	var lost []string
	for _, tid := range c.liveTasks() {
		if t := c.tasks[tid]; t.agent == id {
			t.state = agorav1.TaskState_TASK_STATE_LOST
			lost = append(lost, tid)
		}
	}
	return lost
}

// forgetAgent drops a gone agent's reservations and volumes, as the master
// should.
func (c *cluster) forgetAgent(id string) {
	for k, r := range c.resv {
		if r.agent == id {
			delete(c.resv, k)
		}
	}
	for k, v := range c.vols {
		if v.agent == id {
			delete(c.vols, k)
		}
	}
}
