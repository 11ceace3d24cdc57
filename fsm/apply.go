package fsm

import (
	"math"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// maxFailoverTimeout caps a framework's failover timeout (one year).
const maxFailoverTimeout = 365 * 24 * 3600

// maxIDLen bounds every id the state stores.
const maxIDLen = 256

// --- helpers ---

func checkID(what, id string) *Rejection {
	switch {
	case id == "":
		return reject(CodeInvalidArgument, "%s id is empty", what)
	case len(id) > maxIDLen:
		return reject(CodeInvalidArgument, "%s id is longer than %d bytes", what, maxIDLen)
	case strings.IndexByte(id, 0) >= 0:
		return reject(CodeInvalidArgument, "%s id %q contains a NUL byte", what, id)
	}
	return nil
}

// cmpTS compares timestamps; nil is the Unix epoch.
func cmpTS(a, b *timestamppb.Timestamp) int {
	if c := cmpInt(a.GetSeconds(), b.GetSeconds()); c != 0 {
		return c
	}
	return cmpInt(int64(a.GetNanos()), int64(b.GetNanos()))
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ts(t *timestamppb.Timestamp) *timestamppb.Timestamp {
	if t == nil {
		return &timestamppb.Timestamp{}
	}
	return clone(t)
}

func addSeconds(t *timestamppb.Timestamp, secs float64) *timestamppb.Timestamp {
	whole, frac := math.Modf(secs)
	s, n := t.GetSeconds()+int64(whole), int64(t.GetNanos())+int64(frac*1e9)
	if n >= 1e9 {
		s, n = s+1, n-1e9
	}
	return &timestamppb.Timestamp{Seconds: s, Nanos: int32(n)}
}

func partitionAware(f *agorav1.Framework) bool {
	return slices.Contains(f.GetInfo().GetCapabilities(), agorav1.Capability_CAPABILITY_PARTITION_AWARE)
}

func validTaskState(st agorav1.TaskState) bool {
	_, ok := agorav1.TaskState_name[int32(st)]
	return ok && st != agorav1.TaskState_TASK_STATE_UNSPECIFIED
}

// taskOf finds a framework's task; when it is absent but another framework
// has a task with that id the answer is PermissionDenied.
func (x *txn) taskOf(fid, tid string) (*agorav1.Task, *Rejection) {
	if t, ok := x.task(fid, tid); ok {
		return t, nil
	}
	other := false
	x.t.Root().WalkPrefix(tableKey(xTaskID, tid, ""), func([]byte, interface{}) bool {
		other = true
		return true
	})
	if other {
		return nil, reject(CodePermissionDenied, "task %s belongs to another framework, not %s", tid, fid)
	}
	return nil, reject(CodeNotFound, "unknown task %s of framework %s", tid, fid)
}

// setStatus records status as t's latest and emits EventTaskStatus. A
// terminal task of a torn-down framework is removed at once: nobody is left
// to acknowledge it.
func (x *txn) setStatus(t *agorav1.Task, st *agorav1.TaskStatus) {
	if u := t.GetStatus().GetUuid(); u != "" && u != st.GetUuid() {
		x.supersede(t)
	}
	n := copyTask(t)
	n.State = st.GetState()
	n.Status = st
	n.Acknowledged = st.GetUuid() == ""
	x.emit(Event{Kind: EventTaskStatus, FrameworkID: t.GetFrameworkId(), Status: st})
	if IsTerminal(n.GetState()) {
		defer x.preemptionFreed(n, st.GetTimestamp())
		if f, ok := x.framework(t.GetFrameworkId()); ok && f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			x.deleteTask(t)
			return
		}
	}
	x.putTask(t, n)
}

// copyTask returns a new version of a stored task for a change of its
// top-level fields (state, status, acknowledgement): a shallow copy that
// shares the sub-messages (resources, command, status, times) with t.
// Stored messages are never modified in place (every change stores a new
// version), so the versions may share them; a deep copy (clone) of every
// task at every status update and acknowledgement was a large part of
// applying those batches. TestCopyTaskCopiesEveryField keeps it complete.
func copyTask(t *agorav1.Task) *agorav1.Task {
	n := &agorav1.Task{
		Id:               t.GetId(),
		FrameworkId:      t.GetFrameworkId(),
		AgentId:          t.GetAgentId(),
		Name:             t.GetName(),
		Role:             t.GetRole(),
		Resources:        t.GetResources(),
		Command:          t.GetCommand(),
		VolumeIds:        t.GetVolumeIds(),
		GroupId:          t.GetGroupId(),
		State:            t.GetState(),
		Status:           t.GetStatus(),
		Acknowledged:     t.GetAcknowledged(),
		KillRequested:    t.GetKillRequested(),
		KillGraceSeconds: t.GetKillGraceSeconds(),
		CreatedAt:        t.GetCreatedAt(),
		Revocable:        t.GetRevocable(),
		KillReason:       t.GetKillReason(),
	}
	if u := t.ProtoReflect().GetUnknown(); len(u) > 0 {
		n.ProtoReflect().SetUnknown(u)
	}
	return n
}

// copyStatus returns a shallow copy of an agent's status update (its one
// sub-message, the timestamp, is replaced by the caller) without the
// reflection of a deep clone. TestCopyStatusCopiesEveryField keeps it
// complete.
func copyStatus(st *agorav1.TaskStatus) *agorav1.TaskStatus {
	n := &agorav1.TaskStatus{
		TaskId:      st.GetTaskId(),
		FrameworkId: st.GetFrameworkId(),
		AgentId:     st.GetAgentId(),
		State:       st.GetState(),
		Uuid:        st.GetUuid(),
		Reason:      st.GetReason(),
		Message:     st.GetMessage(),
		Source:      st.GetSource(),
		Timestamp:   st.GetTimestamp(),
		ExitCode:    st.GetExitCode(),
		Healthy:     st.GetHealthy(),
	}
	if u := st.ProtoReflect().GetUnknown(); len(u) > 0 {
		n.ProtoReflect().SetUnknown(u)
	}
	return n
}

// masterStatus builds a status the master generates for t.
func (x *txn) masterStatus(t *agorav1.Task, st agorav1.TaskState, reason, msg string, now *timestamppb.Timestamp) *agorav1.TaskStatus {
	return &agorav1.TaskStatus{
		TaskId:      t.GetId(),
		FrameworkId: t.GetFrameworkId(),
		AgentId:     t.GetAgentId(),
		State:       st,
		Uuid:        x.statusUUID(t.GetFrameworkId(), t.GetId()),
		Reason:      reason,
		Message:     msg,
		Source:      agorav1.StatusSource_STATUS_SOURCE_MASTER,
		Timestamp:   ts(now),
	}
}

// --- roles and masters ---

// setRole creates or replaces a role (weight, quota, max utilization)
// after ValidateRole.
func (x *txn) setRole(c *agorav1.SetRoleCommand) *Rejection {
	if rej := ValidateRole(c.GetRole()); rej != nil {
		return rej
	}
	x.t.Insert(tableKey(pRole, c.GetRole().GetName()), clone(c.GetRole()))
	return nil
}

// deleteRole removes a role's configuration.
func (x *txn) deleteRole(c *agorav1.DeleteRoleCommand) *Rejection {
	if !validRole(c.GetName()) {
		return reject(CodeInvalidArgument, "invalid role name %q: want [a-z][a-z0-9_.-]{0,63} or \"*\"", c.GetName())
	}
	if _, ok := x.t.Delete(tableKey(pRole, c.GetName())); !ok {
		return reject(CodeNotFound, "role %q does not exist", c.GetName())
	}
	return nil
}

// upsertMaster records a master's addresses.
func (x *txn) upsertMaster(c *agorav1.UpsertMasterCommand) *Rejection {
	m := c.GetMaster()
	if rej := checkID("master", m.GetId()); rej != nil {
		return rej
	}
	x.t.Insert(tableKey(pMaster, m.GetId()), clone(m))
	return nil
}

// removeMaster forgets a master's record.
func (x *txn) removeMaster(c *agorav1.RemoveMasterCommand) *Rejection {
	if _, ok := x.t.Delete(tableKey(pMaster, c.GetId())); !ok {
		return reject(CodeNotFound, "master %q not found", c.GetId())
	}
	return nil
}

// --- agents ---

// registerAgent registers an agent, or re-registers it (its offers are
// rescinded and the tasks it reports are reconciled).
func (x *txn) registerAgent(c *agorav1.RegisterAgentCommand) *Rejection {
	in := c.GetAgent()
	if in == nil {
		return reject(CodeInvalidArgument, "agent is missing")
	}
	id := in.GetId()
	p, rej := validateAgent(in, c.GetTasks())
	if rej != nil {
		return rej
	}
	now := ts(c.GetNow())
	old, exists := x.agent(id)
	a := clone(in)
	a.Resources = p.ToProto()
	a.State = agorav1.AgentState_AGENT_STATE_ACTIVE
	a.Drain = nil // the masters' record, never the agent's to say
	if !exists {
		a.RegisteredAt, a.StateSince = now, now
		x.putAgent(a)
		return nil
	}
	switch old.GetState() {
	case agorav1.AgentState_AGENT_STATE_GONE:
		return reject(CodeFailedPrecondition, "agent %s was marked gone and may not re-register; start it with a new id", id)
	case agorav1.AgentState_AGENT_STATE_ACTIVE, agorav1.AgentState_AGENT_STATE_DRAINING, agorav1.AgentState_AGENT_STATE_DRAINED:
		if old.GetAddress() != in.GetAddress() || old.GetGossipAddress() != in.GetGossipAddress() {
			return reject(CodeAlreadyExists,
				"agent %s is already registered and active from %s (gossip %s); a second agent with this id from %s (gossip %s) is refused",
				id, orNone(old.GetAddress()), orNone(old.GetGossipAddress()), orNone(in.GetAddress()), orNone(in.GetGossipAddress()))
		}
	}
	a.RegisteredAt = ts(old.GetRegisteredAt())
	a.StateSince = ts(old.GetStateSince())
	a.Drain = old.GetDrain()
	if a.Drain != nil {
		// Drained before it went away: it comes back drained. DRAINING
		// until the reconciliation below settles it.
		a.State = agorav1.AgentState_AGENT_STATE_DRAINING
	}
	if old.GetState() != a.GetState() {
		a.StateSince = now
	}
	for _, o := range x.offersOnAgent(id) {
		x.removeOffer(o, "rescinded: agent re-registered", true)
	}
	x.putAgent(a)
	x.reconcileAgent(id, c.GetTasks(), now)
	if a.Drain != nil {
		if cur, _ := x.agent(id); cur.GetState() != x.drainState(id) {
			n := clone(cur)
			n.State = x.drainState(id)
			if old.GetState() != n.GetState() {
				n.StateSince = now
			} else {
				n.StateSince = ts(old.GetStateSince())
			}
			x.putAgent(n)
		}
	}
	u := x.usage(id)
	av := u.available()
	if !u.total.Contains(u.reserved.Total()) {
		return reject(CodeFailedPrecondition, "agent %s re-registered with %s, less than its reservations %s", id, u.total, u.reserved)
	}
	for _, role := range u.used.Roles() {
		if !av[role].Contains(u.used[role]) {
			return reject(CodeFailedPrecondition, "agent %s re-registered with %s, less than its tasks and volumes use (%s)", id, u.total, u.used)
		}
	}
	return nil
}

// Limits of an agent registration.
const (
	maxAgentStringBytes = 1024
	maxAgentAttributes  = 64
	maxAttributeKey     = 64
	maxAttributeBytes   = 256
)

var agentIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// ValidAgentID reports whether id is an agent id: ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$.
func ValidAgentID(id string) bool { return agentIDRE.MatchString(id) }

// validateAgent checks a registration and returns the agent's resources.
func validateAgent(in *agorav1.Agent, reported []*agorav1.TaskStatus) (resourcepb.Pools, *Rejection) {
	id := in.GetId()
	if !ValidAgentID(id) {
		return nil, reject(CodeInvalidArgument, "invalid agent id %q: want ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$", id)
	}
	if in.GetHostname() == "" {
		return nil, reject(CodeInvalidArgument, "agent %s: hostname is empty", id)
	}
	for _, f := range []struct{ name, v string }{{"address", in.GetAddress()}, {"gossip address", in.GetGossipAddress()},
		{"hostname", in.GetHostname()}, {"version", in.GetVersion()}} {
		if len(f.v) > maxAgentStringBytes {
			return nil, reject(CodeInvalidArgument, "agent %s: %s longer than %d bytes", id, f.name, maxAgentStringBytes)
		}
	}
	p, err := resourcepb.FromProto(in.GetResources())
	if err != nil {
		return nil, reject(CodeInvalidArgument, "agent %s: resources: %v", id, err)
	}
	if roles := p.Roles(); len(roles) > 0 && roles[len(roles)-1] != "" {
		return nil, reject(CodeInvalidArgument, "agent %s: resources must be unreserved, got resources reserved for role %q", id, roles[len(roles)-1])
	}
	if p.IsEmpty() {
		return nil, reject(CodeInvalidArgument, "agent %s offers no resources", id)
	}
	if len(in.GetAttributes()) > maxAgentAttributes {
		return nil, reject(CodeInvalidArgument, "agent %s: %d attributes, at most %d allowed", id, len(in.GetAttributes()), maxAgentAttributes)
	}
	keys := make([]string, 0, len(in.GetAttributes()))
	for k := range in.GetAttributes() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || len(k) > maxAttributeKey || len(in.GetAttributes()[k]) > maxAttributeBytes {
			return nil, reject(CodeInvalidArgument, "agent %s: bad attribute %q: keys 1-%d bytes, values at most %d bytes", id, k, maxAttributeKey, maxAttributeBytes)
		}
	}
	for _, t := range reported {
		switch {
		case t.GetTaskId() == "" || t.GetFrameworkId() == "":
			return nil, reject(CodeInvalidArgument, "agent %s: a reported task lacks its task or framework id", id)
		case t.GetAgentId() != "" && t.GetAgentId() != id:
			return nil, reject(CodeInvalidArgument, "agent %s: reported task %s names agent %s", id, t.GetTaskId(), t.GetAgentId())
		case !validTaskState(t.GetState()):
			return nil, reject(CodeInvalidArgument, "agent %s: reported task %s has invalid state %d", id, t.GetTaskId(), t.GetState())
		}
	}
	return p, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// reconcileAgent applies what a (re-)registering agent reports about its tasks.
func (x *txn) reconcileAgent(agentID string, reported []*agorav1.TaskStatus, now *timestamppb.Timestamp) {
	tasks := x.tasksOnAgent(agentID)
	type fk struct{ fid, tid string }
	byKey := make(map[fk]*agorav1.Task, len(tasks))
	byID := make(map[string]*agorav1.Task, len(tasks))
	for _, t := range tasks {
		byKey[fk{t.GetFrameworkId(), t.GetId()}] = t
		if _, dup := byID[t.GetId()]; !dup {
			byID[t.GetId()] = t
		}
	}
	seen := map[fk]bool{}
	for _, st := range reported {
		var t *agorav1.Task
		if st.GetFrameworkId() != "" {
			t = byKey[fk{st.GetFrameworkId(), st.GetTaskId()}]
		} else {
			t = byID[st.GetTaskId()]
		}
		if t == nil || !validTaskState(st.GetState()) {
			continue
		}
		k := fk{t.GetFrameworkId(), t.GetId()}
		seen[k] = true
		cur, _ := x.task(k.fid, k.tid)
		if cur == nil {
			continue
		}
		if IsTerminal(cur.GetState()) {
			if !IsTerminal(st.GetState()) && !cur.GetKillRequested() {
				n := clone(cur)
				n.KillRequested = true
				x.putTask(cur, n)
			}
			continue
		}
		if st.GetUuid() != "" && st.GetUuid() == cur.GetStatus().GetUuid() {
			continue
		}
		if st.GetState() == cur.GetState() && st.GetUuid() == "" {
			continue
		}
		s := clone(st)
		s.FrameworkId, s.AgentId, s.TaskId = k.fid, agentID, k.tid
		if s.Uuid == "" {
			s.Uuid = x.statusUUID(k.fid, k.tid)
		}
		if s.Source == agorav1.StatusSource_STATUS_SOURCE_UNSPECIFIED {
			s.Source = agorav1.StatusSource_STATUS_SOURCE_AGENT
		}
		s.Timestamp = now
		x.setStatus(cur, s)
	}
	for _, t := range tasks {
		k := fk{t.GetFrameworkId(), t.GetId()}
		if seen[k] {
			continue
		}
		cur, ok := x.task(k.fid, k.tid)
		if !ok {
			continue
		}
		switch cur.GetState() {
		case agorav1.TaskState_TASK_STATE_STARTING, agorav1.TaskState_TASK_STATE_RUNNING,
			agorav1.TaskState_TASK_STATE_KILLING, agorav1.TaskState_TASK_STATE_UNREACHABLE:
			x.setStatus(cur, x.masterStatus(cur, agorav1.TaskState_TASK_STATE_LOST,
				"agent re-registered", "task not found on agent after re-registration", now))
		}
	}
}

// agentLost moves an agent to state (UNREACHABLE or GONE): its offers are
// rescinded and its live tasks get a master status, partitionAware for
// partition-aware frameworks and LOST for the others. A GONE agent's
// reservations and volumes are deleted with it: its id may never register
// again, so no offer could carry them back to their frameworks, nor could
// a framework ever release them.
func (x *txn) agentLost(a *agorav1.Agent, state agorav1.AgentState, partitionState agorav1.TaskState, why string, now *timestamppb.Timestamp) {
	n := clone(a)
	n.State, n.StateSince = state, now
	x.putAgent(n)
	affected := map[string]bool{}
	for _, o := range x.offersOnAgent(a.GetId()) {
		affected[o.GetFrameworkId()] = true
		x.removeOffer(o, "rescinded: "+why, true)
	}
	for _, t := range x.tasksOnAgent(a.GetId()) {
		if IsTerminal(t.GetState()) || t.GetState() == partitionState {
			continue
		}
		f, _ := x.framework(t.GetFrameworkId())
		st := agorav1.TaskState_TASK_STATE_LOST
		if partitionAware(f) {
			st = partitionState
		}
		affected[t.GetFrameworkId()] = true
		x.setStatus(t, x.masterStatus(t, st, why, "agent "+a.GetId()+" is "+why[len("agent "):], now))
	}
	if state == agorav1.AgentState_AGENT_STATE_GONE {
		// Every task there is terminal now, so no volume is in use.
		for _, v := range x.volumesOnAgent(a.GetId()) {
			x.deleteVolume(v)
		}
		for _, r := range x.reservationsOnAgent(a.GetId()) {
			x.deleteReservation(r)
		}
	}
	fids := make([]string, 0, len(affected))
	for fid := range affected {
		fids = append(fids, fid)
	}
	slices.Sort(fids)
	for _, fid := range fids {
		x.emit(Event{Kind: EventAgentLost, FrameworkID: fid, AgentID: a.GetId(), Reason: why})
	}
}

// agentUnreachable marks an agent unreachable: offers rescinded, live tasks
// UNREACHABLE (partition-aware frameworks) or LOST.
func (x *txn) agentUnreachable(c *agorav1.AgentUnreachableCommand) *Rejection {
	a, ok := x.agent(c.GetAgentId())
	if !ok {
		return reject(CodeNotFound, "agent %s not found", c.GetAgentId())
	}
	switch a.GetState() {
	case agorav1.AgentState_AGENT_STATE_UNREACHABLE:
		return nil
	case agorav1.AgentState_AGENT_STATE_GONE:
		return reject(CodeFailedPrecondition, "agent %s is gone", a.GetId())
	}
	x.uuids = c.GetStatusUuids()
	x.agentLost(a, agorav1.AgentState_AGENT_STATE_UNREACHABLE, agorav1.TaskState_TASK_STATE_UNREACHABLE, "agent unreachable", ts(c.GetNow()))
	return nil
}

// agentGone marks an agent gone for good: offers rescinded, live tasks GONE
// (partition-aware frameworks) or LOST, reservations and volumes deleted.
func (x *txn) agentGone(c *agorav1.AgentGoneCommand) *Rejection {
	a, ok := x.agent(c.GetAgentId())
	if !ok {
		return reject(CodeNotFound, "agent %s not found", c.GetAgentId())
	}
	if a.GetState() == agorav1.AgentState_AGENT_STATE_GONE {
		return nil
	}
	x.uuids = c.GetStatusUuids()
	x.agentLost(a, agorav1.AgentState_AGENT_STATE_GONE, agorav1.TaskState_TASK_STATE_GONE, "agent gone", ts(c.GetNow()))
	return nil
}

// --- task status ---

// agentReportable lists the states an agent may report; the others are the
// master's (UNREACHABLE, GONE, ...).
func agentReportable(st agorav1.TaskState) bool {
	switch st {
	case agorav1.TaskState_TASK_STATE_STAGING, agorav1.TaskState_TASK_STATE_STARTING,
		agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLING,
		agorav1.TaskState_TASK_STATE_FINISHED, agorav1.TaskState_TASK_STATE_FAILED,
		agorav1.TaskState_TASK_STATE_KILLED, agorav1.TaskState_TASK_STATE_ERROR,
		agorav1.TaskState_TASK_STATE_LOST, agorav1.TaskState_TASK_STATE_DROPPED:
		return true
	}
	return false
}

// statusUpdate records an active agent's status updates of its tasks, in
// order. An update already recorded (a resend: the latest or a superseded
// uuid) and an update of a task that already ended change nothing.
func (x *txn) statusUpdate(c *agorav1.StatusUpdateCommand) *Rejection {
	agentID := c.GetAgentId()
	if !ValidAgentID(agentID) {
		return reject(CodeInvalidArgument, "invalid agent id %q", agentID)
	}
	if len(c.GetStatuses()) == 0 {
		return reject(CodeInvalidArgument, "agent %s: no status updates given", agentID)
	}
	a, ok := x.agent(agentID)
	if !ok {
		return reject(CodeNotFound, "agent %s is not registered", agentID)
	}
	if s := a.GetState(); s != agorav1.AgentState_AGENT_STATE_ACTIVE && !isDrainState(s) {
		return reject(CodeFailedPrecondition, "agent %s is %s; it must register again before reporting status",
			agentID, strings.ToLower(strings.TrimPrefix(s.String(), "AGENT_STATE_")))
	}
	now := ts(c.GetNow())
	for _, st := range c.GetStatuses() {
		tid, fid := st.GetTaskId(), st.GetFrameworkId()
		if tid == "" {
			return reject(CodeInvalidArgument, "status update names no task")
		}
		if st.GetUuid() == "" {
			return reject(CodeInvalidArgument, "agent %s: status update of task %s has no uuid", agentID, tid)
		}
		if !agentReportable(st.GetState()) {
			return reject(CodeInvalidArgument, "agent %s: status update of task %s has state %s, which agents may not report", agentID, tid, st.GetState())
		}
		if a := st.GetAgentId(); a != "" && a != agentID {
			return reject(CodePermissionDenied, "agent %s may not report status for agent %s", agentID, a)
		}
		var t *agorav1.Task
		if fid != "" {
			t, _ = x.task(fid, tid)
		} else {
			for _, k := range x.keys(xTaskID + tid + "\x00") {
				if cand, ok := x.task(lastPart(k), tid); ok && cand.GetAgentId() == agentID {
					t = cand
					break
				}
			}
		}
		if t == nil {
			if fid != "" {
				return reject(CodeNotFound, "task %s of framework %s is unknown", tid, fid)
			}
			return reject(CodeNotFound, "unknown task %s", tid)
		}
		if t.GetAgentId() != agentID {
			return reject(CodePermissionDenied, "task %s runs on agent %s, not on agent %s", tid, t.GetAgentId(), agentID)
		}
		// A task without a status has no superseded uuid (supersede records
		// the uuid of a status being replaced, and a task never loses its
		// status): the first update of a launched task, the common one,
		// needs no look-up of its history.
		if IsTerminal(t.GetState()) || st.GetUuid() == t.GetStatus().GetUuid() ||
			(t.GetStatus() != nil && x.wasSuperseded(t.GetFrameworkId(), tid, st.GetUuid())) {
			continue // a task that already ended, or a resend
		}
		if x.judging && !IsTerminal(st.GetState()) {
			// Judge asks only for the verdict and whether anything
			// changes: no check above reads what setStatus writes for a
			// live state (a later status of the same task in this call
			// can only turn from a change into a no-op, and this one
			// already changed something), so the copy and the writes are
			// skipped. A terminal status is written, judging too: it
			// removes the task of a torn-down framework, which a later
			// status of it in this call then finds unknown, as Apply does
			// (found by TestPropertyDeterminismAndRestore).
			x.judgedChange = true
			continue
		}
		s := copyStatus(st)
		s.FrameworkId, s.AgentId = t.GetFrameworkId(), agentID
		s.Source = agorav1.StatusSource_STATUS_SOURCE_AGENT
		s.Timestamp = now
		preemptedKilled(t, s)
		x.setStatus(t, s)
	}
	return nil
}

// killTask asks for a live task to be killed (KILLING); a task that ended
// or is being killed already is left alone.
func (x *txn) killTask(c *agorav1.KillTaskCommand) *Rejection {
	if _, ok := x.framework(c.GetFrameworkId()); !ok {
		return reject(CodeNotFound, "unknown framework %s", c.GetFrameworkId())
	}
	if rej := checkID("task", c.GetTaskId()); rej != nil {
		return rej
	}
	t, rej := x.taskOf(c.GetFrameworkId(), c.GetTaskId())
	if rej != nil {
		return rej
	}
	if IsTerminal(t.GetState()) || (t.GetKillRequested() && t.GetState() == agorav1.TaskState_TASK_STATE_KILLING) {
		return nil
	}
	n := clone(t)
	n.KillRequested = true
	n.State = agorav1.TaskState_TASK_STATE_KILLING
	x.putTask(t, n)
	return nil
}

// acknowledge records the framework's acknowledgement of a task's latest
// status; a terminal task is then removed. Acknowledging an update that a
// newer one superseded, or one already acknowledged, changes nothing.
func (x *txn) acknowledge(c *agorav1.AcknowledgeCommand) *Rejection {
	t, change, rej := x.ackVerdict(c)
	if rej != nil || !change {
		return rej
	}
	if IsTerminal(t.GetState()) {
		x.deleteTask(t)
		return nil
	}
	n := copyTask(t)
	n.Acknowledged = true
	x.putTask(t, n)
	return nil
}

// ackVerdict judges an acknowledgement without writing: the task it
// acknowledges and whether it changes anything (acknowledge applies it).
// Judge answers an Acknowledge from it alone, without the writes of a
// dry run: the leader judges every acknowledgement of a batch one by one.
func (x *txn) ackVerdict(c *agorav1.AcknowledgeCommand) (t *agorav1.Task, change bool, rej *Rejection) {
	if _, ok := x.framework(c.GetFrameworkId()); !ok {
		return nil, false, reject(CodeNotFound, "unknown framework %s", c.GetFrameworkId())
	}
	if c.GetUuid() == "" {
		return nil, false, reject(CodeInvalidArgument, "acknowledgement of task %s has no uuid", c.GetTaskId())
	}
	if rej := checkID("task", c.GetTaskId()); rej != nil {
		return nil, false, rej
	}
	t, rej = x.taskOf(c.GetFrameworkId(), c.GetTaskId())
	if rej != nil {
		return nil, false, rej
	}
	if t.GetStatus().GetUuid() != c.GetUuid() {
		if x.wasSuperseded(t.GetFrameworkId(), t.GetId(), c.GetUuid()) {
			return t, false, nil
		}
		return nil, false, reject(CodeNotFound, "unknown status update %s for task %s (its latest is %s)", c.GetUuid(), t.GetId(), orNone(t.GetStatus().GetUuid()))
	}
	return t, !t.GetAcknowledged(), nil
}

// --- frameworks ---

// maxNameLen bounds a framework's name and principal.
const maxNameLen = 256

// validateInfo checks a FrameworkInfo (roles may be empty: the default role).
func validateInfo(info *agorav1.FrameworkInfo) *Rejection {
	if info == nil {
		return reject(CodeInvalidArgument, "framework info is missing")
	}
	switch {
	case strings.TrimSpace(info.GetName()) == "":
		return reject(CodeInvalidArgument, "framework name is empty")
	case len(info.GetName()) > maxNameLen:
		return reject(CodeInvalidArgument, "framework name is longer than %d bytes", maxNameLen)
	case len(info.GetPrincipal()) > maxNameLen:
		return reject(CodeInvalidArgument, "principal is longer than %d bytes", maxNameLen)
	case len(info.GetWebuiUrl()) > 4*maxNameLen:
		return reject(CodeInvalidArgument, "webui_url is longer than %d bytes", 4*maxNameLen)
	}
	seen := map[string]bool{}
	for _, r := range info.GetRoles() {
		if !validRole(r) {
			return reject(CodeInvalidArgument, "invalid role name %q: want [a-z][a-z0-9_.-]{0,63} or \"*\"", r)
		}
		if seen[r] {
			return reject(CodeInvalidArgument, "role %s listed twice", r)
		}
		seen[r] = true
	}
	if ft := info.GetFailoverTimeoutSeconds(); math.IsNaN(ft) || ft < 0 || ft > maxFailoverTimeout {
		return reject(CodeInvalidArgument, "failover timeout %gs must be between 0 and one year", ft)
	}
	for _, cp := range info.GetCapabilities() {
		if _, ok := agorav1.Capability_name[int32(cp)]; !ok || cp == agorav1.Capability_CAPABILITY_UNSPECIFIED {
			return reject(CodeInvalidArgument, "unknown capability %d", int32(cp))
		}
	}
	return nil
}

// normalInfo returns a copy of info with id set and roles defaulted to "*".
func normalInfo(info *agorav1.FrameworkInfo, id string) *agorav1.FrameworkInfo {
	n := clone(info)
	n.Id = id
	if len(n.Roles) == 0 {
		n.Roles = []string{"*"}
	}
	return n
}

// dropForeignRoles removes offers and suppression for roles f no longer has.
func (x *txn) dropForeignRoles(f *agorav1.Framework) {
	roles := f.GetInfo().GetRoles()
	for _, o := range x.offersOfFramework(f.GetId()) {
		if !slices.Contains(roles, o.GetRole()) {
			x.removeOffer(o, "rescinded: role removed from framework", true)
		}
	}
	f.SuppressedRoles = slices.DeleteFunc(f.SuppressedRoles, func(r string) bool { return !slices.Contains(roles, r) })
	dropDemand(f, func(r string) bool { return slices.Contains(roles, r) })
}

// subscribeFramework registers a framework (CONNECTED, with the stream
// token) or re-registers it, replacing its info and token.
func (x *txn) subscribeFramework(c *agorav1.SubscribeFrameworkCommand) *Rejection {
	in := c.GetFramework()
	if in == nil {
		return reject(CodeInvalidArgument, "framework is missing")
	}
	id := in.GetId()
	if rej := checkID("framework", id); rej != nil {
		return rej
	}
	if rej := validateInfo(in.GetInfo()); rej != nil {
		return rej
	}
	info := normalInfo(in.GetInfo(), id)
	now := ts(c.GetNow())
	old, exists := x.framework(id)
	if !exists {
		if rej := x.checkPrincipalFrameworks(info.GetPrincipal(), c.GetMaxFrameworksPerPrincipal()); rej != nil {
			return rej
		}
		f := &agorav1.Framework{
			Id:           id,
			Info:         info,
			State:        agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED,
			RegisteredAt: now,
			StreamToken:  in.GetStreamToken(),
		}
		for _, r := range in.GetSuppressedRoles() {
			if !slices.Contains(info.Roles, r) {
				return reject(CodeInvalidArgument, "cannot suppress role %s: framework %s does not have it", r, id)
			}
		}
		f.SuppressedRoles = sortedUnique(in.GetSuppressedRoles())
		x.putFramework(f)
		return nil
	}
	if old.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
		return reject(CodeFailedPrecondition, "framework %s was torn down; subscribe without an id to register anew", id)
	}
	if old.GetInfo().GetPrincipal() != info.GetPrincipal() {
		return reject(CodePermissionDenied, "framework %s is registered with principal %q, not %q", id, old.GetInfo().GetPrincipal(), info.GetPrincipal())
	}
	f := clone(old)
	f.Info = info
	f.State = agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED
	f.StreamToken = in.GetStreamToken()
	f.DisconnectedAt = nil
	x.dropForeignRoles(f)
	x.putFramework(f)
	return nil
}

