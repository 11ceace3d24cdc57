package frameworktest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// Call is one recorded unary call.
type Call struct {
	// Method is the RPC name, such as "Accept".
	Method string
	// Framework is the identity the call carried.
	Framework *agorav1.FrameworkCall
	// Request is the request message.
	Request proto.Message
}

// Master is a fake SchedulerService on a loopback HTTP server.
type Master struct {
	srv *httptest.Server

	mu            sync.Mutex
	id            string
	leader        bool
	leaderID      string
	leaderURL     string
	heartbeat     time.Duration
	heartbeats    bool
	subscribeErr  error
	nextID        int
	subs          []*agorav1.FrameworkInfo
	batched       []bool
	encodings     []string
	live          *liveStream
	token         string
	calls         []Call
	reconcileWith []*agorav1.TaskStatus
	issued        map[string]bool
	blocked       map[string]chan struct{}
	failing       map[string]failing
}

type failing struct {
	n   int
	err error
}

type liveStream struct {
	events chan *agorav1.SubscribeResponse
	end    chan error
}

// NewMaster starts a fake master that is the leader, with a heartbeat
// interval of one second.
func NewMaster() *Master {
	m := &Master{leader: true, heartbeat: time.Second, heartbeats: true, issued: map[string]bool{}, blocked: map[string]chan struct{}{}}
	m.id = "fake"
	mux := http.NewServeMux()
	mux.Handle(agorav1connect.NewSchedulerServiceHandler(&handler{m: m}))
	// HTTP/1.1 and HTTP/2 without TLS, as real masters serve.
	m.srv = httptest.NewUnstartedServer(mux)
	m.srv.Config.Protocols = new(http.Protocols)
	m.srv.Config.Protocols.SetHTTP1(true)
	m.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	m.srv.Start()
	return m
}

// URL is the fake's base URL, to put in framework.Config.Masters.
func (m *Master) URL() string { return m.srv.URL }

// Close ends all streams and stops the server.
func (m *Master) Close() {
	m.srv.CloseClientConnections()
	m.srv.Close()
}

// SetID names the fake (the master_id in SUBSCRIBED and the leader id in
// redirects from other fakes).
func (m *Master) SetID(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.id = id
}

// SetLeader makes the fake the leader, or a follower that redirects every
// call to leaderURL (empty: no leader known). Becoming a follower ends the
// live stream with the redirect, as a master that lost leadership does.
func (m *Master) SetLeader(leader bool, leaderID, leaderURL string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leader, m.leaderID, m.leaderURL = leader, leaderID, leaderURL
	if !leader && m.live != nil {
		m.live.end <- m.notLeaderLocked()
		m.live = nil
	}
}

// SetHeartbeat sets the interval announced in SUBSCRIBED and whether
// HEARTBEAT events are sent at all (false simulates a hung master).
func (m *Master) SetHeartbeat(interval time.Duration, send bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heartbeat, m.heartbeats = interval, send
}

// SetSubscribeError makes Subscribe fail with err (nil to clear).
func (m *Master) SetSubscribeError(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subscribeErr = err
}

// SetReconcileAnswer sets the statuses Reconcile returns (and sends as
// UPDATE events on the live stream).
func (m *Master) SetReconcileAnswer(st ...*agorav1.TaskStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconcileWith = st
}

// BlockCalls makes calls of method hang (as on a master that stopped
// answering) until release is called or the caller gives up. The calls are
// recorded before they block.
func (m *Master) BlockCalls(method string) (release func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan struct{})
	m.blocked[method] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			close(ch)
			if m.blocked[method] == ch {
				delete(m.blocked, method)
			}
		})
	}
}

// Send queues an event on the live stream.
func (m *Master) Send(ev *agorav1.SubscribeResponse) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live == nil {
		return errors.New("frameworktest: no live stream")
	}
	select {
	case m.live.events <- ev:
		return nil
	default:
		return errors.New("frameworktest: stream buffer full")
	}
}

// EndStream ends the live stream with err (nil ends it cleanly).
func (m *Master) EndStream(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live != nil {
		m.live.end <- err
		m.live = nil
	}
}

// Subscriptions returns the framework info of every Subscribe accepted so
// far, in order.
func (m *Master) Subscriptions() []*agorav1.FrameworkInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*agorav1.FrameworkInfo(nil), m.subs...)
}

// BatchedUpdates reports, for every Subscribe accepted so far in order,
// whether it asked for UPDATES events (SubscribeRequest.batched_updates).
func (m *Master) BatchedUpdates() []bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]bool(nil), m.batched...)
}

// StreamEncodings returns, for every Subscribe accepted so far in order,
// the compressions its client accepts for the stream
// (Connect-Accept-Encoding; "" for none).
func (m *Master) StreamEncodings() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.encodings...)
}

// Calls returns the recorded unary calls of method ("" for all).
func (m *Master) Calls(method string) []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Call
	for _, c := range m.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// WaitSubscriptions polls until n subscriptions were accepted and the last
