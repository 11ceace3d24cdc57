package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// fakeMaster answers every call it implements with answer(n) for its n-th
// call (from 1): nil is a success, anything else the error returned.
type fakeMaster struct {
	agorav1connect.UnimplementedOperatorServiceHandler
	agorav1connect.UnimplementedAgentServiceHandler
	agorav1connect.UnimplementedSchedulerServiceHandler
	answer  func(n int32) error
	delay   time.Duration // before answering GetAssignments
	leader  string        // LeaderHeader of GetAssignments answers (a follower's)
	masters []string      // listed by GetStatus
	calls   atomic.Int32
	// unreachable is the UnreachableHeader of the last Subscribe.
	unreachable atomic.Value
}

func (f *fakeMaster) reply() error {
	n := f.calls.Add(1)
	if f.answer == nil {
		return nil
	}
	return f.answer(n)
}

func (f *fakeMaster) SetRole(context.Context, *connect.Request[agorav1.SetRoleRequest]) (*connect.Response[agorav1.SetRoleResponse], error) {
	if err := f.reply(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.SetRoleResponse{Index: 7}), nil
}

func (f *fakeMaster) DeleteRole(context.Context, *connect.Request[agorav1.DeleteRoleRequest]) (*connect.Response[agorav1.DeleteRoleResponse], error) {
	if err := f.reply(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DeleteRoleResponse{Index: 8}), nil
}

func (f *fakeMaster) GetStatus(context.Context, *connect.Request[agorav1.GetStatusRequest]) (*connect.Response[agorav1.GetStatusResponse], error) {
	if err := f.reply(); err != nil {
		return nil, err
	}
	resp := &agorav1.GetStatusResponse{}
	for _, m := range f.masters {
		resp.Masters = append(resp.Masters, &agorav1.Master{HttpAddress: m})
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeMaster) GetAssignments(ctx context.Context, _ *connect.Request[agorav1.GetAssignmentsRequest]) (*connect.Response[agorav1.GetAssignmentsResponse], error) {
	if err := f.reply(); err != nil {
		return nil, err
	}
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return nil, connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}
	resp := connect.NewResponse(&agorav1.GetAssignmentsResponse{Index: 9, Known: true})
	if f.leader != "" {
		resp.Header().Set(LeaderHeader, f.leader)
	}
	return resp, nil
}

func (f *fakeMaster) Subscribe(_ context.Context, req *connect.Request[agorav1.SubscribeRequest], out *connect.ServerStream[agorav1.SubscribeResponse]) error {
	f.unreachable.Store(req.Header().Get(UnreachableHeader))
	if err := f.reply(); err != nil {
		return err
	}
	return out.Send(&agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Heartbeat{Heartbeat: &agorav1.Heartbeat{}}})
}

func redirectTo(leaderURL string, headerOnly bool) error {
	e := connect.NewError(connect.CodeUnavailable, errors.New("not the leader"))
	if !headerOnly {
		d, err := connect.NewErrorDetail(&agorav1.LeaderRedirect{LeaderId: "m1", LeaderAddress: leaderURL})
		if err != nil {
			panic(err)
		}
		e.AddDetail(d)
	}
	e.Meta().Set(LeaderHeader, leaderURL)
	return e
}

func noLeader() *connect.Error {
	return connect.NewError(connect.CodeUnavailable, errors.New("no leader is known"))
}

// masterHandler is what serve serves: a fakeMaster, or one that embeds it.
type masterHandler interface {
	agorav1connect.OperatorServiceHandler
	agorav1connect.AgentServiceHandler
	agorav1connect.SchedulerServiceHandler
}