// checkPrincipalFrameworks judges the registration of one more framework
// under principal against the limit the leader stamped into the command
// (0 is none). Frameworks torn down do not count.
func (x *txn) checkPrincipalFrameworks(principal string, limit uint32) *Rejection {
	if limit == 0 {
		return nil
	}
	n := 0
	x.t.Root().WalkPrefix([]byte(pFramework), func(_ []byte, v interface{}) bool {
		f := v.(*agorav1.Framework)
		if f.GetInfo().GetPrincipal() == principal && f.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			n++
		}
		return false
	})
	if n >= int(limit) {
		return reject(CodeResourceExhausted, "limit exceeded: principal %q has %d frameworks, the limit of frameworks per principal is %d", principal, n, limit)
	}
	return nil
}

func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// frameworkDisconnected records that the framework's live stream ended:
// DISCONNECTED (its failover timeout runs), offers removed.
func (x *txn) frameworkDisconnected(c *agorav1.FrameworkDisconnectedCommand) *Rejection {
	old, ok := x.framework(c.GetFrameworkId())
	if !ok {
		return reject(CodeNotFound, "unknown framework %s", c.GetFrameworkId())
	}
	if old.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED || old.GetStreamToken() != c.GetStreamToken() {
		return nil // a replaced stream ended: the live one is unaffected
	}
	f := clone(old)
	f.State = agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED
	f.DisconnectedAt = ts(c.GetNow())
	x.putFramework(f)
	for _, o := range x.offersOfFramework(f.GetId()) {
		x.removeOffer(o, "framework disconnected", false)
	}
	return nil
}

