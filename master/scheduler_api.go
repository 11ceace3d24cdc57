package master

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Limits and defaults of the framework API.
const (
	// DefaultRefuse is the filter of a decline (and of the unused part of an
	// accept) that gives no refuse_seconds.
	DefaultRefuse = 5 * time.Second
	// MaxRefuse caps refuse_seconds.
	MaxRefuse = 365 * 24 * time.Hour
	// MaxFailoverTimeout caps a framework's failover timeout.
	MaxFailoverTimeout = 365 * 24 * time.Hour
	// StatusResendInterval is how often an unacknowledged status update is
	// sent again on the framework's stream.
	StatusResendInterval = 5 * time.Second

	maxNameLen      = 256
	offersPerEvent  = 100
	removedOfferMax = 1 << 16
)

var (
	errStreamOverflow = errors.New("the framework's event stream fell too far behind; resubscribe")
	errStaleToken     = errors.New("stale stream token: this subscription was replaced or has ended; resubscribe")
)

// schedulerServer implements SchedulerService: the framework API. It owns
// the event broker feeding framework streams; it runs no goroutines of its
// own (leader-only work belongs to the leader type).
type schedulerServer struct {
	agorav1connect.UnimplementedSchedulerServiceHandler
	m backend

	broker  *broker
	removed *offerMemo

	// resendInterval is StatusResendInterval.
	resendInterval time.Duration
}

// disconnectDelay is how long a stream that ended waits before recording
// the framework's disconnection: when the master itself is going down (its
// HTTP server closes first), leadership ends within it and nothing is
// recorded: the framework did not leave, this master did.
const disconnectDelay = 50 * time.Millisecond

// newSchedulerServer builds the scheduler service of m.
func newSchedulerServer(m backend) *schedulerServer {
	return &schedulerServer{
		m:              m,
		broker:         newBroker(),
		removed:        newOfferMemo(removedOfferMax),
		resendInterval: StatusResendInterval,
	}
}

// OnApply receives the events of every applied entry (on every replica). It
// never blocks: events are queued on the streams of the frameworks they
// concern, and the allocator is marked dirty when resources may have been
// freed or demand changed.
func (s *schedulerServer) OnApply(index uint64, events []fsm.Event) {
	dirty := len(events) == 0 // agent registered, framework subscribed, revive, ...
	for _, e := range events {
		switch e.Kind {
		case fsm.EventOffersCreated:
		case fsm.EventOfferRemoved:
			s.removed.add(e.OfferID, e.Reason)
			dirty = true
		default:
			dirty = true
		}
	}
	if dirty {
		s.m.MarkAllocationDirty()
	}
	s.broker.publish(index, events)
}

// --- errors and validation helpers ---

func invalid(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func notFound(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf(format, args...))
}

func denied(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodePermissionDenied, fmt.Errorf(format, args...))
}

func precondition(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(format, args...))
}

