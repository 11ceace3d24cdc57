package fsm

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// readOnlyApply reports whether the Apply of commands of type t only reads
// its message (it copies what it keeps), so that Judge may dry-run the
// caller's message itself rather than a deep copy of it: the copy of an
// Accept of 100 tasks was a third of the leader's judgement of it.
// The test harness checks after every command of the scenario, fuzz and
// property tests that Judge left the message as it was.
func readOnlyApply(t CommandType) bool {
	switch t {
	case CmdAccept, CmdAcknowledge, CmdStatusUpdate, CmdDecline:
		return true
	}
	return false
}

// acceptRun is the working state of one Accept: the pool of offered
// resources by reservation role, shrinking and growing as operations apply.
type acceptRun struct {
	x       *txn
	c       *agorav1.AcceptCommand
	f       *agorav1.Framework
	agentID string
	role    string // allocation role of the first offer
	// revocable: an offer is revocable, so tasks using unreserved
	// resources are revocable.
	revocable bool
	pool      resourcepb.Pools
	nextID    int
	tasks     map[string]bool // task ids launched by this accept
}

// accept applies the operations of an ACCEPT to the resources of the
// framework's offers (all on one agent), atomically and in order, and
// filters the agent for the unused rest until refuse_until.
func (x *txn) accept(c *agorav1.AcceptCommand) *Rejection {
	f, ok := x.framework(c.GetFrameworkId())
	if !ok {
		return reject(CodeNotFound, "unknown framework %s", c.GetFrameworkId())
	}
	offers, rej := x.ownOffers(f.GetId(), c.GetOfferIds())
	if rej != nil {
		return rej
	}
	now := ts(c.GetNow())
	for _, o := range offers {
		if o.GetExpiresAt() != nil && cmpTS(o.GetExpiresAt(), now) <= 0 {
			return reject(CodeFailedPrecondition, "offer %s expired at %s", o.GetId(), o.GetExpiresAt().AsTime().UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		if o.GetAgentId() != offers[0].GetAgentId() {
			return reject(CodeInvalidArgument, "offers %s and %s are on different agents (%s, %s); one accept takes offers of one agent",
				offers[0].GetId(), o.GetId(), offers[0].GetAgentId(), o.GetAgentId())
		}
	}
	if f.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
		return reject(CodeFailedPrecondition, "framework %s is not connected: subscribe first", f.GetId())
	}
	if len(c.GetOperations()) == 0 {
		return reject(CodeInvalidArgument, "no operations: use Decline to return offers")
	}
	if rej := x.checkAcceptLimits(f.GetId(), c); rej != nil {
		return rej
	}
	run := &acceptRun{x: x, c: c, f: f, agentID: offers[0].GetAgentId(), role: offers[0].GetRole(), pool: resourcepb.Pools{},
		tasks: make(map[string]bool, launchCount(c.GetOperations()))}
	for _, o := range offers {
		run.revocable = run.revocable || o.GetRevocable()
		run.pool = run.pool.Add(pools(o.GetResources()))
	}
	x.takeOffers(offers, "accepted")
	for i, op := range c.GetOperations() {
		var rej *Rejection
		if op == nil {
			op = &agorav1.Operation{}
		}
		switch op.GetType() {
		case agorav1.OperationType_OPERATION_TYPE_RESERVE:
			rej = run.reserve(op)
		case agorav1.OperationType_OPERATION_TYPE_UNRESERVE:
			rej = run.unreserve(op)
		case agorav1.OperationType_OPERATION_TYPE_CREATE:
			rej = run.create(op)
		case agorav1.OperationType_OPERATION_TYPE_DESTROY:
			rej = run.destroy(op)
		case agorav1.OperationType_OPERATION_TYPE_LAUNCH:
			rej = run.launch(op, "")
		case agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP:
			rej = run.launch(op, run.id("group"))
		default:
			rej = reject(CodeInvalidArgument, "unknown type %d", int32(op.GetType()))
		}
		if rej != nil {
			rej.Message = fmt.Sprintf("operation %d: %s", i, rej.Message)
			return rej
		}
	}
	if until := c.GetRefuseUntil(); until != nil && cmpTS(until, now) > 0 {
		x.addFilter(f.GetId(), run.agentID, until)
	}
	return nil
}

// id returns the next leader-given id, or one derived from the index.
func (r *acceptRun) id(kind string) string {
	n := r.nextID
	r.nextID++
	if n < len(r.c.GetIds()) && r.c.GetIds()[n] != "" {
		return r.c.GetIds()[n]
	}
	return fmt.Sprintf("%s-%d-%d", kind, r.x.index, n)
}

func (r *acceptRun) hasRole(role string) bool {
	return slices.Contains(r.f.GetInfo().GetRoles(), role)
}

// roledPools parses operation resources that must all carry a role.
func (r *acceptRun) roledPools(what string, rs []*agorav1.Resource) (resourcepb.Pools, *Rejection) {
	p, err := resourcepb.FromProto(rs)
	if err != nil {
		return nil, reject(CodeInvalidArgument, "%s: %v", what, err)
	}
	if p.IsEmpty() {
		return nil, reject(CodeInvalidArgument, "%s names no resources", what)
	}
	if !p[""].IsEmpty() {
		return nil, reject(CodeInvalidArgument, "%s: every resource must name a role", what)
	}
	for _, role := range p.Roles() {
		if !r.hasRole(role) {
			if what == "reserve" {
				return nil, reject(CodePermissionDenied, "cannot reserve for role %s: not a role of this framework", role)
			}
			return nil, reject(CodePermissionDenied, "cannot %s resources of role %s: not a role of this framework", what, role)
		}
	}
	return p, nil
}

// reserve moves unreserved offered resources into reservations of the
// framework's roles (one reservation per role).
func (r *acceptRun) reserve(op *agorav1.Operation) *Rejection {
	p, rej := r.roledPools("reserve", op.GetResources())
	if rej != nil {
		return rej
	}
	need := p.Total()
	left, err := r.pool[""].Subtract(need)
	if err != nil {
		return reject(CodeFailedPrecondition, "reserve needs %s but offers have %s unreserved", need, orNothing(r.pool[""]))
	}
	r.pool[""] = left
	for _, role := range p.Roles() {
		r.pool[role] = r.pool[role].Add(p[role])
		r.x.putReservation(nil, &agorav1.Reservation{
			Id:        r.id("reservation"),
			AgentId:   r.agentID,
			Role:      role,
			Resources: resourcepb.ToProto(role, p[role]),
			Principal: r.f.GetInfo().GetPrincipal(),
			Labels:    op.GetLabels(),
		})
	}
	return nil
}

// unreserve returns reserved offered resources of the framework's roles
// to the unreserved pool, shrinking or deleting the reservations.
func (r *acceptRun) unreserve(op *agorav1.Operation) *Rejection {
	p, rej := r.roledPools("unreserve", op.GetResources())
	if rej != nil {
		return rej
	}
	for _, role := range p.Roles() {
		want := p[role]
		if !r.pool[role].Contains(want) {
			return reject(CodeFailedPrecondition, "unreserve needs %s of role %s but offers have %s", want, role, orNothing(r.pool[role]))
		}
		var held []*agorav1.Reservation
		var sum resourcepb.Pools = resourcepb.Pools{}
		for _, rv := range r.x.reservationsOnAgent(r.agentID) {
			if rv.GetRole() == role {
				held = append(held, rv)
				sum = sum.Add(pools(rv.GetResources()))
			}
		}
		if !sum[role].Contains(want) {
			return reject(CodeNotFound, "no reservation of role %s on agent %s holds %s", role, r.agentID, want)
		}
		remaining := want
		for _, rv := range held {
			have := pools(rv.GetResources())[role]
			take := resourcepb.Intersect(have, remaining)
			if take.IsEmpty() {
				continue
			}
			remaining = resourcepb.SubtractClamped(remaining, take)
			if rest := resourcepb.SubtractClamped(have, take); rest.IsEmpty() {
				r.x.deleteReservation(rv)
			} else {
				n := clone(rv)
				n.Resources = resourcepb.ToProto(role, rest)
				r.x.putReservation(rv, n)
			}
			if remaining.IsEmpty() {
				break
			}
		}
		r.pool[role] = resourcepb.SubtractClamped(r.pool[role], want)
		r.pool[""] = r.pool[""].Add(want)
	}
	return nil
}

// create makes persistent volumes on offered disk reserved for a role of
// the framework.
func (r *acceptRun) create(op *agorav1.Operation) *Rejection {
	if len(op.GetVolumes()) == 0 {
		return reject(CodeInvalidArgument, "create names no volumes")
	}
	for _, vi := range op.GetVolumes() {
		if rej := checkID("volume", vi.GetId()); rej != nil {
			return rej
		}
		if _, ok := r.x.volume(vi.GetId()); ok {
			return reject(CodeAlreadyExists, "volume %s already exists", vi.GetId())
		}
		role := vi.GetRole()
		if role == "" {
			role = r.role
		}
		if !resources.ValidReservationRole(role) {
			return reject(CodeInvalidArgument, "volume %s needs a reservation role, not %q", vi.GetId(), role)
		}
		if !r.hasRole(role) {
			return reject(CodePermissionDenied, "create volume %s: framework %s may not use role %s", vi.GetId(), r.f.GetId(), role)
		}
		if s := vi.GetSizeMib(); math.IsNaN(s) || math.IsInf(s, 0) || s <= 0 || s > 1e12 {
			return reject(CodeInvalidArgument, "volume %s: size %g MiB must be positive", vi.GetId(), s)
		}
		if vi.GetContainerPath() == "" {
			return reject(CodeInvalidArgument, "volume %s has no container path", vi.GetId())
		}
		v := &agorav1.Volume{
			Id:            vi.GetId(),
			AgentId:       r.agentID,
			Role:          role,
			SizeMib:       vi.GetSizeMib(),
			ContainerPath: vi.GetContainerPath(),
			Principal:     r.f.GetInfo().GetPrincipal(),
			CreatedIndex:  r.x.index,
		}
		disk := volumeDisk(v)
		left, err := r.pool.Subtract(disk)
		if err != nil {
			return reject(CodeFailedPrecondition, "create volume %s needs %s reserved for %s but offers have %s", v.GetId(), disk[role], role, orNothing(r.pool[role]))
		}
		r.pool = left
		r.x.putVolume(v)
	}
	return nil
}

// destroy deletes unused volumes of the agent's framework roles; their disk
// returns to the offered pool.
func (r *acceptRun) destroy(op *agorav1.Operation) *Rejection {
	if len(op.GetVolumes()) == 0 {
		return reject(CodeInvalidArgument, "destroy names no volumes")
	}
	for _, vi := range op.GetVolumes() {
		v, ok := r.x.volume(vi.GetId())
		if !ok || v.GetAgentId() != r.agentID {
			return reject(CodeNotFound, "volume %s not found on agent %s", vi.GetId(), r.agentID)
		}
		if !r.hasRole(v.GetRole()) {
			return reject(CodePermissionDenied, "destroy volume %s: framework %s may not use role %s", v.GetId(), r.f.GetId(), v.GetRole())
		}
		if t := r.x.volumeUser(v); t != nil {
			return reject(CodeFailedPrecondition, "volume %s in use by task %s", v.GetId(), t.GetId())
		}
		r.x.deleteVolume(v)
		r.pool = r.pool.Add(volumeDisk(v))
	}
	return nil
}

// launch creates STAGING tasks from the offered resources; groupID is set
// for LAUNCH_GROUP.
func (r *acceptRun) launch(op *agorav1.Operation, groupID string) *Rejection {
	if len(op.GetTasks()) == 0 {
		return reject(CodeInvalidArgument, "%s has no tasks", op.GetType())
	}
	now := ts(r.c.GetNow())
	// The tasks are stored one by one and charged together once they all
	// passed (chargeLaunch): one usage write per agent and per role, not
	// one per task.
	var charge launchCharge
	// The pool is this launch's own copy, from which each task's scalars
	// are taken in place (subtractScalars) rather than by a copy of the
	// whole pool per task; and a task whose resources equal the previous
	// task's, as a launch's tasks usually do, reuses their parse.
	r.pool = r.pool.Clone()
	var memo launchMemo
	var run launchRun
	for _, ti := range op.GetTasks() {
		if ti == nil {
			return reject(CodeInvalidArgument, "task is null")
		}
		tid := ti.GetTaskId()
		if rej := checkID("task", tid); rej != nil {
			return rej
		}
		if r.tasks[tid] {
			return reject(CodeInvalidArgument, "task id %s given twice", tid)
		}
		if old, exists := r.x.task(r.f.GetId(), tid); exists {
			return reject(CodeAlreadyExists, "task %s already exists in framework %s (%s)", tid, r.f.GetId(), stateName(old.GetState()))
		}
		r.tasks[tid] = true
		if a := ti.GetAgentId(); a != "" && a != r.agentID {
			if _, known := r.x.agent(a); !known {
				return reject(CodeNotFound, "task %s: unknown agent %s", tid, a)
			}
			return reject(CodeInvalidArgument, "task %s names agent %s but the offers are on agent %s", tid, a, r.agentID)
		}
		if ti.GetCommand().GetValue() == "" {
			return reject(CodeInvalidArgument, "task %s has no command", tid)
		}
		if g := ti.GetKillGraceSeconds(); math.IsNaN(g) || math.IsInf(g, 0) || g < 0 {
			return reject(CodeInvalidArgument, "task %s: kill grace %g must be a finite number >= 0", tid, g)
		}
		p, err := memo.parse(ti.GetResources())
		if err != nil {
			return reject(CodeInvalidArgument, "task %s: %v", tid, err)
		}
		facts := memo.factsOf(p)
		if facts.empty {
			return reject(CodeInvalidArgument, "task %s has no resources", tid)
		}
		role := r.role
		if facts.reserved != "" {
			role = facts.reserved
		}
		if facts.nreserved > 1 {
			reserved := slices.DeleteFunc(p.Roles(), func(s string) bool { return s == "" })
			return reject(CodeInvalidArgument, "task %s uses resources reserved for more than one role (%v)", tid, reserved)
		}
		// A task asking for the remembered resources joins the run of
		// such tasks, whose pool arithmetic is done once for the run;
		// any other task ends the run first.
		inRun := memo.remembered() && run.join(r, &charge, p, memo.gen, role)
		if !inRun {
			run.flush(r, &charge)
			if !r.pool.Contains(p) {
				return reject(CodeFailedPrecondition, "not enough resources in the offers for task %s: wants %s, %s left", tid, p, orNothing(r.pool.Total()))
			}
		}
		revocable := r.revocable && facts.unreserved
		if revocable && !revocableCapable(r.f) {
			return reject(CodeFailedPrecondition, "task %s would use revocable resources but framework %s lacks CAPABILITY_REVOCABLE_RESOURCES", tid, r.f.GetId())
		}
		vids, rej := r.taskVolumes(tid, role, ti)
		if rej != nil {
			return rej
		}
		if !inRun {
			r.pool = takeFrom(r.pool, p, 1)
			charge.add(role, p, 1)
		}
		if r.x.judging && len(vids) == 0 {
			// Judge's dry run stores no task without volumes: no later
			// check of this accept reads it (a task id given twice is
			// caught by r.tasks first; only volumeUser reads the tasks
			// launched before, for tasks that name volumes), and the
			// stores were two thirds of the leader's judgement of a
			// launch. The harness compares Judge's verdict with Apply's
			// after every command of the scenario and fuzz tests.
			continue
		}
		cmd, res := memo.parts(p, ti.GetCommand())
		r.x.insertTask(&agorav1.Task{
			Id:               tid,
			FrameworkId:      r.f.GetId(),
			AgentId:          r.agentID,
			Name:             ti.GetName(),
			Role:             role,
			Resources:        res,
			Command:          cmd,
			VolumeIds:        vids,
			GroupId:          groupID,
			State:            agorav1.TaskState_TASK_STATE_STAGING,
			KillGraceSeconds: ti.GetKillGraceSeconds(),
			CreatedAt:        now,
			Revocable:        revocable,
		})
	}
	run.flush(r, &charge)
	if r.x.judging {
		// No check of this accept reads the task epoch or the usage
		// these write (checkAcceptLimits read the framework's before):
		// the dry run only notes the change.
		r.x.judgedChange = true
		return nil
	}
	r.x.bumpTaskEpoch(r.agentID)
	r.x.chargeLaunch(r.agentID, r.f.GetId(), &charge)
	return nil
}

// launchMemo remembers the last task resources a launch parsed: the tasks
// of one launch usually ask for the same resources, and parsing them
// (resourcepb.FromProto) and writing them back in canonical form
// (Pools.ToProto) were most of the cost of a launch. Only resources made of
// plain scalars (no ranges, sets, reservation or volume) are remembered;
// anything else is parsed every time.
type launchMemo struct {
	in    []*agorav1.Resource  // the last scalar-only input
	p     resourcepb.Pools     // its parse
	canon []*agorav1.Resource  // p.ToProto(), shared by the tasks of the run
	cmd   *agorav1.CommandInfo // the last task's command when it has only a value
	gen   int                  // bumped for each newly remembered parse
	facts poolFacts            // p's facts
}

// poolFacts are what launch asks of a task's resources, besides whether
// the offers hold them.
type poolFacts struct {
	empty      bool   // no resources at all
	reserved   string // the (last) role with resources reserved to it
	nreserved  int    // roles with resources reserved to them
	unreserved bool   // some resources are unreserved
}

func factsOf(p resourcepb.Pools) poolFacts {
	f := poolFacts{empty: p.IsEmpty(), unreserved: !p[""].IsEmpty()}
	for pool, res := range p { // p.Roles() without its sorted copy
		if pool != "" && !res.IsEmpty() {
			f.reserved, f.nreserved = pool, f.nreserved+1
		}
	}
	return f
}

// remembered reports whether the last parse returned the remembered one.
func (m *launchMemo) remembered() bool { return m.in != nil }

// factsOf returns p's facts, p being what the last parse returned: those
// of the remembered parse were computed when it was remembered.
func (m *launchMemo) factsOf(p resourcepb.Pools) poolFacts {
	if !m.remembered() {
		return factsOf(p)
	}
	return m.facts
}

// launchRun is a run of consecutive tasks of one launch asking for the
// same remembered (scalar-only) resources p: whether the offers hold one
// more of them is a count against how many copies of p the pool held when
// the run began (scalars are integers, so n copies fit exactly when n*p
// does), and the pool and the launch's charge are debited once for the
// whole run (flush), not once per task. At 100 tasks per launch these were
// half the cost of a launch, judged on the leader and applied on every
// master.
type launchRun struct {
	p    resourcepb.Pools
	gen  int    // the memo generation of p
	role string // the tasks' allocation role
	n    int64  // tasks in the run, not yet debited
	fit  int64  // copies of p the pool held when the run began
}

// join adds a task asking for p (the memo's remembered parse of
// generation gen) to the run, ending a run of other resources first. It
// reports false, adding nothing, when the pool cannot hold one more p.
func (u *launchRun) join(r *acceptRun, c *launchCharge, p resourcepb.Pools, gen int, role string) bool {
	if u.n > 0 && (u.gen != gen || u.role != role) {
		u.flush(r, c)
	}
	if u.n == 0 {
		u.p, u.gen, u.role, u.fit = p, gen, role, copiesIn(r.pool, p)
	}
	if u.n >= u.fit {
		return false
	}
	u.n++
	return true
}

// flush debits the run's tasks from the pool and charges them.
func (u *launchRun) flush(r *acceptRun, c *launchCharge) {
	if u.n == 0 {
		return
	}
	r.pool = takeFrom(r.pool, u.p, u.n)
	c.add(u.role, u.p, u.n)
	u.n = 0
}

// copiesIn returns how many copies of the scalar-only p pool holds: the
// largest n with pool.Contains(n*p).
func copiesIn(pool, p resourcepb.Pools) int64 {
	n := int64(math.MaxInt64)
	for role, r := range p {
		have := pool[role]
		for name, v := range r.Scalars {
			if v > 0 {
				n = min(n, have.Scalars[name]/v)
			}
		}
	}
	return n
}

// parse is resourcepb.FromProto(rs), reusing the last parse when rs equals
// the last scalar-only input field by field.
func (m *launchMemo) parse(rs []*agorav1.Resource) (resourcepb.Pools, error) {
	if m.in != nil && sameScalars(m.in, rs) {
		return m.p, nil
	}
	p, err := resourcepb.FromProto(rs)
	if err != nil {
		return nil, err
	}
	m.in, m.p, m.canon = nil, nil, nil
	if scalarsOnly(rs) {
		m.in, m.p, m.facts = rs, p, factsOf(p)
		m.gen++
	}
	return p, nil
}

// parts returns a new task's command, a copy of c, and its resources,
// p.ToProto() for the p the last parse returned. Tasks of one launch share
// what they can, as every version of one task already does (stored
// messages are never written again): the tasks of a remembered parse share
// one canonical resource list, and a task whose command is the previous
// task's (the same value, no environment) shares that command. At 1M
// tasks their own copies were 366 bytes per task, a sixth of a master's
// heap. TestLaunchMemo checks what each task holds and what they share.
func (m *launchMemo) parts(p resourcepb.Pools, c *agorav1.CommandInfo) (*agorav1.CommandInfo, []*agorav1.Resource) {
	cmd := m.command(c)
	if m.p == nil {
		return cmd, p.ToProto()
	}
	if m.canon == nil {
		m.canon = slices.Clip(p.ToProto())
	}
	return cmd, m.canon
}

// command returns a copy of c, the previous task's when c equals it and
// has nothing but a value.
func (m *launchMemo) command(c *agorav1.CommandInfo) *agorav1.CommandInfo {
	plain := len(c.GetEnvironment()) == 0 && len(c.ProtoReflect().GetUnknown()) == 0
	if plain && m.cmd != nil && m.cmd.GetValue() == c.GetValue() {
		return m.cmd
	}
	n := new(agorav1.CommandInfo)
	copyCommandTo(n, c)
	m.cmd = nil
	if plain {
		m.cmd = n
	}
	return n
}

// scalarsOnly reports whether every resource of rs is a plain scalar: no
// ranges, set, reservation or volume.
func scalarsOnly(rs []*agorav1.Resource) bool {
	for _, r := range rs {
		if r == nil || len(r.GetRanges()) > 0 || len(r.GetSet()) > 0 || r.GetReservation() != nil || r.GetVolume() != nil {
			return false
		}
	}
	return true
}

// sameScalars reports whether b is scalar-only and equal to the
// scalar-only a, resource by resource, in the fields resourcepb.FromProto
// reads (a NaN is never equal: such input is parsed, and refused, anew).
func sameScalars(a, b []*agorav1.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i, r := range b {
		if r == nil || len(r.GetRanges()) > 0 || len(r.GetSet()) > 0 || r.GetReservation() != nil || r.GetVolume() != nil ||
			r.GetName() != a[i].GetName() || r.GetScalar() != a[i].GetScalar() || r.GetRole() != a[i].GetRole() {
			return false
		}
	}
	return true
}

// takeFrom returns pool - n*p, pool being the launch's own copy: the
// scalars of a scalar-only p are taken in place (as Pools.Subtract would,
// entries and roles that reach zero are removed); anything else (n is 1
// then) goes through Pools.Subtract. The caller checked that pool
// contains n*p.
func takeFrom(pool, p resourcepb.Pools, n int64) resourcepb.Pools {
	for _, r := range p {
		if len(r.Ranges) > 0 || len(r.Sets) > 0 {
			if n != 1 {
				panic(fmt.Sprintf("fsm: launch: %d copies of %s, which has ranges or sets", n, p))
			}
			left, err := pool.Subtract(p)
			if err != nil {
				panic(fmt.Sprintf("fsm: launch: pool %s does not contain %s: %v", pool, p, err))
			}
			return left
		}
	}
	for role, r := range p {
		have := pool[role]
		for name, v := range r.Scalars {
			if v <= 0 {
				continue
			}
			if left := have.Scalars[name] - n*v; left > 0 {
				have.Scalars[name] = left
			} else {
				delete(have.Scalars, name)
			}
		}
		if have.IsEmpty() {
			delete(pool, role)
		}
	}
	return pool
}

// copyCommand copies a task's command (proto.Clone, without reflection).
// TestCopyCommandCopiesEveryField keeps it complete.
func copyCommand(c *agorav1.CommandInfo) *agorav1.CommandInfo {
	if c == nil {
		return nil
	}
	n := new(agorav1.CommandInfo)
	copyCommandTo(n, c)
	return n
}

// copyCommandTo copies c into the empty n (see copyCommand).
func copyCommandTo(n, c *agorav1.CommandInfo) {
	n.Value = c.GetValue()
	if env := c.GetEnvironment(); env != nil {
		n.Environment = make(map[string]string, len(env))
		for k, v := range env {
			n.Environment[k] = v
		}
	}
	if u := c.ProtoReflect().GetUnknown(); len(u) > 0 {
		n.ProtoReflect().SetUnknown(slices.Clone(u))
	}
}

// launchCharge sums the resources of the tasks of one launch operation (all
// on one agent, of one framework), per allocation role in first-seen order.
// The sums are built in place (scalars, the common case, without a copy
// per task); ranges and sets are added as resources.Add does.
type launchCharge struct {
	used  resourcepb.Pools
	roles []string
	total []map[string]int64 // scalars per allocation role
	count []int
}

// add charges n tasks asking for p each, of allocation role role (n is 1
// for resources with ranges or sets).
func (c *launchCharge) add(role string, p resourcepb.Pools, n int64) {
	if c.used == nil {
		c.used = resourcepb.Pools{}
	}
	i := slices.Index(c.roles, role)
	if i < 0 {
		c.roles = append(c.roles, role)
		c.total = append(c.total, map[string]int64{})
		c.count = append(c.count, 0)
		i = len(c.roles) - 1
	}
	c.count[i] += int(n)
	for pool, r := range p {
		acc, ok := c.used[pool]
		switch {
		case len(r.Ranges) > 0 || len(r.Sets) > 0:
			if n != 1 {
				panic(fmt.Sprintf("fsm: launch: %d copies of %s, which has ranges or sets", n, p))
			}
			acc = acc.Add(r) // a fresh copy
		case !ok:
			acc = resources.Resources{Scalars: make(map[string]int64, len(r.Scalars))}
			fallthrough
		default:
			if acc.Scalars == nil {
				acc.Scalars = make(map[string]int64, len(r.Scalars))
			}
			addScalars(acc.Scalars, r.Scalars, n)
		}
		c.used[pool] = acc
		addScalars(c.total[i], r.Scalars, n)
	}
}

// addScalars adds n times the positive scalars of o to acc (saturating, as
// n calls of resources.Resources.Add would).
func addScalars(acc, o map[string]int64, n int64) {
	for name, v := range o {
		if v <= 0 {
			continue
		}
		if v > math.MaxInt64/n {
			v = math.MaxInt64
		} else {
			v *= n
		}
		if s := acc[name]; s > math.MaxInt64-v {
			acc[name] = math.MaxInt64
		} else {
			acc[name] = s + v
		}
	}
}

// chargeLaunch charges the summed tasks of one launch to the agent and the
// framework, as chargeTask would one task at a time.
func (x *txn) chargeLaunch(agentID, fid string, c *launchCharge) {
	if len(c.roles) == 0 {
		return
	}
	x.adjustAgentUsage(agentID, func(u *agentUsage) { u.used = u.used.Add(c.used) })
	for i, role := range c.roles {
		x.adjustFrameworkUsage(fid, role, resources.Resources{Scalars: c.total[i]}, resources.Resources{}, c.count[i])
	}
}

// taskVolumes checks the persistent volumes a task is launched with (its
// volume_ids, and volume resources copied from an offer) and returns their
// ids. A volume must exist on the offers' agent, belong to a role of the
// framework and to the task's role, and no live task may use it (tasks
// launched earlier in this accept included): a volume is never used by two
// running tasks at once.
func (r *acceptRun) taskVolumes(tid, role string, ti *agorav1.TaskInfo) ([]string, *Rejection) {
	vids := slices.Clone(ti.GetVolumeIds())
	for _, res := range resourcepb.IdleVolumes(ti.GetResources()) {
		if !slices.Contains(vids, res.GetVolume().GetId()) {
			vids = append(vids, res.GetVolume().GetId())
		}
	}
	seen := map[string]bool{}
	for _, vid := range vids {
		if seen[vid] {
			return nil, reject(CodeInvalidArgument, "task %s names volume %s twice", tid, vid)
		}
		seen[vid] = true
		v, ok := r.x.volume(vid)
		if !ok {
			return nil, reject(CodeNotFound, "task %s: volume %s not found", tid, vid)
		}
		if !r.hasRole(v.GetRole()) {
			return nil, reject(CodePermissionDenied, "task %s: volume %s belongs to role %s", tid, vid, v.GetRole())
		}
		if v.GetAgentId() != r.agentID {
			return nil, reject(CodeInvalidArgument, "task %s: volume %s is on agent %s, not on the offers' agent %s", tid, vid, v.GetAgentId(), r.agentID)
		}
		if v.GetRole() != role {
			return nil, reject(CodeInvalidArgument, "task %s runs as role %s but volume %s belongs to role %s", tid, role, vid, v.GetRole())
		}
		if t := r.x.volumeUser(v); t != nil {
			return nil, reject(CodeFailedPrecondition, "task %s: volume %s in use by task %s/%s (%s)", tid, vid, t.GetFrameworkId(), t.GetId(), stateName(t.GetState()))
		}
	}
	return vids, nil
}

// volumeUser returns a live (non-terminal) task that uses v, or nil.
func (x *txn) volumeUser(v *agorav1.Volume) *agorav1.Task {
	for _, t := range x.tasksOnAgent(v.GetAgentId()) {
		if !IsTerminal(t.GetState()) && slices.Contains(t.GetVolumeIds(), v.GetId()) {
			return t
		}
	}
	return nil
}

// stateName names a task state without its prefix ("RUNNING").
func stateName(st agorav1.TaskState) string { return strings.TrimPrefix(st.String(), "TASK_STATE_") }

// orNothing prints r, or "nothing" when it is empty.
func orNothing(r interface {
	IsEmpty() bool
	String() string
}) string {
	if r.IsEmpty() {
		return "nothing"
	}
	return r.String()
}

// launchCount is the number of tasks the operations launch.
func launchCount(ops []*agorav1.Operation) int {
	n := 0
	for _, op := range ops {
		switch op.GetType() {
		case agorav1.OperationType_OPERATION_TYPE_LAUNCH, agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP:
			n += len(op.GetTasks())
		}
	}
	return n
}

// checkAcceptLimits judges an accept against the limits the leader stamped
// into it (a zero limit is none): operations per accept, launches per
// accept, and the framework's non-terminal tasks after the launches.
func (x *txn) checkAcceptLimits(fid string, c *agorav1.AcceptCommand) *Rejection {
	l := c.GetLimits()
	if l == nil {
		return nil
	}
	ops := c.GetOperations()
	if m := l.GetMaxOperations(); m > 0 && len(ops) > int(m) {
		return reject(CodeResourceExhausted, "limit exceeded: %d operations in one accept, the limit of operations per accept is %d", len(ops), m)
	}
	launches := launchCount(ops)
	if m := l.GetMaxLaunches(); m > 0 && launches > int(m) {
		return reject(CodeResourceExhausted, "limit exceeded: %d tasks launched by one accept, the limit of launches per accept is %d", launches, m)
	}
	if m := l.GetMaxFrameworkTasks(); m > 0 && launches > 0 {
		live := 0
		if u, ok := tget[*frameworkUsage](x, x.lookupKey(uFramework, fid)); ok {
			live = u.tasks
		}
		if live+launches > int(m) {
			return reject(CodeResourceExhausted, "limit exceeded: framework %s has %d non-terminal tasks and launches %d more, the limit of tasks per framework is %d", fid, live, launches, m)
		}
	}
	return nil
}