// updateFramework replaces a framework's info (not its principal); offers
// and suppression of roles it no longer has go.
func (x *txn) updateFramework(c *agorav1.UpdateFrameworkCommand) *Rejection {
	id := c.GetInfo().GetId()
	old, ok := x.framework(id)
	if !ok {
		return reject(CodeNotFound, "unknown framework %q", id)
	}
	if rej := validateInfo(c.GetInfo()); rej != nil {
		return rej
	}
	if old.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
		return reject(CodeFailedPrecondition, "framework %s was torn down", id)
	}
	if p := c.GetInfo().GetPrincipal(); p != "" && p != old.GetInfo().GetPrincipal() {
		return reject(CodePermissionDenied, "framework %s is registered with principal %q, not %q", id, old.GetInfo().GetPrincipal(), p)
	}
	f := clone(old)
	info := normalInfo(c.GetInfo(), id)
	info.Principal = old.GetInfo().GetPrincipal()
	f.Info = info
	x.dropForeignRoles(f)
	x.putFramework(f)
	return nil
}

// teardownFramework ends a framework (see tearDown); tearing down a torn
// down framework changes nothing.
func (x *txn) teardownFramework(c *agorav1.TeardownFrameworkCommand) *Rejection {
	if rej := checkID("framework", c.GetFrameworkId()); rej != nil {
		return rej
	}
	f, ok := x.framework(c.GetFrameworkId())
	if !ok {
		return reject(CodeNotFound, "framework %q does not exist", c.GetFrameworkId())
	}
	if f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
		return nil
	}
	reason := c.GetReason()
	if reason == "" {
		reason = "framework torn down"
	}
	x.tearDown(f, reason)
	return nil
}