func serve(t *testing.T, f masterHandler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(agorav1connect.NewOperatorServiceHandler(f))
	mux.Handle(agorav1connect.NewAgentServiceHandler(f))
	mux.Handle(agorav1connect.NewSchedulerServiceHandler(f))
	s := httptest.NewUnstartedServer(mux)
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// silentMaster is a listening socket that nobody accepts on: the kernel
// completes connections and takes the request, and no answer ever comes,
// as from a SIGSTOPped master.
func silentMaster(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String()
}

// refusingMaster is an address where connections are refused.
func refusingMaster(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func setRole(c *Client) (uint64, error) {
	resp, err := c.Operator.SetRole(context.Background(), connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "a"}}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetIndex(), nil
}

// statusAsWrite calls GetStatus, a call the client always retries, and
// answers 7 like a successful setRole: the tests of passing over silent
// masters use it, since SetRole is not repeated after an unknown outcome.
func statusAsWrite(c *Client) (uint64, error) {
	if _, err := c.Operator.GetStatus(context.Background(), connect.NewRequest(&agorav1.GetStatusRequest{})); err != nil {
		return 0, err
	}
	return 7, nil
}

func deleteRole(c *Client) (uint64, error) {
	resp, err := c.Operator.DeleteRole(context.Background(), connect.NewRequest(&agorav1.DeleteRoleRequest{Name: "a"}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetIndex(), nil
}

// fast are options for tests: short attempts and a bound well under the
// test's own timeout.
func fast(opts ...Option) []Option {
	return append([]Option{WithAttemptTimeout(300 * time.Millisecond), WithCallTimeout(5 * time.Second),
		WithBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)
}

func TestFollowsRedirectAndSticks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		headerOnly bool
		grpc       bool
	}{{"detail", false, false}, {"header", true, false}, {"grpc", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			leader := &fakeMaster{}
			ls := serve(t, leader)
			follower := &fakeMaster{answer: func(int32) error { return redirectTo(ls.URL, tc.headerOnly) }}
			fs := serve(t, follower)
			opts := fast()
			if tc.grpc {
				opts = append(opts, WithGRPC())
			}
			c := New(fs.URL, opts...)
			idx, err := setRole(c)
			if err != nil || idx != 7 {
				t.Fatalf("SetRole through follower = %d, %v; want 7, nil", idx, err)
			}
			if c.Target() != ls.URL {
				t.Fatalf("target %s, want leader %s", c.Target(), ls.URL)
			}
			if _, err := setRole(c); err != nil {
				t.Fatal(err)
			}
			if n := follower.calls.Load(); n != 1 {
				t.Fatalf("follower called %d times, want 1 (later calls go to the leader)", n)
			}
			if got := c.Masters(); len(got) != 2 {
				t.Fatalf("known masters %v, want the follower and the leader it named", got)
			}
		})
	}
}

// TestReadFromFollowerMovesTargetToLeader: a follower that serves a read
// itself names the leader in its answer; the client's next call, a write,
// goes straight to the leader instead of to the follower that answered
// last (which would refuse it and redirect).
func TestReadFromFollowerMovesTargetToLeader(t *testing.T) {
	leader := &fakeMaster{}
	ls := serve(t, leader)
	follower := &fakeMaster{leader: ls.URL, answer: func(n int32) error {
		if n > 1 { // only the read is served here
			return redirectTo(ls.URL, true)
		}
		return nil
	}}
	fs := serve(t, follower)
	c := New(fs.URL, fast()...)
	if _, err := c.Agent.GetAssignments(context.Background(), connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a"})); err != nil {
		t.Fatal(err)
	}
	if c.Target() != ls.URL {
		t.Fatalf("target after the follower's answer %s, want the leader it named %s", c.Target(), ls.URL)
	}
	if _, err := setRole(c); err != nil {
		t.Fatal(err)
	}
	if n := follower.calls.Load(); n != 1 {
		t.Fatalf("follower called %d times, want 1 (the write went to the leader)", n)
	}
	// A header naming the master that answered, or nothing, leaves the
	// target on it.
	self := &fakeMaster{}
	ss := serve(t, self)
	self.leader = ss.URL
	c2 := New(ss.URL, fast()...)
	if _, err := c2.Agent.GetAssignments(context.Background(), connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a"})); err != nil {
		t.Fatal(err)
	}
	if c2.Target() != ss.URL {
		t.Fatalf("target %s, want %s", c2.Target(), ss.URL)
	}
}

func TestRedirectLoopIsBounded(t *testing.T) {
	a, b := &fakeMaster{}, &fakeMaster{}
	as, bs := serve(t, a), serve(t, b)
	a.answer = func(int32) error { return redirectTo(bs.URL, false) }
	b.answer = func(int32) error { return redirectTo(as.URL, false) }
	start := time.Now()
	_, err := setRole(New(as.URL, fast(WithMaxRedirects(3))...))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("err %v, want Unavailable", err)
	}
	if total := a.calls.Load() + b.calls.Load(); total != 4 {
		t.Fatalf("%d calls, want 4 (the first and 3 redirects)", total)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("redirect loop took %s", d)
	}
}

