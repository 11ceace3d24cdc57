package master

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// Limits and defaults of the framework API.
const (
	// DefaultRefuse is the filter of a decline (and of the unused part of an
	// accept) that gives no refuse_seconds.
	DefaultRefuse = 5 * time.Second
	// MaxRefuse caps refuse_seconds.
	MaxRefuse = 365 * 24 * time.Hour
	// StatusResendInterval is how often an unacknowledged status update is
	// sent again on the framework's stream.
	StatusResendInterval = 5 * time.Second

	offersPerEvent = 100
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

	broker *broker

	// resendInterval is StatusResendInterval.
	resendInterval time.Duration
	// metrics counts resends (nil in tests without a Master).
	metrics *masterMetrics

	// subscribes and calls rate Subscribe and the other calls per
	// principal (Config.Limits; nil: no limit).
	subscribes, calls *rateLimiter
	// acks groups concurrent acknowledgements into one entry (ack.go).
	acks *coalescer[*agorav1.AcknowledgeCommand]
	// queuedAcks are the acknowledgements waiting for their commit: not
	// resent (ack.go).
	queuedAcks queuedAcks
}

// disconnectDelay is how long a stream that ended waits before recording
// the framework's disconnection: when the master itself is going down (its
// HTTP server closes first), leadership ends within it and nothing is
// recorded: the framework did not leave, this master did.
const disconnectDelay = 50 * time.Millisecond

// newSchedulerServer builds the scheduler service of m.
func newSchedulerServer(m backend) *schedulerServer {
	l := m.Config().Limits
	return &schedulerServer{
		m:              m,
		broker:         newBroker(),
		resendInterval: StatusResendInterval,
		subscribes:     newRateLimiter("Subscribe calls", l.SubscribeRate, l.SubscribeBurst),
		calls:          newRateLimiter("scheduler calls", l.CallRate, l.CallBurst),
		acks:           newAckCoalescer(m),
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
			dirty = true
		case fsm.EventTaskStatus:
			// A task still live holds what it held: nothing to offer anew.
			// At 1M tasks the RUNNING updates alone asked for a round of
			// 10,000 agents after each entry (issue 13).
			if fsm.IsTerminal(e.Status.GetState()) {
				dirty = true
			}
		default:
			dirty = true
		}
	}
	if dirty {
		s.m.MarkAllocationDirty()
	}
	s.broker.publish(index, events)
}

// --- decoding ---

// withDefaults returns a copy of info with the leader's default failover
// timeout when it gives none. The FSM judges the rest (and defaults the
// roles to the default role).
func (s *schedulerServer) withDefaults(info *agorav1.FrameworkInfo) *agorav1.FrameworkInfo {
	info, _ = proto.Clone(info).(*agorav1.FrameworkInfo)
	if info != nil && info.GetFailoverTimeoutSeconds() == 0 {
		info.FailoverTimeoutSeconds = s.m.Config().DefaultFailoverTimeout.Seconds()
	}
	return info
}

// refuseDuration decodes refuse_seconds (nil means DefaultRefuse) into the
// filter duration the leader stamps into the command as a deadline.
func refuseDuration(p *float64) (time.Duration, error) {
	if p == nil {
		return DefaultRefuse, nil
	}
	v := *p
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
		return 0, invalid("refuse_seconds %g must be a finite number >= 0", v)
	case v > MaxRefuse.Seconds():
		return 0, invalid("refuse_seconds %g exceeds the maximum of one year (%g)", v, MaxRefuse.Seconds())
	}
	return time.Duration(v * float64(time.Second)), nil
}

// caller authenticates a unary call: this master leads, the framework
// exists and is not torn down, and the token is its current subscription's
// (the identity of the stream, which only the edge knows). It returns the
// leader's state.
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
	if fw.GetStreamToken() != streamDigest(call.GetStreamToken()) {
		return nil, nil, connect.NewError(connect.CodePermissionDenied, errStaleToken)
	}
	if err := s.m.security().ownFramework(ctx, fw); err != nil {
		return nil, nil, err
	}
	if err := s.calls.charge(ctx, fw.GetInfo().GetPrincipal(), s.m.Now()); err != nil {
		return nil, nil, err
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
	if err := leaderOrRedirect(ctx, s.m, req.Header().Get(UnreachableHeader), electionWait); err != nil {
		return err
	}
	info := s.withDefaults(req.Msg.GetFrameworkInfo())
	if err := s.subscribes.charge(ctx, info.GetPrincipal(), s.m.Now()); err != nil {
		return err
	}
	if err := checkInfoShape(info); err != nil {
		return err
	}
	if err := s.authorizeInfo(ctx, info); err != nil {
		s.m.security().auditCall(ctx, agorav1connect.SchedulerServiceSubscribeProcedure, req.Peer().Addr, req.Msg, err)
		return err
	}
	fid := info.GetId()
	if fid != "" {
		// Identity: an id the client gives must be one the master gave.
		// The FSM judges the rest (torn down, principal, info).
		ready, err := s.m.ReadyState(ctx)
		if err != nil {
			return err
		}
		if _, ok := ready.Framework(fid); !ok {
			return notFound("unknown framework %s: subscribe without an id to register anew", fid)
		}
	} else {
		fid = NewID()
		if info != nil {
			info.Id = fid
		}
	}
	sub := newStream(fid)
	sub.batched = req.Msg.GetBatchedUpdates()
	// Registered before proposing: nothing applied after the subscription
	// can be missed. The snapshot index below filters out what it covers.
	s.broker.add(sub)
	defer s.broker.remove(sub)

	err := s.apply(ctx, fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework:                 &agorav1.Framework{Id: fid, Info: info, StreamToken: sub.token},
		Now:                       timestamppb.New(s.m.Now()),
		MaxFrameworksPerPrincipal: stamp(s.m.Config().Limits.MaxFrameworksPerPrincipal),
	})
	s.m.security().auditCall(ctx, agorav1connect.SchedulerServiceSubscribeProcedure, req.Peer().Addr, &agorav1.FrameworkInfo{Id: fid, Name: info.GetName(), Principal: info.GetPrincipal()}, err)
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