// tearDown marks f torn down: offers and filters go, live tasks are asked
// to die (KILLING), ended tasks are dropped since nobody will acknowledge them.
func (x *txn) tearDown(old *agorav1.Framework, reason string) {
	f := clone(old)
	f.State = agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN
	f.Filters = nil
	f.SuppressedRoles = nil
	f.StreamToken = ""
	f.Demand = nil
	x.putFramework(f)
	x.dropRecords(f.GetId())
	x.dropPreemptionsOf(f.GetId())
	for _, o := range x.offersOfFramework(f.GetId()) {
		x.removeOffer(o, "framework torn down", false)
	}
	for _, t := range x.tasksOfFramework(f.GetId()) {
		if IsTerminal(t.GetState()) {
			x.deleteTask(t)
			continue
		}
		if t.GetKillRequested() && t.GetState() == agorav1.TaskState_TASK_STATE_KILLING {
			continue
		}
		n := clone(t)
		n.KillRequested = true
		n.State = agorav1.TaskState_TASK_STATE_KILLING
		x.putTask(t, n)
	}
	x.emit(Event{Kind: EventFrameworkTornDown, FrameworkID: f.GetId(), Reason: reason})
}

// checkOwnRoles checks that roles are roles of f.
func checkOwnRoles(f *agorav1.Framework, roles []string) *Rejection {
	for _, r := range roles {
		if !validRole(r) {
			return reject(CodeInvalidArgument, "invalid role %q", r)
		}
		if !slices.Contains(f.GetInfo().GetRoles(), r) {
			return reject(CodePermissionDenied, "role %s is not a role of this framework", r)
		}
	}
	return nil
}