func finiteSeconds(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// validateInfo checks a FrameworkInfo at the edge and fills defaults (roles
// ["*"] when none, the default failover timeout when 0). info is modified.
func (s *schedulerServer) validateInfo(info *agorav1.FrameworkInfo) error {
	if info == nil {
		return invalid("framework_info is required")
	}
	name := strings.TrimSpace(info.GetName())
	switch {
	case name == "":
		return invalid("framework name is required")
	case len(info.GetName()) > maxNameLen:
		return invalid("framework name is longer than %d bytes", maxNameLen)
	case len(info.GetPrincipal()) > maxNameLen:
		return invalid("principal is longer than %d bytes", maxNameLen)
	case len(info.GetWebuiUrl()) > 4*maxNameLen:
		return invalid("webui_url is longer than %d bytes", 4*maxNameLen)
	case strings.ContainsRune(info.GetId(), 0) || len(info.GetId()) > maxNameLen:
		return invalid("framework id %q is malformed", info.GetId())
	}
	if len(info.GetRoles()) == 0 {
		info.Roles = []string{"*"}
	}
	seen := map[string]bool{}
	for _, r := range info.GetRoles() {
		if !fsm.ValidRoleName(r) {
			return invalid("invalid role %q: want [a-z][a-z0-9_.-]{0,63} or \"*\"", r)
		}
		if seen[r] {
			return invalid("role %q given twice", r)
		}
		seen[r] = true
	}
	for _, c := range info.GetCapabilities() {
		if c == agorav1.Capability_CAPABILITY_UNSPECIFIED || agorav1.Capability_name[int32(c)] == "" {
			return invalid("unknown capability %d", int32(c))
		}
	}
	ft := info.GetFailoverTimeoutSeconds()
	switch {
	case !finiteSeconds(ft) || ft < 0:
		return invalid("failover timeout %g must be a finite number of seconds >= 0", ft)
	case ft > MaxFailoverTimeout.Seconds():
		return invalid("failover timeout %gs exceeds the maximum of %s", ft, MaxFailoverTimeout)
	case ft == 0:
		info.FailoverTimeoutSeconds = s.m.Config().DefaultFailoverTimeout.Seconds()
	}
	return nil
}

// refuseDuration checks refuse_seconds (nil means DefaultRefuse).
func refuseDuration(p *float64) (time.Duration, error) {
	if p == nil {
		return DefaultRefuse, nil
	}
	v := *p
	switch {
	case !finiteSeconds(v) || v < 0:
		return 0, invalid("refuse_seconds %g must be a finite number >= 0", v)
	case v > MaxRefuse.Seconds():
		return 0, invalid("refuse_seconds %g exceeds the maximum of one year (%g)", v, MaxRefuse.Seconds())
	}
	return time.Duration(v * float64(time.Second)), nil
}

func hasRole(fw *agorav1.Framework, role string) bool {
	return slices.Contains(fw.GetInfo().GetRoles(), role)
}

// caller authenticates a unary call: this master leads, the framework
// exists and is not torn down, and the token is its current subscription's.
// It returns the local state the pre-checks use.
func (s *schedulerServer) caller(ctx context.Context, call *agorav1.FrameworkCall) (*fsm.State, *agorav1.Framework, error) {
	if !s.m.IsLeader() {
		return nil, nil, s.m.NotLeaderError()
	}
	if call.GetFrameworkId() == "" {
		return nil, nil, invalid("call.framework_id is required")
	}
	if call.GetStreamToken() == "" {
		return nil, nil, invalid("call.stream_token is required (from SUBSCRIBED)")
	}
	st, err := s.m.ReadyState(ctx)
	if err != nil {
		return nil, nil, err
	}
	fw, ok := st.Framework(call.GetFrameworkId())
	if !ok {
		return nil, nil, notFound("unknown framework %s", call.GetFrameworkId())
	}
	if fw.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
		return nil, nil, precondition("framework %s was torn down", fw.GetId())
	}
	if fw.GetStreamToken() != call.GetStreamToken() {
		return nil, nil, connect.NewError(connect.CodePermissionDenied, errStaleToken)
	}
	return st, fw, nil
}

// apply proposes a command and returns only its error.
func (s *schedulerServer) apply(ctx context.Context, t fsm.CommandType, msg proto.Message) error {
	_, err := s.m.Apply(ctx, t, msg)
	return err
}

// --- Subscribe ---

// Subscribe registers or re-registers a framework and streams its events.
func (s *schedulerServer) Subscribe(ctx context.Context, req *connect.Request[agorav1.SubscribeRequest], out *connect.ServerStream[agorav1.SubscribeResponse]) error {
	if !s.m.IsLeader() {
		return s.m.NotLeaderError()
	}
	info, _ := proto.Clone(req.Msg.GetFrameworkInfo()).(*agorav1.FrameworkInfo)
	if err := s.validateInfo(info); err != nil {
		return err
	}
	fid := info.GetId()
	if fid != "" {
		ready, err := s.m.ReadyState(ctx)
		if err != nil {
			return err
		}
		fw, ok := ready.Framework(fid)
		if !ok {
			return notFound("unknown framework %s: subscribe without an id to register anew", fid)
		}
		if fw.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			return precondition("framework %s was torn down; subscribe without an id to register anew", fid)
		}
		if fw.GetInfo().GetPrincipal() != info.GetPrincipal() {
			return denied("framework %s is registered with principal %q, not %q", fid, fw.GetInfo().GetPrincipal(), info.GetPrincipal())
		}
	} else {
		fid = NewID()
		info.Id = fid
	}
	sub := newStream(fid, NewID())
	// Registered before proposing: nothing applied after the subscription
	// can be missed. The snapshot index below filters out what it covers.
	s.broker.add(sub)
	defer s.broker.remove(sub)

	err := s.apply(ctx, fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework: &agorav1.Framework{Id: fid, Info: info, StreamToken: sub.token},
		Now:       timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return err
	}
	st := s.m.State()
	fw, _ := st.Framework(fid)
	if !s.broker.promote(sub, fw.GetStreamToken()) {
		return s.finish(ctx, out, sub)
	}
	s.m.Logger().Info("framework subscribed", "framework", fid, "name", info.GetName(), "roles", info.GetRoles())
	return s.serveStream(ctx, out, sub, st)
}