// A master that knows no leader is asked again (after the others) until
// one is elected.
func TestNoLeaderIsRetried(t *testing.T) {
	f := &fakeMaster{answer: func(n int32) error {
		if n < 4 {
			return noLeader()
		}
		return nil
	}}
	s := serve(t, f)
	if idx, err := setRole(New(s.URL, fast()...)); err != nil || idx != 7 {
		t.Fatalf("SetRole = %d, %v; want success on the 4th attempt", idx, err)
	}
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("%d calls, want 4", n)
	}
}

func TestCallTimeoutBoundsRetries(t *testing.T) {
	for name, addr := range map[string]func(*testing.T) string{
		"no leader": func(t *testing.T) string {
			return serve(t, &fakeMaster{answer: func(int32) error { return noLeader() }}).URL
		},
		"silent": silentMaster,
	} {
		t.Run(name, func(t *testing.T) {
			c := New(addr(t), fast(WithCallTimeout(time.Second))...)
			start := time.Now()
			_, err := statusAsWrite(c)
			d := time.Since(start)
			if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
				t.Fatalf("err %v, want DeadlineExceeded", err)
			}
			if d < time.Second || d > 3*time.Second {
				t.Fatalf("returned after %s, want about the 1s bound", d)
			}
		})
	}
}

// A master that does not answer is given up after the attempt deadline;
// the next known one answers, and later calls skip the silent one.
func TestSilentMasterIsSkipped(t *testing.T) {
	good := &fakeMaster{}
	gs := serve(t, good)
	silent := silentMaster(t)
	c := New(silent+","+gs.URL, fast()...)
	start := time.Now()
	idx, err := statusAsWrite(c)
	d := time.Since(start)
	if err != nil || idx != 7 {
		t.Fatalf("SetRole = %d, %v", idx, err)
	}
	if d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("took %s, want the 300ms attempt deadline and a little", d)
	}
	if c.Target() != gs.URL {
		t.Fatalf("target %s, want %s", c.Target(), gs.URL)
	}
	start = time.Now()
	if _, err := statusAsWrite(c); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= 300*time.Millisecond {
		t.Fatalf("second call took %s: it waited on the silent master again", d)
	}
}

// The paused-leader case: a follower names a leader that does not answer;
// once a new leader is elected the follower names it, and the call
// succeeds without going back to the silent one.
func TestRedirectToSilentLeader(t *testing.T) {
	silent := silentMaster(t)
	newLeader := &fakeMaster{}
	ns := serve(t, newLeader)
	follower := &fakeMaster{}
	follower.answer = func(n int32) error {
		if n == 1 {
			return redirectTo(silent, false)
		}
		return redirectTo(ns.URL, false)
	}
	fs := serve(t, follower)
	start := time.Now()
	idx, err := statusAsWrite(New(fs.URL, fast()...))
	d := time.Since(start)
	if err != nil || idx != 7 {
		t.Fatalf("SetRole = %d, %v", idx, err)
	}
	if d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("took %s, want one 300ms attempt deadline and a little", d)
	}
	if n := follower.calls.Load(); n != 2 {
		t.Fatalf("follower asked %d times, want 2", n)
	}
}

func TestNonRetryableCodesReturnAtOnce(t *testing.T) {
	for _, code := range []connect.Code{connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodePermissionDenied,
		connect.CodeFailedPrecondition, connect.CodeAlreadyExists, connect.CodeResourceExhausted} {
		t.Run(code.String(), func(t *testing.T) {
			first := &fakeMaster{answer: func(int32) error { return connect.NewError(code, errors.New("no")) }}
			other := &fakeMaster{}
			c := New(serve(t, first).URL+","+serve(t, other).URL, fast()...)
			_, err := setRole(c)
			if connect.CodeOf(err) != code {
				t.Fatalf("err %v, want %v", err, code)
			}
			if n, m := first.calls.Load(), other.calls.Load(); n != 1 || m != 0 {
				t.Fatalf("calls %d and %d, want 1 and 0", n, m)
			}
		})
	}
}

