package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/framework/frameworktest"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// recorder is a Scheduler that logs every event as a line.
type recorder struct {
	mu       sync.Mutex
	lines    []string
	onOffers func(d Driver, offers []*agorav1.Offer)
	onUpdate func(d Driver, st *agorav1.TaskStatus)
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) Subscribed(_ Driver, id string, resubscribed bool) {
	r.add("subscribed %s resubscribed=%v", id, resubscribed)
}

func (r *recorder) Offers(d Driver, offers []*agorav1.Offer) {
	for _, o := range offers {
		r.add("offer %s", o.GetId())
	}
	if r.onOffers != nil {
		r.onOffers(d, offers)
	}
}
func (r *recorder) Rescind(_ Driver, id string) { r.add("rescind %s", id) }
func (r *recorder) Update(d Driver, st *agorav1.TaskStatus) {
	r.add("update %s %s", st.GetTaskId(), StateName(st.GetState()))
	if r.onUpdate != nil {
		r.onUpdate(d, st)
	}
}
func (r *recorder) Failure(_ Driver, id string) { r.add("failure %s", id) }
func (r *recorder) Error(_ Driver, msg string)  { r.add("error %s", msg) }

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// waitLine polls until a line equal to want was recorded.
func (r *recorder) waitLine(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range r.snapshot() {
			if l == want {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no event %q; got %q", want, r.snapshot())
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startRun runs the SDK against masters and returns a channel with Run's
// result and a cancel func that stops it.
func startRun(t *testing.T, cfg Config, s Scheduler) (<-chan error, context.CancelFunc) {
	t.Helper()
	if cfg.Info == nil {
		cfg.Info = &agorav1.FrameworkInfo{Name: "test"}
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 5 * time.Millisecond
		cfg.MaxBackoff = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- Run(ctx, cfg, s)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return done, cancel
}

func TestRunDeliversEventsAcksAndReconciles(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	rec := &recorder{}
	rec.onOffers = func(d Driver, offers []*agorav1.Offer) {
		task := Task("t1", offers[0].GetAgentId(), "sleep 1", Scalar("cpus", 0.1))
		if err := d.Accept(context.Background(), []string{offers[0].GetId()}, []*agorav1.Operation{Launch(task)}, nil); err != nil {
			rec.add("accept error %v", err)
		}
	}
	_, _ = startRun(t, Config{Masters: []string{strings.TrimPrefix(m.URL(), "http://")}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=false")
	if _, err := m.WaitCalls(ctx, "Reconcile", 1); err != nil {
		t.Fatalf("no implicit reconciliation: %v", err)
	}
	if err := m.Send(frameworktest.OffersEvent(&agorav1.Offer{Id: "o1", AgentId: "a1"})); err != nil {
		t.Fatal(err)
	}
	accepts, err := m.WaitCalls(ctx, "Accept", 1)
	if err != nil {
		t.Fatal(err)
	}
	acc := accepts[0].Request.(*agorav1.AcceptRequest)
	if got := acc.GetOfferIds(); len(got) != 1 || got[0] != "o1" {
		t.Fatalf("accepted offers %v, want [o1]", got)
	}
	if fc := accepts[0].Framework; fc.GetFrameworkId() != "fw-1" || fc.GetStreamToken() != "fake-token-1" {
		t.Fatalf("accept carried identity %v", fc)
	}
	st := &agorav1.TaskStatus{TaskId: "t1", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u1"}
	if err := m.Send(frameworktest.UpdateEvent(st)); err != nil {
		t.Fatal(err)
	}
	// A reconciliation answer has no uuid and must not be acknowledged.
	if err := m.Send(frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: "t0", State: agorav1.TaskState_TASK_STATE_LOST})); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.RescindEvent("o2"))
	_ = m.Send(frameworktest.FailureEvent("a9"))
	rec.waitLine(t, "failure a9")
	acks, err := m.WaitCalls(ctx, "Acknowledge", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Automatic acknowledgements go out in batches (the list form).
	req := acks[0].Request.(*agorav1.AcknowledgeRequest)
	if as := req.GetAcknowledgements(); len(as) != 1 || as[0].GetUuid() != "u1" || as[0].GetTaskId() != "t1" || as[0].GetAgentId() != "a1" || req.GetUuid() != "" {
		t.Fatalf("acknowledged %v", req)
	}
	if n := len(m.Calls("Acknowledge")); n != 1 {
		t.Fatalf("%d acknowledgements, want 1", n)
	}
	want := []string{"subscribed fw-1 resubscribed=false", "offer o1", "update t1 RUNNING", "update t0 LOST", "rescind o2", "failure a9"}
	if got := rec.snapshot(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
}

func TestRunDisableAutoAck(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{m.URL()}, DisableAutoAck: true}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: "t1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u1"}))
	_ = m.Send(frameworktest.FailureEvent("a1"))
	rec.waitLine(t, "failure a1")
	if n := len(m.Calls("Acknowledge")); n != 0 {
		t.Fatalf("%d acknowledgements with auto-ack disabled", n)
	}
}

func TestRunFollowsRedirectToLeader(t *testing.T) {
	ctx := testCtx(t)
	leader, follower := frameworktest.NewMaster(), frameworktest.NewMaster()
	defer leader.Close()
	defer follower.Close()
	leader.SetID("m2")
	follower.SetLeader(false, "m2", leader.URL())
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{follower.URL()}}, rec)
	if err := leader.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=false")
	if n := len(follower.Subscriptions()); n != 0 {
		t.Fatalf("follower accepted %d subscriptions", n)
	}
}