// serveStream sends SUBSCRIBED, the framework's outstanding offers and
// unacknowledged updates from st, then live events until the stream ends.
func (s *schedulerServer) serveStream(ctx context.Context, out *connect.ServerStream[agorav1.SubscribeResponse], sub *stream, st *fsm.State) error {
	cfg := s.m.Config()
	lastSent := map[string]time.Time{} // status uuid -> when we last sent it
	send := func(ev *agorav1.SubscribeResponse) error {
		if u := ev.GetUpdate().GetStatus().GetUuid(); u != "" {
			lastSent[u] = time.Now()
		}
		return out.Send(ev)
	}
	gone := func(err error) error {
		s.disconnected(sub)
		return err
	}

	if err := send(&agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Subscribed{Subscribed: &agorav1.Subscribed{
		FrameworkId:              sub.fid,
		HeartbeatIntervalSeconds: cfg.HeartbeatInterval.Seconds(),
		StreamToken:              sub.token,
		MasterId:                 s.m.ID(),
	}}}); err != nil {
		return gone(err)
	}
	offers := st.OffersByFramework(sub.fid)
	for len(offers) > 0 {
		n := min(len(offers), offersPerEvent)
		if err := send(&agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Offers{
			Offers: &agorav1.Offers{Offers: offers[:n]}}}); err != nil {
			return gone(err)
		}
		offers = offers[n:]
	}
	for _, status := range st.UnacknowledgedStatuses(sub.fid) {
		if err := send(updateEvent(status)); err != nil {
			return gone(err)
		}
	}
	snapIndex := st.Index()

	heartbeat := time.NewTicker(cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	resend := time.NewTicker(max(s.resendEvery()/4, 10*time.Millisecond))
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return gone(ctx.Err())
		case <-sub.notify:
			items, end := sub.take()
			for _, it := range items {
				if it.index != deliverAlways && it.index <= snapIndex {
					continue
				}
				if err := send(it.ev); err != nil {
					return gone(err)
				}
			}
			if end != nil {
				return s.end(ctx, out, end)
			}
		case <-heartbeat.C:
			if err := send(&agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Heartbeat{
				Heartbeat: &agorav1.Heartbeat{}}}); err != nil {
				return gone(err)
			}
		case <-resend.C:
			if err := s.resendUnacked(sub.fid, lastSent, send); err != nil {
				return gone(err)
			}
		}
	}
}

// resendUnacked sends again every unacknowledged status last sent at least
// resendInterval ago. A status not sent yet on this stream is only noted:
// its live event is on the way.
func (s *schedulerServer) resendUnacked(fid string, lastSent map[string]time.Time, send func(*agorav1.SubscribeResponse) error) error {
	now := time.Now()
	pending := s.m.State().UnacknowledgedStatuses(fid)
	live := make(map[string]bool, len(pending))
	for _, status := range pending {
		u := status.GetUuid()
		live[u] = true
		at, ok := lastSent[u]
		if !ok {
			lastSent[u] = now
			continue
		}
		if now.Sub(at) >= s.resendEvery() {
			if err := send(updateEvent(status)); err != nil {
				return err
			}
		}
	}
	for u := range lastSent {
		if !live[u] {
			delete(lastSent, u)
		}
	}
	return nil
}

// resendEvery is how long an unacknowledged status waits before it is sent
// again: StatusResendInterval, or the heartbeat interval when shorter.
func (s *schedulerServer) resendEvery() time.Duration {
	return min(s.resendInterval, s.m.Config().HeartbeatInterval)
}

// finish drains a stream that was closed before it started serving.
func (s *schedulerServer) finish(ctx context.Context, out *connect.ServerStream[agorav1.SubscribeResponse], sub *stream) error {
	_, end := sub.take()
	if end == nil {
		end = replacedEnd()
	}
	return s.end(ctx, out, end)
}

// end sends the final event of a closed stream and returns its error. A
// stream closed because leadership was lost waits briefly for the new
// leader so that the framework learns its address.
func (s *schedulerServer) end(ctx context.Context, out *connect.ServerStream[agorav1.SubscribeResponse], e *streamEnd) error {
	if e.final != nil {
		_ = out.Send(e.final)
	}
	if !e.leaderLost {
		return e.err
	}
	deadline := time.NewTimer(3 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, url := s.m.Leader(); id != "" && id != s.m.ID() && url != "" {
			break
		}
		select {
		case <-ctx.Done():
			return s.m.NotLeaderError()
		case <-deadline.C:
			return s.m.NotLeaderError()
		case <-tick.C:
		}
	}
	return s.m.NotLeaderError()
}

// disconnected records that the framework's current stream went away, if
// this master still leads and the stream was still the current one.
func (s *schedulerServer) disconnected(sub *stream) {
	lead := s.m.Leadership()
	if lead == nil || !s.m.IsLeader() || !s.broker.isCurrent(sub) {
		return
	}
	wait := time.NewTimer(disconnectDelay)
	defer wait.Stop()
	select {
	case <-lead.Done():
		return
	case <-wait.C:
	}
	if !s.broker.isCurrent(sub) {
		return
	}
	ctx, cancel := context.WithTimeout(lead, 5*time.Second)
	defer cancel()
	err := s.apply(ctx, fsm.CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{
		FrameworkId: sub.fid, StreamToken: sub.token, Now: timestamppb.New(s.m.Now()),
	})
	if err != nil {
		s.m.Logger().Debug("recording framework disconnection failed", "framework", sub.fid, "err", err)
		return
	}
	s.m.Logger().Info("framework disconnected", "framework", sub.fid)
}