// one is live.
func (m *Master) WaitSubscriptions(ctx context.Context, n int) error {
	return poll(ctx, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.subs) >= n && m.live != nil
	}, func() string { return fmt.Sprintf("%d subscriptions, want %d", len(m.Subscriptions()), n) })
}

// WaitCalls polls until at least n calls of method were recorded.
func (m *Master) WaitCalls(ctx context.Context, method string, n int) ([]Call, error) {
	var got []Call
	err := poll(ctx, func() bool {
		got = m.Calls(method)
		return len(got) >= n
	}, func() string { return fmt.Sprintf("%d %s calls, want %d", len(got), method, n) })
	return got, err
}

func poll(ctx context.Context, done func() bool, what func() string) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("frameworktest: %s: %w", what(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// OffersEvent wraps offers in an OFFERS event.
func OffersEvent(offers ...*agorav1.Offer) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Offers{Offers: &agorav1.Offers{Offers: offers}}}
}

// UpdateEvent wraps a status in an UPDATE event.
func UpdateEvent(st *agorav1.TaskStatus) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Update{Update: &agorav1.Update{Status: st}}}
}

// UpdatesEvent wraps statuses in one UPDATES event (for subscribers that
// asked for batched updates).
func UpdatesEvent(sts ...*agorav1.TaskStatus) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Updates{Updates: &agorav1.Updates{Statuses: sts}}}
}

// RescindEvent builds a RESCIND event.
func RescindEvent(offerID string) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Rescind{Rescind: &agorav1.Rescind{OfferId: offerID}}}
}

// FailureEvent builds a FAILURE event.
func FailureEvent(agentID string) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Failure{Failure: &agorav1.Failure{AgentId: agentID}}}
}

// InverseOffersEvent wraps inverse offers in an INVERSE_OFFERS event.
func InverseOffersEvent(ios ...*agorav1.InverseOffer) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_InverseOffers{InverseOffers: &agorav1.InverseOffers{InverseOffers: ios}}}
}

// ErrorEvent builds an ERROR event.
func ErrorEvent(msg string) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Error{Error: &agorav1.Error{Message: msg}}}
}

// NotLeaderError builds the error a follower answers with: Unavailable with
// a LeaderRedirect detail and the Agora-Leader header.
func NotLeaderError(leaderID, leaderURL string) *connect.Error {
	e := connect.NewError(connect.CodeUnavailable, errors.New("not the leader"))
	if d, err := connect.NewErrorDetail(&agorav1.LeaderRedirect{LeaderId: leaderID, LeaderAddress: leaderURL}); err == nil {
		e.AddDetail(d)
	}
	if leaderURL != "" {
		e.Meta().Set("Agora-Leader", leaderURL)
	}
	return e
}

func (m *Master) notLeaderLocked() error { return NotLeaderError(m.leaderID, m.leaderURL) }

type handler struct {
	agorav1connect.UnimplementedSchedulerServiceHandler
	m *Master
}

func (h *handler) Subscribe(ctx context.Context, req *connect.Request[agorav1.SubscribeRequest], stream *connect.ServerStream[agorav1.SubscribeResponse]) error {
	m := h.m
	m.mu.Lock()
	if !m.leader {
		err := m.notLeaderLocked()
		m.mu.Unlock()
		return err
	}
	if m.subscribeErr != nil {
		err := m.subscribeErr
		m.mu.Unlock()
		return err
	}
	info := proto.Clone(req.Msg.GetFrameworkInfo()).(*agorav1.FrameworkInfo)
	if info.GetId() == "" {
		m.nextID++
		info.Id = fmt.Sprintf("fw-%d", m.nextID)
	}
	if m.live != nil {
		m.live.end <- connect.NewError(connect.CodeFailedPrecondition, errors.New("replaced by a new subscription"))
	}
	ls := &liveStream{events: make(chan *agorav1.SubscribeResponse, 256), end: make(chan error, 1)}
	m.live = ls
	m.subs = append(m.subs, req.Msg.GetFrameworkInfo())
	m.batched = append(m.batched, req.Msg.GetBatchedUpdates())
	m.encodings = append(m.encodings, req.Header().Get("Connect-Accept-Encoding"))
	m.token = fmt.Sprintf("%s-token-%d", m.id, len(m.subs))
	m.issued[m.token] = true
	hb, sendHB := m.heartbeat, m.heartbeats
	first := &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Subscribed{Subscribed: &agorav1.Subscribed{
		FrameworkId: info.GetId(), HeartbeatIntervalSeconds: hb.Seconds(), StreamToken: m.token, MasterId: m.id,
	}}}
	m.mu.Unlock()
	if err := stream.Send(first); err != nil {
		return err
	}
	var tick <-chan time.Time
	if sendHB && hb > 0 {
		t := time.NewTicker(hb)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-ls.end:
			return err
		case ev := <-ls.events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-tick:
			if err := stream.Send(&agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Heartbeat{Heartbeat: &agorav1.Heartbeat{}}}); err != nil {
				return err
			}
		}
	}
}