// revive removes the framework's offer filters and unsuppresses roles (all
// when none are named); nothing to remove changes nothing.
func (x *txn) revive(c *agorav1.ReviveCommand) *Rejection {
	f, rej := x.liveFramework(c.GetFrameworkId())
	if rej != nil {
		return rej
	}
	if rej := checkOwnRoles(f, c.GetRoles()); rej != nil {
		return rej
	}
	suppressed := len(c.GetRoles()) == 0 && len(f.GetSuppressedRoles()) > 0
	for _, r := range c.GetRoles() {
		suppressed = suppressed || slices.Contains(f.GetSuppressedRoles(), r)
	}
	if !suppressed && len(f.GetFilters()) == 0 {
		return nil
	}
	n := clone(f)
	n.Filters = nil
	if len(c.GetRoles()) == 0 {
		n.SuppressedRoles = nil
	} else {
		n.SuppressedRoles = slices.DeleteFunc(n.SuppressedRoles, func(r string) bool { return slices.Contains(c.GetRoles(), r) })
	}
	x.putFramework(n)
	return nil
}

// suppress stops offers to the framework for roles (all when none are
// named) until revive; suppressing suppressed roles changes nothing.
func (x *txn) suppress(c *agorav1.SuppressCommand) *Rejection {
	f, rej := x.liveFramework(c.GetFrameworkId())
	if rej != nil {
		return rej
	}
	if rej := checkOwnRoles(f, c.GetRoles()); rej != nil {
		return rej
	}
	roles := c.GetRoles()
	if len(roles) == 0 {
		roles = f.GetInfo().GetRoles()
	}
	demanded := slices.ContainsFunc(f.GetDemand(), func(d *agorav1.Demand) bool { return slices.Contains(roles, d.GetRole()) })
	if !demanded && !slices.ContainsFunc(roles, func(r string) bool { return !slices.Contains(f.GetSuppressedRoles(), r) }) {
		return nil
	}
	n := clone(f)
	n.SuppressedRoles = sortedUnique(append(n.SuppressedRoles, roles...))
	dropDemand(n, func(r string) bool { return !slices.Contains(roles, r) })
	x.putFramework(n)
	return nil
}