// --- Accept ---

// Accept applies operations to the resources of offers, atomically.
func (s *schedulerServer) Accept(ctx context.Context, req *connect.Request[agorav1.AcceptRequest]) (*connect.Response[agorav1.AcceptResponse], error) {
	st, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
		return nil, precondition("framework %s is not connected: subscribe first", fw.GetId())
	}
	refuse, err := refuseDuration(req.Msg.RefuseSeconds)
	if err != nil {
		return nil, err
	}
	now := s.m.Now()
	ops := make([]*agorav1.Operation, len(req.Msg.GetOperations()))
	for i, op := range req.Msg.GetOperations() {
		ops[i], _ = proto.Clone(op).(*agorav1.Operation)
	}
	if err := s.checkAccept(st, fw, req.Msg.GetOfferIds(), ops, now); err != nil {
		return nil, err
	}
	ids := make([]string, acceptIDs(ops))
	for i := range ids {
		ids[i] = NewID()
	}
	err = s.apply(ctx, fsm.CmdAccept, &agorav1.AcceptCommand{
		FrameworkId: fw.GetId(),
		OfferIds:    req.Msg.GetOfferIds(),
		Operations:  ops,
		Now:         timestamppb.New(now),
		RefuseUntil: timestamppb.New(now.Add(refuse)),
		Ids:         ids,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.AcceptResponse{}), nil
}

// acceptIDs is how many fresh ids an accept may consume: one per
// reservation resource, per operation and per task, more than enough.
func acceptIDs(ops []*agorav1.Operation) int {
	n := 0
	for _, op := range ops {
		n += 1 + len(op.GetResources()) + len(op.GetTasks()) + len(op.GetVolumes())
	}
	return n
}

// checkOffers checks that ids name live offers of fw; it returns them.
func (s *schedulerServer) checkOffers(st *fsm.State, fw *agorav1.Framework, ids []string, now time.Time) ([]*agorav1.Offer, error) {
	if len(ids) == 0 {
		return nil, invalid("offer_ids is empty")
	}
	seen := make(map[string]bool, len(ids))
	offers := make([]*agorav1.Offer, 0, len(ids))
	for _, id := range ids {
		if seen[id] {
			return nil, invalid("offer %s given twice", id)
		}
		seen[id] = true
		o, ok := st.Offer(id)
		if !ok {
			if reason, gone := s.removed.get(id); gone {
				return nil, precondition("offer %s is no longer valid (%s)", id, reason)
			}
			return nil, notFound("unknown offer %s", id)
		}
		if o.GetFrameworkId() != fw.GetId() {
			return nil, denied("offer %s belongs to another framework", id)
		}
		if !now.Before(o.GetExpiresAt().AsTime()) {
			return nil, precondition("offer %s expired at %s", id, o.GetExpiresAt().AsTime().Format(time.RFC3339))
		}
		offers = append(offers, o)
	}
	return offers, nil
}

// checkAccept pre-checks an accept against local state so that a bad call
// normally never reaches the log; the FSM checks everything again. It fills
// in the agent id of tasks that name none.
func (s *schedulerServer) checkAccept(st *fsm.State, fw *agorav1.Framework, offerIDs []string, ops []*agorav1.Operation, now time.Time) error {
	offers, err := s.checkOffers(st, fw, offerIDs, now)
	if err != nil {
		return err
	}
	agentID := offers[0].GetAgentId()
	avail := resourcepb.Pools{}
	for _, o := range offers {
		if o.GetAgentId() != agentID {
			return invalid("offers %s and %s are on different agents; one accept takes offers of one agent", offers[0].GetId(), o.GetId())
		}
		p, err := resourcepb.FromProto(o.GetResources())
		if err != nil {
			return fmt.Errorf("offer %s: %w", o.GetId(), err)
		}
		avail = avail.Add(p)
	}
	if len(ops) == 0 {
		return invalid("no operations: use Decline to return offers")
	}
	taskIDs := map[string]bool{}
	newVolumes := map[string]bool{}
	for i, op := range ops {
		if op == nil {
			return invalid("operation %d is null", i)
		}
		switch op.GetType() {
		case agorav1.OperationType_OPERATION_TYPE_LAUNCH, agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP:
			if len(op.GetTasks()) == 0 {
				return invalid("operation %d: %s has no tasks", i, op.GetType())
			}
			for _, t := range op.GetTasks() {
				if err := s.checkTask(st, fw, t, agentID, taskIDs, newVolumes); err != nil {
					return fmt.Errorf("operation %d: %w", i, err)
				}
				need, _ := resourcepb.FromProto(t.GetResources())
				if !avail.Contains(need) {
					return precondition("operation %d: not enough resources in the offers for task %s: wants %s, %s left",
						i, t.GetTaskId(), need, avail)
				}
				avail, _ = avail.Subtract(need)
			}
		case agorav1.OperationType_OPERATION_TYPE_RESERVE, agorav1.OperationType_OPERATION_TYPE_UNRESERVE:
			if avail, err = checkReservation(fw, op, i, avail); err != nil {
				return err
			}
		case agorav1.OperationType_OPERATION_TYPE_CREATE:
			if err := checkCreate(st, fw, op, i, offers[0].GetRole(), newVolumes); err != nil {
				return err
			}
		case agorav1.OperationType_OPERATION_TYPE_DESTROY:
			if err := checkDestroy(st, fw, op, i, agentID, newVolumes); err != nil {
				return err
			}
		default:
			return invalid("operation %d: unknown type %d", i, int32(op.GetType()))
		}
	}
	return nil
}