// A write that is not safe to repeat is not retried once it may have been
// applied, and is retried when it certainly was not; one that is safe to
// repeat is retried in both cases.
func TestWriteRetryFollowsPolicy(t *testing.T) {
	outcomeUnknownAnswer := func(int32) error {
		e := noLeader()
		e.Meta().Set(OutcomeHeader, "unknown")
		return e
	}
	for _, tc := range []struct {
		name      string
		first     func(t *testing.T) string
		deleteOK  bool // DeleteRole (RetryIfNotApplied) reaches the second master
		unknownOK bool
	}{
		{"never sent (refused)", refusingMaster, true, false},
		{"follower without leader", func(t *testing.T) string {
			return serve(t, &fakeMaster{answer: func(int32) error { return noLeader() }}).URL
		}, true, false},
		{"no answer after sending", silentMaster, false, true},
		{"leadership lost in flight", func(t *testing.T) string { return serve(t, &fakeMaster{answer: outcomeUnknownAnswer}).URL }, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, grpc := range []bool{false, true} {
				good := &fakeMaster{}
				opts := fast()
				if grpc {
					opts = append(opts, WithGRPC())
				}
				addrs := tc.first(t) + "," + serve(t, good).URL
				idx, err := deleteRole(New(addrs, opts...))
				switch {
				case tc.deleteOK && (err != nil || idx != 8):
					t.Fatalf("grpc=%v DeleteRole = %d, %v; want it retried at the second master", grpc, idx, err)
				case !tc.deleteOK && !errors.Is(err, ErrOutcomeUnknown):
					t.Fatalf("grpc=%v DeleteRole err %v, want ErrOutcomeUnknown", grpc, err)
				case !tc.deleteOK && good.calls.Load() != 0:
					t.Fatalf("grpc=%v DeleteRole retried after an unknown outcome", grpc)
				}
				// SetRole answers like DeleteRole: a duplicate after a
				// concurrent SetRole would undo it.
				good.calls.Store(0)
				sidx, serr := setRole(New(addrs, opts...))
				switch {
				case tc.deleteOK && (serr != nil || sidx != 7):
					t.Fatalf("grpc=%v SetRole = %d, %v; want it retried at the second master", grpc, sidx, serr)
				case !tc.deleteOK && !errors.Is(serr, ErrOutcomeUnknown):
					t.Fatalf("grpc=%v SetRole err %v, want ErrOutcomeUnknown", grpc, serr)
				}
			}
		})
	}
}