// liveFramework finds a framework that is not torn down.
func (x *txn) liveFramework(id string) (*agorav1.Framework, *Rejection) {
	f, ok := x.framework(id)
	if !ok {
		return nil, reject(CodeNotFound, "unknown framework %s", id)
	}
	if f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
		return nil, reject(CodeFailedPrecondition, "framework %s was torn down", id)
	}
	return f, nil
}

// addFilter stops offers of agentID to f until until (keeping the later one).
func (x *txn) addFilter(fid, agentID string, until *timestamppb.Timestamp) {
	x.addFilters(fid, []string{agentID}, until)
}

// --- offers ---

// offersCreated records one allocation round: each offer is re-checked
// against the state and dropped (not rejected) when stale.
func (x *txn) offersCreated(c *agorav1.OffersCreatedCommand) *Rejection {
	now := ts(c.GetNow())
	byFw := map[string][]*agorav1.Offer{}
	for _, in := range c.GetOffers() {
		o, why := x.checkOffer(in, now)
		if why != "" {
			continue
		}
		x.putOffer(o)
		x.ids = append(x.ids, o.GetId())
		byFw[o.GetFrameworkId()] = append(byFw[o.GetFrameworkId()], o)
	}
	fids := make([]string, 0, len(byFw))
	for fid := range byFw {
		fids = append(fids, fid)
	}
	slices.Sort(fids)
	for _, fid := range fids {
		x.emit(Event{Kind: EventOffersCreated, FrameworkID: fid, Offers: byFw[fid]})
	}
	return nil
}