func (s *schedulerServer) checkTask(st *fsm.State, fw *agorav1.Framework, t *agorav1.TaskInfo, agentID string, taskIDs, newVolumes map[string]bool) error {
	id := t.GetTaskId()
	switch {
	case t == nil:
		return invalid("task is null")
	case id == "" || len(id) > maxNameLen || strings.ContainsRune(id, 0):
		return invalid("task id %q is malformed", id)
	case taskIDs[id]:
		return invalid("task id %s given twice", id)
	case t.GetCommand().GetValue() == "":
		return invalid("task %s has no command", id)
	case !finiteSeconds(t.GetKillGraceSeconds()) || t.GetKillGraceSeconds() < 0:
		return invalid("task %s: kill_grace_seconds %g must be a finite number >= 0", id, t.GetKillGraceSeconds())
	}
	taskIDs[id] = true
	if old, ok := st.Task(fw.GetId(), id); ok {
		return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("task %s already exists (%s)", id, old.GetState()))
	}
	switch a := t.GetAgentId(); {
	case a == "":
		t.AgentId = agentID
	case a != agentID:
		if _, ok := st.Agent(a); !ok {
			return notFound("task %s: unknown agent %s", id, a)
		}
		return invalid("task %s names agent %s but the offers are on agent %s", id, a, agentID)
	}
	need, err := resourcepb.FromProto(t.GetResources())
	if err != nil {
		return invalid("task %s: %w", id, err)
	}
	if need.IsEmpty() {
		return invalid("task %s has no resources", id)
	}
	for _, v := range t.GetVolumeIds() {
		if newVolumes[v] {
			continue
		}
		vol, ok := st.Volume(v)
		if !ok {
			return notFound("task %s: unknown volume %s", id, v)
		}
		if !hasRole(fw, vol.GetRole()) {
			return denied("task %s: volume %s belongs to role %s, not a role of this framework", id, v, vol.GetRole())
		}
		if vol.GetAgentId() != agentID {
			return notFound("task %s: volume %s is not on agent %s", id, v, agentID)
		}
	}
	return nil
}

// checkReservation checks a RESERVE or UNRESERVE and moves the resources
// between pools of avail.
func checkReservation(fw *agorav1.Framework, op *agorav1.Operation, i int, avail resourcepb.Pools) (resourcepb.Pools, error) {
	kind := op.GetType()
	if len(op.GetResources()) == 0 {
		return nil, invalid("operation %d: %s has no resources", i, kind)
	}
	p, err := resourcepb.FromProto(op.GetResources())
	if err != nil {
		return nil, invalid("operation %d: %w", i, err)
	}
	if _, ok := p[""]; ok {
		return nil, invalid("operation %d: %s needs a role on every resource", i, kind)
	}
	for _, role := range p.Roles() {
		if !hasRole(fw, role) {
			if kind == agorav1.OperationType_OPERATION_TYPE_RESERVE {
				return nil, denied("operation %d: cannot reserve for role %s: not a role of this framework", i, role)
			}
			return nil, denied("operation %d: cannot unreserve resources of role %s: not a role of this framework", i, role)
		}
		from, to := "", role
		if kind == agorav1.OperationType_OPERATION_TYPE_UNRESERVE {
			from, to = role, ""
		}
		move := resourcepb.Pools{from: p[role]}
		if !avail.Contains(move) {
			return nil, precondition("operation %d: %s %s for role %s: the offers do not hold it (%s left)", i, kind, p[role], role, avail)
		}
		avail, _ = avail.Subtract(move)
		avail = avail.Add(resourcepb.Pools{to: p[role]})
	}
	return avail, nil
}