// record checks leadership and the stream token, then records the call.
func (m *Master) record(method string, fc *agorav1.FrameworkCall, msg proto.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leader {
		return m.notLeaderLocked()
	}
	// A token this fake issued to a replaced stream is stale; tokens from
	// other fakes stand for ones a previous leader issued (in the real
	// master they live in Raft) and are accepted.
	if tok := fc.GetStreamToken(); tok != m.token && m.issued[tok] {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("stream token %q is not the live one", fc.GetStreamToken()))
	}
	m.calls = append(m.calls, Call{Method: method, Framework: fc, Request: proto.Clone(msg)})
	if f := m.failing[method]; f.n > 0 {
		f.n--
		m.failing[method] = f
		return f.err
	}
	return nil
}

// FailCalls makes the next n calls of method fail with err (after they are
// recorded).
func (m *Master) FailCalls(method string, n int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing == nil {
		m.failing = map[string]failing{}
	}
	m.failing[method] = failing{n: n, err: err}
}

// wait blocks while calls of method are blocked.
func (m *Master) wait(ctx context.Context, method string) error {
	m.mu.Lock()
	ch := m.blocked[method]
	m.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return connect.NewError(connect.CodeCanceled, ctx.Err())
	}
}

func (h *handler) Accept(ctx context.Context, req *connect.Request[agorav1.AcceptRequest]) (*connect.Response[agorav1.AcceptResponse], error) {
	if err := h.m.record("Accept", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "Accept"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.AcceptResponse{}), nil
}

func (h *handler) Decline(ctx context.Context, req *connect.Request[agorav1.DeclineRequest]) (*connect.Response[agorav1.DeclineResponse], error) {
	if err := h.m.record("Decline", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "Decline"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DeclineResponse{}), nil
}

func (h *handler) Revive(ctx context.Context, req *connect.Request[agorav1.ReviveRequest]) (*connect.Response[agorav1.ReviveResponse], error) {
	if err := h.m.record("Revive", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "Revive"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ReviveResponse{}), nil
}

func (h *handler) Demand(ctx context.Context, req *connect.Request[agorav1.DemandRequest]) (*connect.Response[agorav1.DemandResponse], error) {
	if err := h.m.record("Demand", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "Demand"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DemandResponse{}), nil
}

func (h *handler) Suppress(ctx context.Context, req *connect.Request[agorav1.SuppressRequest]) (*connect.Response[agorav1.SuppressResponse], error) {
	if err := h.m.record("Suppress", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "Suppress"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.SuppressResponse{}), nil
}

func (h *handler) Kill(ctx context.Context, req *connect.Request[agorav1.KillRequest]) (*connect.Response[agorav1.KillResponse], error) {
	if err := h.m.record("Kill", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "Kill"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.KillResponse{}), nil
}

func (h *handler) Acknowledge(ctx context.Context, req *connect.Request[agorav1.AcknowledgeRequest]) (*connect.Response[agorav1.AcknowledgeResponse], error) {
	if err := h.m.record("Acknowledge", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "Acknowledge"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.AcknowledgeResponse{}), nil
}

func (h *handler) Reconcile(ctx context.Context, req *connect.Request[agorav1.ReconcileRequest]) (*connect.Response[agorav1.ReconcileResponse], error) {
	m := h.m
	if err := m.record("Reconcile", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := m.wait(ctx, "Reconcile"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	answer := m.reconcileWith
	if m.live != nil {
		for _, st := range answer {
			select {
			case m.live.events <- UpdateEvent(st):
			default:
			}
		}
	}
	m.mu.Unlock()
	return connect.NewResponse(&agorav1.ReconcileResponse{Statuses: answer}), nil
}

func (h *handler) UpdateFramework(ctx context.Context, req *connect.Request[agorav1.UpdateFrameworkRequest]) (*connect.Response[agorav1.UpdateFrameworkResponse], error) {
	if err := h.m.record("UpdateFramework", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "UpdateFramework"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.UpdateFrameworkResponse{}), nil
}

func (h *handler) Teardown(ctx context.Context, req *connect.Request[agorav1.TeardownRequest]) (*connect.Response[agorav1.TeardownResponse], error) {
	m := h.m
	if err := m.record("Teardown", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := m.wait(ctx, "Teardown"); err != nil {
		return nil, err
	}
	m.EndStream(nil)
	return connect.NewResponse(&agorav1.TeardownResponse{}), nil
}

func (h *handler) AnswerInverseOffer(ctx context.Context, req *connect.Request[agorav1.AnswerInverseOfferRequest]) (*connect.Response[agorav1.AnswerInverseOfferResponse], error) {
	if err := h.m.record("AnswerInverseOffer", req.Msg.GetCall(), req.Msg); err != nil {
		return nil, err
	}
	if err := h.m.wait(ctx, "AnswerInverseOffer"); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.AnswerInverseOfferResponse{}), nil
}