func TestRunResubscribesAfterLeaderChange(t *testing.T) {
	ctx := testCtx(t)
	a, b := frameworktest.NewMaster(), frameworktest.NewMaster()
	defer a.Close()
	defer b.Close()
	a.SetID("m1")
	b.SetID("m2")
	b.SetLeader(false, "m1", a.URL())
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{a.URL(), b.URL()}}, rec)
	if err := a.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=false")

	// Leadership moves from a to b: a ends the stream with a redirect.
	b.SetLeader(true, "", "")
	a.SetLeader(false, "m2", b.URL())
	if err := b.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=true")
	if id := b.Subscriptions()[0].GetId(); id != "fw-1" {
		t.Fatalf("resubscribed with id %q, want fw-1", id)
	}
	if _, err := b.WaitCalls(ctx, "Reconcile", 1); err != nil {
		t.Fatalf("no implicit reconciliation after resubscribing: %v", err)
	}
}

func TestRunReconnectsAfterStreamError(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WaitCalls(ctx, "Reconcile", 1); err != nil {
		t.Fatal(err)
	}
	m.EndStream(connect.NewError(connect.CodeUnavailable, errors.New("shutting down")))
	if err := m.WaitSubscriptions(ctx, 2); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=true")
	// Calls after the reconnection carry the new stream token.
	if _, err := m.WaitCalls(ctx, "Reconcile", 2); err != nil {
		t.Fatal(err)
	}
	if tok := m.Calls("Reconcile")[1].Framework.GetStreamToken(); tok != "fake-token-2" {
		t.Fatalf("call after reconnect carried token %q, want fake-token-2", tok)
	}
}

func TestRunResubscribesAfterMissedHeartbeats(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	m.SetHeartbeat(20*time.Millisecond, false) // a hung master: no heartbeats
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 2); err != nil {
		t.Fatalf("no resubscription after missed heartbeats: %v", err)
	}
}