func checkCreate(st *fsm.State, fw *agorav1.Framework, op *agorav1.Operation, i int, offerRole string, newVolumes map[string]bool) error {
	if len(op.GetVolumes()) == 0 {
		return invalid("operation %d: CREATE has no volumes", i)
	}
	for _, v := range op.GetVolumes() {
		id, role := v.GetId(), v.GetRole()
		if role == "" {
			role = offerRole
		}
		switch {
		case id == "" || len(id) > maxNameLen || strings.ContainsRune(id, 0):
			return invalid("operation %d: volume id %q is malformed", i, id)
		case role == "*":
			return invalid("operation %d: volume %s needs a reservation role, not \"*\"", i, id)
		case !finiteSeconds(v.GetSizeMib()) || v.GetSizeMib() <= 0:
			return invalid("operation %d: volume %s: size %g must be a positive number of MiB", i, id, v.GetSizeMib())
		case v.GetContainerPath() == "":
			return invalid("operation %d: volume %s has no container path", i, id)
		case !hasRole(fw, role):
			return denied("operation %d: volume %s: role %q is not a role of this framework", i, id, role)
		}
		if _, ok := st.Volume(id); ok || newVolumes[id] {
			return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("operation %d: volume %s already exists", i, id))
		}
		newVolumes[id] = true
	}
	return nil
}

func checkDestroy(st *fsm.State, fw *agorav1.Framework, op *agorav1.Operation, i int, agentID string, newVolumes map[string]bool) error {
	if len(op.GetVolumes()) == 0 {
		return invalid("operation %d: DESTROY has no volumes", i)
	}
	for _, v := range op.GetVolumes() {
		if newVolumes[v.GetId()] {
			delete(newVolumes, v.GetId())
			continue
		}
		vol, ok := st.Volume(v.GetId())
		if !ok {
			return notFound("operation %d: unknown volume %s", i, v.GetId())
		}
		if !hasRole(fw, vol.GetRole()) {
			return denied("operation %d: volume %s belongs to role %s, not a role of this framework", i, v.GetId(), vol.GetRole())
		}
		if vol.GetAgentId() != agentID {
			return notFound("operation %d: volume %s is not on the offers' agent %s", i, v.GetId(), agentID)
		}
	}
	return nil
}

// --- Decline, Revive, Suppress ---