// checkOffer re-checks one offer of an allocation round against the state
// (the offers of the round applied before it included) and returns the offer
// to store, or why it is dropped.
func (x *txn) checkOffer(in *agorav1.Offer, now *timestamppb.Timestamp) (*agorav1.Offer, string) {
	if in == nil || checkID("offer", in.GetId()) != nil {
		return nil, "bad offer id"
	}
	if _, dup := x.offer(in.GetId()); dup {
		return nil, "duplicate offer id"
	}
	f, ok := x.framework(in.GetFrameworkId())
	if !ok || f.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
		return nil, "framework not connected"
	}
	if !slices.Contains(f.GetInfo().GetRoles(), in.GetRole()) || slices.Contains(f.GetSuppressedRoles(), in.GetRole()) {
		return nil, "role not offerable"
	}
	if in.GetRevocable() && !revocableCapable(f) {
		return nil, "revocable offer to a framework without the capability"
	}
	if flt, ok := filterOf(f, in.GetAgentId()); ok && cmpTS(flt.GetUntil(), now) > 0 {
		return nil, "filtered"
	}
	a, ok := x.agent(in.GetAgentId())
	if !ok || a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		return nil, "agent not active"
	}
	p, err := resourcepb.FromProto(in.GetResources())
	if err != nil || p.IsEmpty() {
		return nil, "bad resources"
	}
	for _, r := range p.Roles() {
		if r != "" && r != in.GetRole() {
			return nil, "reserved for another role"
		}
	}
	if !x.usage(a.GetId()).free().Contains(p) {
		return nil, "not free"
	}
	if why := x.checkOfferedVolumes(in); why != "" {
		return nil, why
	}
	o := clone(in)
	if o.CreatedAt == nil {
		o.CreatedAt = now
	}
	if o.Hostname == "" {
		o.Hostname = a.GetHostname()
	}
	if len(o.Attributes) == 0 && len(a.GetAttributes()) > 0 {
		o.Attributes = a.GetAttributes()
	}
	return o, ""
}