// serveStream sends SUBSCRIBED, the framework's outstanding offers,
// unacknowledged updates and the inverse offers of drained agents it has
// tasks on from st, then live events until the stream ends.
func (s *schedulerServer) serveStream(ctx context.Context, out *connect.ServerStream[agorav1.SubscribeResponse], sub *stream, st *fsm.State) error {
	cfg := s.m.Config()
	snd := newEventSender(out, sub.batched, s.m.Now)
	send := snd.send
	gone := func(err error) error {
		s.disconnected(sub)
		return err
	}

	if err := send(&agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Subscribed{Subscribed: &agorav1.Subscribed{
		FrameworkId:              sub.fid,
		HeartbeatIntervalSeconds: cfg.HeartbeatInterval.Seconds(),
		StreamToken:              sub.secret,
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
	if ios := st.InverseOffers(sub.fid); len(ios) > 0 {
		if err := send(inverseOffersEvent(ios...)); err != nil {
			return gone(err)
		}
	}
	snapIndex := st.Index()
	if err := snd.flush(); err != nil {
		return gone(err)
	}

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
				for _, ev := range it.events() {
					if err := send(ev); err != nil {
						return gone(err)
					}
				}
			}
			if err := snd.flush(); err != nil {
				return gone(err)
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
			if err := s.resendUnacked(sub.fid, snd.sent, send); err != nil {
				return gone(err)
			}
			if err := snd.flush(); err != nil {
				return gone(err)
			}
		}
	}
}

// resendUnacked sends again every unacknowledged status last sent on this
// stream at least resendEvery ago, and then waits twice as long, up to
// 2^(resendLevels-1) times (resendTracker), unless its acknowledgement is in
// a call waiting for its commit (then it waits resendEvery again). It looks
// only at the statuses due (sent tracks them in the order they were sent),
// each by one lookup in the state: a scan of every unacknowledged status
// at each tick took a tenth of the leader's CPU with 100,000s of them
// (issue 13). A full scan still runs every fullScanEvery resend intervals
// and notes, without sending it yet, any unacknowledged status the stream
// has not sent (its live event is on the way); none should be missing.
func (s *schedulerServer) resendUnacked(fid string, sent *resendTracker, send func(*agorav1.SubscribeResponse) error) error {
	now := s.m.Now()
	every := s.resendEvery()
	st := s.m.State()
	if sent.lastScan.IsZero() || now.Sub(sent.lastScan) >= fullScanEvery*every {
		sent.lastScan = now
		for _, status := range st.UnacknowledgedStatuses(fid) {
			if _, ok := sent.at[status.GetUuid()]; !ok {
				sent.note(status, now)
			}
		}
	}
	if now.Sub(s.queuedAcks.lastAck(fid)) < every {
		// The framework acknowledged within the interval: the stream
		// delivers (in order, over one connection) and the framework is
		// behind, not lost. A resend now only adds to what it has yet to
		// read: at 1M tasks, frameworks a few seconds behind were sent a
		// quarter of their updates twice, the leader's time and theirs
		// (issue 13). What is due goes out once acknowledgements stop
		// for an interval.
		return nil
	}
	for {
		e, ok := sent.nextDue(now, every)
		if !ok {
			return nil
		}
		t, ok := st.Task(fid, e.taskID)
		if !ok || t.GetAcknowledged() || t.GetStatus().GetUuid() != e.uuid {
			sent.forget(e.uuid)
			continue
		}
		if s.queuedAcks.queued(fid, e.uuid) {
			sent.note(t.GetStatus(), now) // its acknowledgement waits for its commit
			continue
		}
		sent.backOff(e.uuid)
		s.metrics.resent()
		if err := send(updateEvent(t.GetStatus())); err != nil {
			return err
		}
	}
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

// Accept applies operations to the resources of offers, atomically. The
// FSM judges the accept (Master.Apply dry-runs it on the leader's state).
func (s *schedulerServer) Accept(ctx context.Context, req *connect.Request[agorav1.AcceptRequest]) (*connect.Response[agorav1.AcceptResponse], error) {
	st, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	refuse, err := refuseDuration(req.Msg.RefuseSeconds)
	if err != nil {
		return nil, err
	}
	if err := checkAcceptShape(req.Msg.GetOperations()); err != nil {
		return nil, err
	}
	ops := req.Msg.GetOperations()
	if err := s.authorizeOps(ctx, st, req.Msg.GetOfferIds(), ops); err != nil {
		return nil, err
	}
	now := s.m.Now()
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
		Limits:      s.m.Config().Limits.acceptLimits(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.AcceptResponse{}), nil
}

// acceptIDs is how many fresh ids an accept may consume: the FSM takes one
// per role reserved by a RESERVE (at most one per resource named) and one
// per LAUNCH_GROUP, nothing for a LAUNCH (its tasks carry their own ids),
// so a launch of 100 tasks needs none (it was given 101, 3.3 kB of every
// such entry, each id from crypto/rand). Should the FSM ever need more
// than it was given, it derives them from the entry's index.
func acceptIDs(ops []*agorav1.Operation) int {
	n := 0
	for _, op := range ops {
		switch op.GetType() {
		case agorav1.OperationType_OPERATION_TYPE_RESERVE:
			n += len(op.GetResources())
		case agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP:
			n++
		}
	}
	return n
}

// --- Decline, Revive, Suppress, Kill, Acknowledge ---

// Decline returns offers and filters their agents for refuse_seconds.
func (s *schedulerServer) Decline(ctx context.Context, req *connect.Request[agorav1.DeclineRequest]) (*connect.Response[agorav1.DeclineResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	refuse, err := refuseDuration(req.Msg.RefuseSeconds)
	if err != nil {
		return nil, err
	}
	err = s.apply(ctx, fsm.CmdDecline, &agorav1.DeclineCommand{
		FrameworkId: fw.GetId(),
		OfferIds:    req.Msg.GetOfferIds(),
		RefuseUntil: timestamppb.New(s.m.Now().Add(refuse)),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DeclineResponse{}), nil
}

// Revive removes the framework's filters and suppression for roles.
func (s *schedulerServer) Revive(ctx context.Context, req *connect.Request[agorav1.ReviveRequest]) (*connect.Response[agorav1.ReviveResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	if _, err := s.m.applyChange(ctx, fsm.CmdRevive, &agorav1.ReviveCommand{FrameworkId: fw.GetId(), Roles: req.Msg.GetRoles()}); err != nil {
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
	if _, err := s.m.applyChange(ctx, fsm.CmdSuppress, &agorav1.SuppressCommand{FrameworkId: fw.GetId(), Roles: req.Msg.GetRoles()}); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.SuppressResponse{}), nil
}

// Demand replaces the framework's demand (what it cannot place). The FSM
// judges it: bad shapes and counts are InvalidArgument, a role the
// framework does not hold PermissionDenied.
func (s *schedulerServer) Demand(ctx context.Context, req *connect.Request[agorav1.DemandRequest]) (*connect.Response[agorav1.DemandResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	if _, err := s.m.applyChange(ctx, fsm.CmdSetDemand, &agorav1.SetDemandCommand{FrameworkId: fw.GetId(), Demand: req.Msg.GetDemands()}); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DemandResponse{}), nil
}

// Kill asks for a task to be killed. The task id names the task within the
// framework; agent_id is a hint the master does not need.
func (s *schedulerServer) Kill(ctx context.Context, req *connect.Request[agorav1.KillRequest]) (*connect.Response[agorav1.KillResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	_, err = s.m.applyChange(ctx, fsm.CmdKillTask, &agorav1.KillTaskCommand{
		FrameworkId: fw.GetId(), TaskId: req.Msg.GetTaskId(), Now: timestamppb.New(s.m.Now()),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.KillResponse{}), nil
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
	if len(statuses) > 0 {
		// One queue item: a framework with more tasks than a stream may
		// queue events still gets every answer (no overflow, which would
		// make it resubscribe and reconcile again, without end).
		batch := make([]*agorav1.SubscribeResponse, len(statuses))
		for i, status := range statuses {
			batch[i] = updateEvent(status)
		}
		s.broker.sendCurrent(fw.GetId(), fw.GetStreamToken(), queued{index: deliverAlways, batch: batch})
	}
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
	info := s.withDefaults(req.Msg.GetFrameworkInfo())
	if info == nil {
		info = &agorav1.FrameworkInfo{} // the FSM names what is missing
	}
	if err := checkInfoShape(info); err != nil {
		return nil, err
	}
	if info.GetId() != "" && info.GetId() != fw.GetId() {
		return nil, invalid("framework_info.id %s does not match the calling framework %s", info.GetId(), fw.GetId())
	}
	if err := s.authorizeInfo(ctx, info); err != nil {
		return nil, err
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