// Decline returns offers and filters their agents for refuse_seconds.
func (s *schedulerServer) Decline(ctx context.Context, req *connect.Request[agorav1.DeclineRequest]) (*connect.Response[agorav1.DeclineResponse], error) {
	st, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	refuse, err := refuseDuration(req.Msg.RefuseSeconds)
	if err != nil {
		return nil, err
	}
	now := s.m.Now()
	if _, err := s.checkOffers(st, fw, req.Msg.GetOfferIds(), now); err != nil {
		return nil, err
	}
	err = s.apply(ctx, fsm.CmdDecline, &agorav1.DeclineCommand{
		FrameworkId: fw.GetId(),
		OfferIds:    req.Msg.GetOfferIds(),
		RefuseUntil: timestamppb.New(now.Add(refuse)),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DeclineResponse{}), nil
}

// checkRoles checks that roles are roles of fw.
func checkRoles(fw *agorav1.Framework, roles []string) error {
	for _, r := range roles {
		if !fsm.ValidRoleName(r) {
			return invalid("invalid role %q", r)
		}
		if !hasRole(fw, r) {
			return denied("role %s is not a role of this framework", r)
		}
	}
	return nil
}

// Revive removes the framework's filters and suppression for roles.
func (s *schedulerServer) Revive(ctx context.Context, req *connect.Request[agorav1.ReviveRequest]) (*connect.Response[agorav1.ReviveResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	roles := req.Msg.GetRoles()
	if err := checkRoles(fw, roles); err != nil {
		return nil, err
	}
	suppressed := len(roles) == 0 && len(fw.GetSuppressedRoles()) > 0
	for _, r := range roles {
		suppressed = suppressed || slices.Contains(fw.GetSuppressedRoles(), r)
	}
	if !suppressed && len(fw.GetFilters()) == 0 {
		return connect.NewResponse(&agorav1.ReviveResponse{}), nil // nothing to change
	}
	if err := s.apply(ctx, fsm.CmdRevive, &agorav1.ReviveCommand{FrameworkId: fw.GetId(), Roles: roles}); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ReviveResponse{}), nil
}

// Suppress stops offers for roles until Revive.
func (s *schedulerServer) Suppress(ctx context.Context, req *connect.Request[agorav1.SuppressRequest]) (*connect.Response[agorav1.SuppressResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	roles := req.Msg.GetRoles()
	if err := checkRoles(fw, roles); err != nil {
		return nil, err
	}
	want := roles
	if len(want) == 0 {
		want = fw.GetInfo().GetRoles()
	}
	done := true
	for _, r := range want {
		done = done && slices.Contains(fw.GetSuppressedRoles(), r)
	}
	if done {
		return connect.NewResponse(&agorav1.SuppressResponse{}), nil // already suppressed
	}
	if err := s.apply(ctx, fsm.CmdSuppress, &agorav1.SuppressCommand{FrameworkId: fw.GetId(), Roles: roles}); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.SuppressResponse{}), nil
}

// --- Kill, Acknowledge ---

// findTask looks a task of fw up; a task id that only another framework
// uses is PermissionDenied, an unknown one NotFound.
func findTask(st *fsm.State, fw *agorav1.Framework, taskID, agentID string) (*agorav1.Task, error) {
	if taskID == "" {
		return nil, invalid("task_id is required")
	}
	t, ok := st.Task(fw.GetId(), taskID)
	if !ok {
		if agentID != "" {
			for _, other := range st.TasksByAgent(agentID) {
				if other.GetId() == taskID {
					return nil, denied("task %s belongs to another framework", taskID)
				}
			}
			if _, ok := st.Agent(agentID); !ok {
				return nil, notFound("unknown agent %s", agentID)
			}
		}
		return nil, notFound("unknown task %s", taskID)
	}
	if agentID != "" && agentID != t.GetAgentId() {
		return nil, invalid("task %s runs on agent %s, not %s", taskID, t.GetAgentId(), agentID)
	}
	return t, nil
}

// Kill asks for a task to be killed.
func (s *schedulerServer) Kill(ctx context.Context, req *connect.Request[agorav1.KillRequest]) (*connect.Response[agorav1.KillResponse], error) {
	st, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	t, err := findTask(st, fw, req.Msg.GetTaskId(), req.Msg.GetAgentId())
	if err != nil {
		return nil, err
	}
	if fsm.IsTerminal(t.GetState()) || t.GetKillRequested() {
		return connect.NewResponse(&agorav1.KillResponse{}), nil // ended, or already asked
	}
	err = s.apply(ctx, fsm.CmdKillTask, &agorav1.KillTaskCommand{
		FrameworkId: fw.GetId(), TaskId: t.GetId(), Now: timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.KillResponse{}), nil
}

// Acknowledge acknowledges a status update.
func (s *schedulerServer) Acknowledge(ctx context.Context, req *connect.Request[agorav1.AcknowledgeRequest]) (*connect.Response[agorav1.AcknowledgeResponse], error) {
	st, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	if req.Msg.GetUuid() == "" {
		return nil, invalid("uuid is required")
	}
	t, err := findTask(st, fw, req.Msg.GetTaskId(), req.Msg.GetAgentId())
	if err != nil {
		return nil, err
	}
	if t.GetStatus().GetUuid() != req.Msg.GetUuid() {
		return nil, notFound("unknown status update %s for task %s (its latest is %s)", req.Msg.GetUuid(), t.GetId(), t.GetStatus().GetUuid())
	}
	if t.GetAcknowledged() {
		return connect.NewResponse(&agorav1.AcknowledgeResponse{}), nil // duplicate
	}
	err = s.apply(ctx, fsm.CmdAcknowledge, &agorav1.AcknowledgeCommand{
		FrameworkId: fw.GetId(), TaskId: t.GetId(), Uuid: req.Msg.GetUuid(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.AcknowledgeResponse{}), nil
}

// --- Reconcile ---

// Reconcile answers with the latest state of tasks from the replicated
// state, and pushes the same answers as UPDATE events on the stream.
func (s *schedulerServer) Reconcile(ctx context.Context, req *connect.Request[agorav1.ReconcileRequest]) (*connect.Response[agorav1.ReconcileResponse], error) {
	st, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	for _, t := range req.Msg.GetTasks() {
		if t.GetTaskId() == "" {
			return nil, invalid("reconcile: task_id is required")
		}
	}
	statuses := reconcile(st, fw, req.Msg.GetTasks(), s.m.Now())
	items := make([]queued, len(statuses))
	for i, status := range statuses {
		items[i] = queued{index: deliverAlways, ev: updateEvent(status)}
	}
	s.broker.sendCurrent(fw.GetId(), fw.GetStreamToken(), items...)
	return connect.NewResponse(&agorav1.ReconcileResponse{Statuses: statuses}), nil
}

// reconcile computes reconciliation answers (statuses without uuid).
func reconcile(st *fsm.State, fw *agorav1.Framework, tasks []*agorav1.ReconcileTask, now time.Time) []*agorav1.TaskStatus {
	partitionAware := slices.Contains(fw.GetInfo().GetCapabilities(), agorav1.Capability_CAPABILITY_PARTITION_AWARE)
	unreachable := func(agentID string) bool {
		a, ok := st.Agent(agentID)
		return ok && a.GetState() == agorav1.AgentState_AGENT_STATE_UNREACHABLE
	}
	lostState := func(pa agorav1.TaskState) agorav1.TaskState {
		if partitionAware {
			return pa
		}
		return agorav1.TaskState_TASK_STATE_LOST
	}
	answer := func(t *agorav1.Task) *agorav1.TaskStatus {
		status, _ := proto.Clone(t.GetStatus()).(*agorav1.TaskStatus)
		if status == nil {
			status = &agorav1.TaskStatus{TaskId: t.GetId(), FrameworkId: t.GetFrameworkId(), AgentId: t.GetAgentId(), State: t.GetState()}
		}
		status.Uuid = ""
		if !fsm.IsTerminal(status.GetState()) && unreachable(t.GetAgentId()) {
			status.State = lostState(agorav1.TaskState_TASK_STATE_UNREACHABLE)
			status.Reason = "agent unreachable"
		}
		return status
	}
	var out []*agorav1.TaskStatus
	if len(tasks) == 0 {
		for _, t := range st.TasksByFramework(fw.GetId()) {
			if !fsm.IsTerminal(t.GetState()) {
				out = append(out, answer(t))
			}
		}
		return out
	}
	for _, rt := range tasks {
		if t, ok := st.Task(fw.GetId(), rt.GetTaskId()); ok {
			out = append(out, answer(t))
			continue
		}
		state, reason := lostState(agorav1.TaskState_TASK_STATE_UNKNOWN), "task unknown to the master"
		if rt.GetAgentId() != "" && unreachable(rt.GetAgentId()) {
			state, reason = lostState(agorav1.TaskState_TASK_STATE_UNREACHABLE), "agent unreachable"
		}
		out = append(out, &agorav1.TaskStatus{
			TaskId: rt.GetTaskId(), FrameworkId: fw.GetId(), AgentId: rt.GetAgentId(),
			State: state, Reason: reason, Source: agorav1.StatusSource_STATUS_SOURCE_MASTER,
			Timestamp: timestamppb.New(now),
		})
	}
	return out
}

// --- UpdateFramework, Teardown ---

// UpdateFramework changes a framework's info without resubscribing.
func (s *schedulerServer) UpdateFramework(ctx context.Context, req *connect.Request[agorav1.UpdateFrameworkRequest]) (*connect.Response[agorav1.UpdateFrameworkResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	info, _ := proto.Clone(req.Msg.GetFrameworkInfo()).(*agorav1.FrameworkInfo)
	if err := s.validateInfo(info); err != nil {
		return nil, err
	}
	if info.GetId() != "" && info.GetId() != fw.GetId() {
		return nil, invalid("framework_info.id %s does not match the calling framework %s", info.GetId(), fw.GetId())
	}
	if p := info.GetPrincipal(); p != "" && p != fw.GetInfo().GetPrincipal() {
		return nil, denied("framework %s is registered with principal %q, not %q", fw.GetId(), fw.GetInfo().GetPrincipal(), p)
	}
	info.Id = fw.GetId()
	err = s.apply(ctx, fsm.CmdUpdateFramework, &agorav1.UpdateFrameworkCommand{Info: info, Now: timestamppb.New(s.m.Now())})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.UpdateFrameworkResponse{}), nil
}

// Teardown ends the framework: its tasks are killed and its stream ends.
func (s *schedulerServer) Teardown(ctx context.Context, req *connect.Request[agorav1.TeardownRequest]) (*connect.Response[agorav1.TeardownResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	err = s.apply(ctx, fsm.CmdTeardownFramework, &agorav1.TeardownFrameworkCommand{
		FrameworkId: fw.GetId(), Reason: "teardown requested by the framework", Now: timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.TeardownResponse{}), nil
}

// --- removed offers ---

// offerMemo remembers why recent offers were removed, so that accepting or
// declining one answers FailedPrecondition with the reason rather than
// NotFound. Bounded: the oldest entries are forgotten first.
type offerMemo struct {
	mu     sync.Mutex
	max    int
	reason map[string]string
	order  []string
	head   int
}

func newOfferMemo(max int) *offerMemo {
	return &offerMemo{max: max, reason: map[string]string{}}
}

func (o *offerMemo) add(id, reason string) {
	if reason == "" {
		reason = "removed"
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.reason[id]; ok {
		o.reason[id] = reason
		return
	}
	if len(o.order) < o.max {
		o.order = append(o.order, id)
	} else {
		delete(o.reason, o.order[o.head])
		o.order[o.head] = id
		o.head = (o.head + 1) % o.max
	}
	o.reason[id] = reason
}

func (o *offerMemo) get(id string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.reason[id]
	return r, ok
}