func TestRunKeepsStreamWithHeartbeats(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	m.SetHeartbeat(20*time.Millisecond, true)
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Several watchdog windows pass while events and heartbeats flow, and
	// the framework stays on its first stream.
	for i := range 20 {
		_ = m.Send(frameworktest.FailureEvent(fmt.Sprint(i)))
		rec.waitLine(t, fmt.Sprintf("failure %d", i))
		if err := pollFor(ctx, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.Subscriptions()); n != 1 {
		t.Fatalf("%d subscriptions while heartbeats flowed, want 1", n)
	}
}

// pollFor lets d pass (a pacing step between sends, not synchronisation).
func pollFor(ctx context.Context, d time.Duration) error {
	if !client.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

func TestRunFatalSubscribeError(t *testing.T) {
	m := frameworktest.NewMaster()
	defer m.Close()
	m.SetSubscribeError(connect.NewError(connect.CodePermissionDenied, errors.New("principal may not use role web")))
	done, _ := startRun(t, Config{Masters: []string{m.URL()}}, &recorder{})
	select {
	case err := <-done:
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("Run returned %v, want PermissionDenied", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept retrying a refused subscription")
	}
}

func TestRunErrorEventEndsRun(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	rec := &recorder{}
	done, _ := startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.ErrorEvent("framework fw-1 torn down by operator"))
	select {
	case err := <-done:
		if !errors.Is(err, ErrTornDown) {
			t.Fatalf("Run returned %v, want ErrTornDown", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after an ERROR event")
	}
	rec.waitLine(t, "error framework fw-1 torn down by operator")
}

func TestTeardownEndsRun(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	rec := &recorder{}
	rec.onOffers = func(d Driver, _ []*agorav1.Offer) {
		if err := d.Teardown(context.Background()); err != nil {
			rec.add("teardown error %v", err)
		}
	}
	done, _ := startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.OffersEvent(&agorav1.Offer{Id: "o1"}))
	select {
	case err := <-done:
		if !errors.Is(err, ErrTornDown) {
			t.Fatalf("Run returned %v, want ErrTornDown", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after Teardown")
	}
	if n := len(m.Calls("Teardown")); n != 1 {
		t.Fatalf("%d teardown calls", n)
	}
}

func TestRunReturnsNilOnCancel(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	done, cancel := startRun(t, Config{Masters: []string{m.URL()}}, &recorder{})
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
}

// A call from another goroutine made while the leader moves waits for the
// resubscription and lands at the new leader with the new token.
func TestDriverCallRetriesAcrossLeaderChange(t *testing.T) {
	ctx := testCtx(t)
	a, b := frameworktest.NewMaster(), frameworktest.NewMaster()
	defer a.Close()
	defer b.Close()
	b.SetLeader(false, "m1", a.URL())
	drv := make(chan Driver, 1)
	rec := &recorder{}
	rec.onOffers = func(d Driver, _ []*agorav1.Offer) { drv <- d }
	_, _ = startRun(t, Config{Masters: []string{a.URL(), b.URL()}}, rec)
	if err := a.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = a.Send(frameworktest.OffersEvent(&agorav1.Offer{Id: "o1"}))
	d := <-drv

	a.SetLeader(false, "", "") // no leader known for a while
	b.SetLeader(false, "", "")
	errc := make(chan error, 1)
	go func() { errc <- d.Decline(ctx, []string{"o1"}, nil) }()
	b.SetLeader(true, "", "")
	a.SetLeader(false, "m2", b.URL())
	if err := <-errc; err != nil {
		t.Fatalf("decline across a leader change: %v", err)
	}
	calls := b.Calls("Decline")
	if len(calls) != 1 {
		t.Fatalf("new leader saw %d declines, want 1", len(calls))
	}
	if d.FrameworkID() != "fw-1" {
		t.Fatalf("framework id %q", d.FrameworkID())
	}
}

func TestDriverAfterRunReturns(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	drv := make(chan Driver, 1)
	rec := &recorder{}
	rec.onOffers = func(d Driver, _ []*agorav1.Offer) { drv <- d }
	done, cancel := startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.OffersEvent(&agorav1.Offer{Id: "o1"}))
	d := <-drv
	cancel()
	<-done
	if err := d.Revive(ctx); !errors.Is(err, ErrStopped) {
		t.Fatalf("call after Run returned: %v, want ErrStopped", err)
	}
}

// TestCallInCallbackEndsWithRun: a Driver call made from a Scheduler
// method with a context that never ends, against a master that stopped
// answering calls, is cut short when Run's ctx ends, so Run returns instead of
// waiting out the call's retries (found by the priority benchmark: its
// batch scheduler's Decline(context.Background()) against a stopped
// cluster held the benchmark for minutes).
func TestCallInCallbackEndsWithRun(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	entered, gate := make(chan struct{}), make(chan struct{})
	declined := make(chan error, 1)
	rec := &recorder{}
	rec.onOffers = func(d Driver, _ []*agorav1.Offer) {
		close(entered)
		<-gate
		declined <- d.Decline(context.Background(), []string{"o1"}, nil)
	}
	done, cancel := startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.OffersEvent(&agorav1.Offer{Id: "o1"}))
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("no offers delivered")
	}
	release := m.BlockCalls("Decline") // a master that stopped answering calls
	defer release()
	close(gate)
	if _, err := m.WaitCalls(ctx, "Decline", 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-declined:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("decline in flight when Run ended: %v, want ErrStopped", err)
		}
	case <-ctx.Done():
		t.Fatal("a decline in flight outlived Run")
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
}

func TestConfigValidation(t *testing.T) {
	ctx := context.Background()
	if err := Run(ctx, Config{Info: &agorav1.FrameworkInfo{}}, &recorder{}); !errors.Is(err, ErrNoMasters) {
		t.Fatalf("no masters: %v", err)
	}
	if err := Run(ctx, Config{Masters: []string{"x:1"}}, &recorder{}); err == nil {
		t.Fatal("nil info accepted")
	}
	if err := Run(ctx, Config{Masters: []string{"x:1"}, Info: &agorav1.FrameworkInfo{}}, nil); err == nil {
		t.Fatal("nil scheduler accepted")
	}
}

// A master that stops answering must not hold a Scheduler method forever:
// once heartbeats are missed, the call in flight fails with Unavailable and
// the SDK resubscribes.
func TestHungMasterReleasesCallInHandler(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	release := m.BlockCalls("Accept")
	defer release()
	m.SetHeartbeat(100*time.Millisecond, false) // announced, never sent: a hung master
	rec := &recorder{}
	rec.onOffers = func(d Driver, offers []*agorav1.Offer) {
		err := d.Accept(context.Background(), []string{offers[0].GetId()}, nil, nil)
		rec.add("accept code %v", connect.CodeOf(err))
	}
	_, _ = startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_ = m.Send(frameworktest.OffersEvent(&agorav1.Offer{Id: "o1"}))
	if _, err := m.WaitCalls(ctx, "Accept", 1); err != nil {
		t.Fatal(err)
	}
	// After 5 silent intervals the watchdog releases the Accept.
	rec.waitLine(t, "accept code unavailable")
	if err := m.WaitSubscriptions(ctx, 2); err != nil {
		t.Fatal(err)
	}
}

// inverseRecorder is a recorder that also hears inverse offers and
// accepts (agent a1) or declines (others) each.
type inverseRecorder struct{ recorder }

func (r *inverseRecorder) InverseOffers(d Driver, ios []*agorav1.InverseOffer) {
	for _, io := range ios {
		r.add("inverse-offer %s deadline=%d", io.GetAgentId(), io.GetDeadline().GetSeconds())
		var err error
		if io.GetAgentId() == "a1" {
			err = d.AcceptInverseOffer(context.Background(), io.GetAgentId())
		} else {
			err = d.DeclineInverseOffer(context.Background(), io.GetAgentId())
		}
		if err != nil {
			r.add("answer error %v", err)
		}
	}
}

func TestInverseOffers(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	rec := &inverseRecorder{}
	_, _ = startRun(t, Config{Masters: []string{strings.TrimPrefix(m.URL(), "http://")}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=false")
	if err := m.Send(frameworktest.InverseOffersEvent(
		&agorav1.InverseOffer{AgentId: "a1", FrameworkId: "fw-1", Deadline: &timestamppb.Timestamp{Seconds: 100}},
		&agorav1.InverseOffer{AgentId: "a2", FrameworkId: "fw-1"},
	)); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "inverse-offer a1 deadline=100")
	rec.waitLine(t, "inverse-offer a2 deadline=0")
	calls, err := m.WaitCalls(ctx, "AnswerInverseOffer", 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		agent  string
		accept bool
	}{{"a1", true}, {"a2", false}} {
		req := calls[i].Request.(*agorav1.AnswerInverseOfferRequest)
		if req.GetAgentId() != want.agent || req.GetAccept() != want.accept || calls[i].Framework.GetFrameworkId() != "fw-1" {
			t.Errorf("answer %d = %v (framework %v), want agent %s accept %v", i, req, calls[i].Framework, want.agent, want.accept)
		}
	}

	// A Scheduler without InverseOffers: the event is logged, not answered,
	// and later events still arrive.
	m2 := frameworktest.NewMaster()
	defer m2.Close()
	plain := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{strings.TrimPrefix(m2.URL(), "http://")}}, plain)
	if err := m2.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	plain.waitLine(t, "subscribed fw-1 resubscribed=false")
	if err := m2.Send(frameworktest.InverseOffersEvent(&agorav1.InverseOffer{AgentId: "a1"})); err != nil {
		t.Fatal(err)
	}
	if err := m2.Send(frameworktest.RescindEvent("o9")); err != nil {
		t.Fatal(err)
	}
	plain.waitLine(t, "rescind o9")
	if cs := m2.Calls("AnswerInverseOffer"); len(cs) > 0 {
		t.Fatalf("a scheduler without InverseOffers answered: %v", cs)
	}
}