// checkOfferedVolumes checks the idle volumes an offer lists: each must be
// a volume of the offer's agent and role, as stored, that no live task uses
// and no other outstanding offer lists.
func (x *txn) checkOfferedVolumes(in *agorav1.Offer) string {
	listed := resourcepb.IdleVolumes(in.GetResources())
	if len(listed) == 0 {
		return ""
	}
	elsewhere := map[string]bool{}
	for _, o := range x.offersOnAgent(in.GetAgentId()) {
		for _, r := range resourcepb.IdleVolumes(o.GetResources()) {
			elsewhere[r.GetVolume().GetId()] = true
		}
	}
	for _, r := range listed {
		id := r.GetVolume().GetId()
		v, ok := x.volume(id)
		switch {
		case !ok || v.GetAgentId() != in.GetAgentId():
			return "volume not on agent"
		case v.GetRole() != in.GetRole() || r.GetRole() != v.GetRole():
			return "volume of another role"
		case r.GetScalar() != v.GetSizeMib() || r.GetVolume().GetContainerPath() != v.GetContainerPath():
			return "volume differs from state"
		case elsewhere[id]:
			return "volume offered twice"
		case x.volumeUser(v) != nil:
			return "volume in use"
		}
		elsewhere[id] = true
	}
	return ""
}

// rescindOffers withdraws offers (the framework hears RESCIND); unknown
// ones are skipped.
func (x *txn) rescindOffers(c *agorav1.RescindOffersCommand) *Rejection {
	reason := "rescinded"
	if c.GetReason() != "" {
		reason = "rescinded: " + c.GetReason()
	}
	for _, id := range c.GetOfferIds() {
		if o, ok := x.offer(id); ok {
			x.removeOffer(o, reason, true)
			x.ids = append(x.ids, id)
		}
	}
	return nil
}

// ownOffers resolves offer ids for framework fid.
func (x *txn) ownOffers(fid string, ids []string) ([]*agorav1.Offer, *Rejection) {
	if len(ids) == 0 {
		return nil, reject(CodeInvalidArgument, "offer_ids is empty")
	}
	seen := map[string]bool{}
	out := make([]*agorav1.Offer, 0, len(ids))
	for _, id := range ids {
		if seen[id] {
			return nil, reject(CodeInvalidArgument, "offer %s given twice", id)
		}
		seen[id] = true
		o, ok := x.offer(id)
		if !ok {
			if why, gone := x.removedReason(id); gone {
				return nil, reject(CodeFailedPrecondition, "offer %s is no longer valid (%s)", id, why)
			}
			return nil, reject(CodeNotFound, "unknown offer %s", id)
		}
		if o.GetFrameworkId() != fid {
			return nil, reject(CodePermissionDenied, "offer %s belongs to another framework", id)
		}
		out = append(out, o)
	}
	return out, nil
}

// decline returns offers and filters their agents for the framework until
// refuse_until.
func (x *txn) decline(c *agorav1.DeclineCommand) *Rejection {
	if _, ok := x.framework(c.GetFrameworkId()); !ok {
		return reject(CodeNotFound, "unknown framework %s", c.GetFrameworkId())
	}
	offers, rej := x.ownOffers(c.GetFrameworkId(), c.GetOfferIds())
	if rej != nil {
		return rej
	}
	x.takeOffers(offers, "declined")
	if until := c.GetRefuseUntil(); until != nil {
		// Decline carries no clock: a filter counts if it outlives the offer.
		var agents []string
		for _, o := range offers {
			if cmpTS(until, o.GetCreatedAt()) > 0 {
				agents = append(agents, o.GetAgentId())
			}
		}
		x.addFilters(c.GetFrameworkId(), agents, until)
	}
	return nil
}

// expire removes offers and filters that expired at now and tears down
// frameworks whose failover timeout ran out.
func (x *txn) expire(c *agorav1.ExpireCommand) *Rejection {
	now := ts(c.GetNow())
	var due []*agorav1.Offer
	x.t.Root().WalkPrefix([]byte(xOfferExpiry), func(k []byte, _ interface{}) bool {
		id := string(k[len(xOfferExpiry)+13:])
		o, ok := x.offer(id)
		if !ok {
			return false
		}
		if cmpTS(o.GetExpiresAt(), now) > 0 {
			return true
		}
		due = append(due, o)
		return false
	})
	for _, o := range due {
		x.removeOffer(o, "expired", true)
	}
	x.expirePreemptions(now)
	var frameworks []*agorav1.Framework
	x.t.Root().WalkPrefix([]byte(pFramework), func(_ []byte, v interface{}) bool {
		frameworks = append(frameworks, v.(*agorav1.Framework))
		return false
	})
	for _, f := range frameworks {
		if f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED &&
			cmpTS(addSeconds(f.GetDisconnectedAt(), f.GetInfo().GetFailoverTimeoutSeconds()), now) <= 0 {
			x.tearDown(f, "failover timeout expired")
			continue
		}
		if slices.ContainsFunc(f.GetFilters(), func(flt *agorav1.OfferFilter) bool { return cmpTS(flt.GetUntil(), now) <= 0 }) {
			n := cloneSharingFilters(f)
			n.Filters = slices.DeleteFunc(n.Filters, func(flt *agorav1.OfferFilter) bool { return cmpTS(flt.GetUntil(), now) <= 0 })
			x.putFramework(n)
		}
	}
	return nil
}