func TestLongPollGetsItsWait(t *testing.T) {
	f := &fakeMaster{delay: 600 * time.Millisecond}
	c := New(serve(t, f).URL, fast(WithCallTimeout(200*time.Millisecond))...)
	resp, err := c.Agent.GetAssignments(context.Background(), connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a", WaitSeconds: 0.5}))
	if err != nil || resp.Msg.GetIndex() != 9 {
		t.Fatalf("GetAssignments = %v, %v; want the answer after 600ms (300ms attempt + 500ms wait)", resp, err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
}

func TestStreamOpenTimeout(t *testing.T) {
	silent := silentMaster(t)
	good := &fakeMaster{}
	gs := serve(t, good)
	c := New(silent+","+gs.URL, fast(WithStreamOpenTimeout(300*time.Millisecond))...)
	start := time.Now()
	// With Connect, opening the stream already waits for the master; with
	// gRPC the first Receive does.
	stream, err := c.Scheduler.Subscribe(context.Background(), connect.NewRequest(&agorav1.SubscribeRequest{}))
	if err == nil {
		if stream.Receive() {
			t.Fatal("a silent master sent a message")
		}
		err = stream.Err()
		stream.Close()
	}
	d := time.Since(start)
	if connect.CodeOf(err) != connect.CodeUnavailable || d > 2*time.Second {
		t.Fatalf("stream ended after %s with %v, want Unavailable after 300ms", d, err)
	}
	if c.Target() != gs.URL {
		t.Fatalf("target %s after the silent stream, want %s", c.Target(), gs.URL)
	}
	stream, err = c.Scheduler.Subscribe(context.Background(), connect.NewRequest(&agorav1.SubscribeRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatalf("second stream: %v", stream.Err())
	}
}

func TestStreamEndingWithRedirectMovesTarget(t *testing.T) {
	leader := &fakeMaster{}
	ls := serve(t, leader)
	follower := &fakeMaster{answer: func(int32) error { return redirectTo(ls.URL, false) }}
	fs := serve(t, follower)
	c := New(fs.URL, fast()...)
	stream, err := c.Scheduler.Subscribe(context.Background(), connect.NewRequest(&agorav1.SubscribeRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if stream.Receive() {
		t.Fatal("follower streamed")
	}
	if _, addr, ok := LeaderFromError(stream.Err()); !ok || addr != ls.URL {
		t.Fatalf("stream error %v, want a redirect to %s", stream.Err(), ls.URL)
	}
	stream.Close()
	if c.Target() != ls.URL {
		t.Fatalf("target %s, want the leader %s", c.Target(), ls.URL)
	}
}

func TestLearnsMastersFromStatus(t *testing.T) {
	f := &fakeMaster{masters: []string{"127.0.0.1:1", "http://127.0.0.1:2/"}}
	s := serve(t, f)
	c := New(s.URL, fast()...)
	if _, err := c.Operator.GetStatus(context.Background(), connect.NewRequest(&agorav1.GetStatusRequest{})); err != nil {
		t.Fatal(err)
	}
	got := c.Masters()
	want := []string{s.URL, "http://127.0.0.1:1", "http://127.0.0.1:2"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("masters %v, want %v", got, want)
	}
}

func TestNoMasters(t *testing.T) {
	_, err := setRole(New("", fast()...))
	if !errors.Is(err, ErrNoMasters) || connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("err %v, want Unavailable ErrNoMasters", err)
	}
}

// Every unary procedure has a policy decided on purpose, not the default.
func TestEveryProcedureHasAPolicy(t *testing.T) {
	for _, fd := range []protoreflect.FileDescriptor{agorav1.File_agora_v1_operator_proto,
		agorav1.File_agora_v1_scheduler_proto, agorav1.File_agora_v1_agent_proto} {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				if md.IsStreamingServer() || md.IsStreamingClient() { // streams are not retried
					continue
				}
				proc := "/" + string(sd.FullName()) + "/" + string(md.Name())
				if _, ok := policies[proc]; !ok {
					t.Errorf("%s has no retry policy", proc)
				}
			}
		}
	}
	if got := PolicyOf("/agora.v1.OperatorService/SomethingNew"); got != RetryIfNotApplied {
		t.Errorf("unknown procedure: %v, want %v", got, RetryIfNotApplied)
	}
}

func TestLeaderFromError(t *testing.T) {
	headerOnly := connect.NewError(connect.CodeUnavailable, errors.New("not the leader"))
	headerOnly.Meta().Set(LeaderHeader, "127.0.0.1:7102")
	for _, tc := range []struct {
		name           string
		err            error
		wantID, wantAd string
		wantOK         bool
	}{
		{"detail", redirectTo("http://127.0.0.1:7102", false), "m1", "http://127.0.0.1:7102", true},
		{"wrapped detail", fmt.Errorf("call: %w", redirectTo("http://127.0.0.1:7102", false)), "m1", "http://127.0.0.1:7102", true},
		{"header only", headerOnly, "", "127.0.0.1:7102", true},
		{"no leader known", noLeader(), "", "", false},
		{"other code", connect.NewError(connect.CodeNotFound, errors.New("no")), "", "", false},
		{"not a connect error", errors.New("boom"), "", "", false},
		{"nil", nil, "", "", false},
	} {
		id, addr, ok := LeaderFromError(tc.err)
		if id != tc.wantID || addr != tc.wantAd || ok != tc.wantOK {
			t.Errorf("%s: got (%q, %q, %v), want (%q, %q, %v)", tc.name, id, addr, ok, tc.wantID, tc.wantAd, tc.wantOK)
		}
	}
}

func TestNormalizeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7100":         "http://127.0.0.1:7100",
		"http://127.0.0.1:7100":  "http://127.0.0.1:7100",
		"http://127.0.0.1:7100/": "http://127.0.0.1:7100",
		" https://m1:443/x ":     "https://m1:443",
		"":                       "",
	} {
		if got := NormalizeAddr(in); got != want {
			t.Errorf("NormalizeAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// Many goroutines share one Client across a redirect and a silent master.
func TestConcurrentCalls(t *testing.T) {
	leader := &fakeMaster{}
	ls := serve(t, leader)
	follower := &fakeMaster{answer: func(int32) error { return redirectTo(ls.URL, false) }}
	c := New(silentMaster(t)+","+serve(t, follower).URL, fast()...)
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() {
			_, err := c.Operator.GetStatus(context.Background(), connect.NewRequest(&agorav1.GetStatusRequest{}))
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := leader.calls.Load(); n != int32(cap(errs)) {
		t.Fatalf("leader answered %d calls, want %d", n, cap(errs))
	}
}

// downUntil is when addr's pass-over ends (zero when it is not passed over).
func (c *Client) downUntil(addr string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down[c.norm(addr)]
}

// A follower that answered "no leader" or named a leader being passed over
// is not passed over itself: the preference moves on, and a redirect to it
// from another master is followed (issue 13: the SDK passed over every
// survivor that had named the dead leader, then could not follow them to
// the new leader for 10 s).
func TestPassMovesPreferenceWithoutPassingOver(t *testing.T) {
	a, b, c := "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"
	cl := New(a + "," + b + "," + c)
	cl.Skip(a) // the dead leader
	if got := cl.Target(); got != b {
		t.Fatalf("target %s after passing over %s, want %s", got, a, b)
	}
	cl.Pass(b)
	if got := cl.Target(); got != c {
		t.Fatalf("target %s after %s could not serve, want %s", got, b, c)
	}
	if cl.isDown(b) {
		t.Fatalf("%s answered and is passed over", b)
	}
	cl.Pass(c)
	if got := cl.Target(); got != b {
		t.Fatalf("target %s after %s could not serve, want %s (the one not passed over)", got, c, b)
	}
	if !cl.Follow(c, redirectTo(b, false)) || cl.Target() != b {
		t.Fatalf("a redirect from %s to %s, which answered before, was not followed (target %s)", c, b, cl.Target())
	}
	cl.Pass(a) // not the preferred master: nothing changes
	if got := cl.Target(); got != b {
		t.Fatalf("target %s after passing on a master that was not preferred, want %s", got, b)
	}
}

// When every other master is passed over, the preference still leaves the
// one that just failed, for the one whose pass-over ends first: a stream
// opens at the preferred master whether or not it is passed over.
func TestSkipNeverStaysOnFailedMaster(t *testing.T) {
	a, b, c := "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"
	cl := New(a + "," + b + "," + c)
	cl.Skip(b)
	cl.skipFor(c, failedFastFor)
	cl.Skip(a)
	if got := cl.Target(); got != c {
		t.Fatalf("target %s after every master failed, want %s (its pass-over ends first)", got, c)
	}
	cl.Skip(c)
	if got := cl.Target(); got == c {
		t.Fatalf("target stayed on %s, which just failed", c)
	}
}

// A master whose connection is refused is passed over briefly (a killed
// master may restart and lead within seconds); one that does not answer
// in time is passed over for downFor.
func TestPassOverLastsByHowTheMasterFailed(t *testing.T) {
	refused := refusingMaster(t)
	silent := silentMaster(t)
	good := &fakeMaster{}
	gs := serve(t, good)

	c := New(refused+","+gs.URL, fast()...)
	if _, err := statusAsWrite(c); err != nil {
		t.Fatal(err)
	}
	if until := c.downUntil(refused); until.IsZero() || until.After(time.Now().Add(failedFastFor)) {
		t.Fatalf("refusing master passed over until %s, want at most %s from now", time.Until(until), failedFastFor)
	}

	c = New(refused+","+gs.URL, fast()...)
	stream, err := c.Scheduler.Subscribe(context.Background(), connect.NewRequest(&agorav1.SubscribeRequest{}))
	if err == nil {
		if stream.Receive() {
			t.Fatal("a refusing master streamed")
		}
		stream.Close()
	}
	if until := c.downUntil(refused); until.IsZero() || until.After(time.Now().Add(failedFastFor)) {
		t.Fatalf("refusing master passed over until %s after a stream, want at most %s from now", time.Until(until), failedFastFor)
	}
	if c.Target() != gs.URL {
		t.Fatalf("target %s after the refused stream, want %s", c.Target(), gs.URL)
	}

	c = New(silent+","+gs.URL, fast()...)
	before := time.Now()
	if _, err := statusAsWrite(c); err != nil {
		t.Fatal(err)
	}
	if until := c.downUntil(silent); until.Before(before.Add(downFor)) {
		t.Fatalf("silent master passed over until %s, want %s", until.Sub(before), downFor)
	}
}

// A stream's opening names the masters the client passes over, so that a
// follower that names one of them as its leader can hold its answer until
// the election that follows.
func TestStreamNamesUnreachableMasters(t *testing.T) {
	refused := refusingMaster(t)
	good := &fakeMaster{answer: func(int32) error { return noLeader() }}
	gs := serve(t, good)
	c := New(refused+","+gs.URL, fast()...)
	for range 2 { // the first is refused, the second goes to gs
		stream, err := c.Scheduler.Subscribe(context.Background(), connect.NewRequest(&agorav1.SubscribeRequest{}))
		if err == nil {
			stream.Receive()
			stream.Close()
		}
	}
	if got, _ := good.unreachable.Load().(string); got != refused {
		t.Fatalf("%s = %q, want %q", UnreachableHeader, got, refused)
	}
}

// slowOnceMaster answers GetAssignments at once but for its first call,
// which it holds until the caller gives up on it.
type slowOnceMaster struct {
	fakeMaster
	slowCalled chan struct{} // closed when the first call arrived
	n          atomic.Int32
}

func (f *slowOnceMaster) GetAssignments(ctx context.Context, _ *connect.Request[agorav1.GetAssignmentsRequest]) (*connect.Response[agorav1.GetAssignmentsResponse], error) {
	if f.n.Add(1) == 1 {
		close(f.slowCalled)
		<-ctx.Done()
		return nil, connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}
	return connect.NewResponse(&agorav1.GetAssignmentsResponse{Index: 9, Known: true}), nil
}

// A leader that answers other calls of the client while one call outlives
// its attempt is slow, not down: it is not passed over, and the call's
// retry reaches it through the follower's redirect (issue 13: passing it
// over sent every call of a shared client to followers for 10 s, which
// redirected back to it in vain).
func TestSlowLeaderIsNotPassedOver(t *testing.T) {
	leader := &slowOnceMaster{slowCalled: make(chan struct{})}
	ls := serve(t, leader)
	follower := &fakeMaster{answer: func(int32) error { return redirectTo(ls.URL, false) }}
	fs := serve(t, follower)
	c := New(ls.URL+","+fs.URL, fast()...)
	done := make(chan error, 1)
	go func() {
		_, err := c.Agent.GetAssignments(context.Background(), connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a"}))
		done <- err
	}()
	<-leader.slowCalled
	if _, err := c.Operator.GetStatus(context.Background(), connect.NewRequest(&agorav1.GetStatusRequest{})); err != nil {
		t.Fatalf("GetStatus while the first call waits: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("GetAssignments: %v", err)
	}
	if until := c.downUntil(ls.URL); !until.IsZero() {
		t.Fatalf("the slow leader is passed over until %s", until)
	}
	if n := leader.n.Load(); n != 2 {
		t.Fatalf("leader got %d GetAssignments, want 2 (the slow one and its retry)", n)
	}
	if c.Target() != ls.URL {
		t.Fatalf("target %s, want the leader %s", c.Target(), ls.URL)
	}
}
