package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// holdingMaster is a fakeMaster whose SetRole reports on entered and
// blocks until release is closed. It has no SetRoles, like a master from
// before it.
type holdingMaster struct {
	*fakeMaster
	release chan struct{}
	entered chan struct{}
}

func newHoldingMaster() *holdingMaster {
	return &holdingMaster{fakeMaster: &fakeMaster{}, release: make(chan struct{}), entered: make(chan struct{}, 1)}
}

func (f *holdingMaster) SetRole(ctx context.Context, req *connect.Request[agorav1.SetRoleRequest]) (*connect.Response[agorav1.SetRoleResponse], error) {
	select {
	case f.entered <- struct{}{}:
	default:
	}
	<-f.release
	return f.fakeMaster.SetRole(ctx, req)
}

// carryingMaster is a holdingMaster that also serves SetRoles: a role
// named "bad..." is refused alone, the others get index 100 + their
// position in the call.
type carryingMaster struct {
	*holdingMaster
	setRoles atomic.Int32
	carried  atomic.Int32
}

func (f *carryingMaster) SetRoles(_ context.Context, req *connect.Request[agorav1.SetRolesRequest]) (*connect.Response[agorav1.SetRolesResponse], error) {
	f.setRoles.Add(1)
	f.carried.Add(int32(len(req.Msg.GetRoles())))
	out := &agorav1.SetRolesResponse{}
	for i, r := range req.Msg.GetRoles() {
		if strings.HasPrefix(r.GetName(), "bad") {
			out.Results = append(out.Results, &agorav1.SetRoleResult{Code: connect.CodeInvalidArgument.String(), Message: "refused " + r.GetName()})
			continue
		}
		out.Results = append(out.Results, &agorav1.SetRoleResult{Index: uint64(100 + i)})
	}
	return connect.NewResponse(out), nil
}

func serveOperator(t *testing.T, h agorav1connect.OperatorServiceHandler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(agorav1connect.NewOperatorServiceHandler(h))
	s := httptest.NewUnstartedServer(mux)
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

// queueBehindBlockedCall makes one SetRole that the master holds (filling
// the client's one slot), then n more that must queue behind it; it
// returns their answers once the held call is released.
func queueBehindBlockedCall(t *testing.T, c *Client, f *holdingMaster, names []string) []error {
	t.Helper()
	held := make(chan error, 1)
	go func() {
		_, err := c.Operator.SetRole(context.Background(), connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "held"}}))
		held <- err
	}()
	<-f.entered
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Operator.SetRole(context.Background(), connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: name}}))
			if err == nil && resp.Msg.GetIndex() == 0 {
				err = errors.New("no index")
			}
			errs[i] = err
		}()
	}
	// Every call is queued once the queue holds them all.
	op := c.Operator.(*carryingOperator)
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		op.mu.Lock()
		n := len(op.queue)
		op.mu.Unlock()
		if n == len(names) {
			break
		}
		select {
		case <-deadline.C:
			t.Fatalf("%d of %d calls queued", n, len(names))
		case <-tick.C:
		}
	}
	close(f.release)
	if err := <-held; err != nil {
		t.Fatalf("held call: %v", err)
	}
	wg.Wait()
	return errs
}

// Concurrent SetRole calls beyond the slots travel together in one
// SetRoles, and each caller gets its own verdict.
func TestConcurrentSetRolesAreCarriedTogether(t *testing.T) {
	f := &carryingMaster{holdingMaster: newHoldingMaster()}
	c := New(serveOperator(t, f), fast(WithWritesInFlight(1))...)
	var names []string
	for i := range 10 {
		name := fmt.Sprintf("r%d", i)
		if i%3 == 0 {
			name = fmt.Sprintf("bad%d", i)
		}
		names = append(names, name)
	}
	errs := queueBehindBlockedCall(t, c, f.holdingMaster, names)
	for i, err := range errs {
		bad := strings.HasPrefix(names[i], "bad")
		switch {
		case bad && connect.CodeOf(err) != connect.CodeInvalidArgument:
			t.Errorf("%s: got %v, want its own InvalidArgument", names[i], err)
		case bad && !strings.Contains(err.Error(), "refused "+names[i]):
			t.Errorf("%s: got another call's error %v", names[i], err)
		case !bad && err != nil:
			t.Errorf("%s: %v", names[i], err)
		}
	}
	if n, k := f.setRoles.Load(), f.carried.Load(); n != 1 || k != int32(len(names)) {
		t.Fatalf("%d SetRoles carrying %d calls, want 1 carrying %d", n, k, len(names))
	}
}

// A master without SetRoles (an older one) gets the queued calls one by
// one, and each still succeeds.
func TestSetRolesUnimplementedFallsBack(t *testing.T) {
	f := newHoldingMaster()
	c := New(serveOperator(t, f), fast(WithWritesInFlight(1))...)
	names := []string{"a", "b", "c", "d"}
	for i, err := range queueBehindBlockedCall(t, c, f, names) {
		if err != nil {
			t.Errorf("%s: %v", names[i], err)
		}
	}
	if n := f.calls.Load(); n != int32(len(names)+1) {
		t.Fatalf("master answered %d SetRole calls, want %d", n, len(names)+1)
	}
	if !c.Operator.(*carryingOperator).noBatch.Load() {
		t.Fatal("the client did not remember that the master has no SetRoles")
	}
}

// A queued call whose context ends before it is sent returns at once and
// is never sent.
func TestQueuedSetRoleGivesUpWithItsContext(t *testing.T) {
	f := &carryingMaster{holdingMaster: newHoldingMaster()}
	c := New(serveOperator(t, f), fast(WithWritesInFlight(1))...)
	go func() {
		_, _ = c.Operator.SetRole(context.Background(), connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "held"}}))
	}()
	<-f.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "late"}}))
	if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	close(f.release)
	// The next call goes out alone (nothing else is queued).
	if _, err := c.Operator.SetRole(context.Background(), connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "next"}})); err != nil {
		t.Fatal(err)
	}
	if n := f.carried.Load(); n != 0 {
		t.Fatalf("SetRoles carried %d calls, want none (the late call was given up)", n)
	}
}

// BenchmarkConcurrentSetRole is 64 goroutines calling SetRole through one
// Client against a master that answers at once (no Raft): the cost of the
// RPC layer per call, one RPC per call (in_flight=-1) or carried together
// (the default).
func BenchmarkConcurrentSetRole(b *testing.B) {
	for _, inFlight := range []int{-1, DefaultWritesInFlight} {
		b.Run(fmt.Sprintf("in_flight=%d", inFlight), func(b *testing.B) {
			f := &carryingMaster{holdingMaster: newHoldingMaster()}
			close(f.release)
			mux := http.NewServeMux()
			// As the masters serve it: small messages are not compressed.
			mux.Handle(agorav1connect.NewOperatorServiceHandler(f, connect.WithCompressMinBytes(4<<10)))
			s := httptest.NewUnstartedServer(mux)
			s.Config.Protocols = new(http.Protocols)
			s.Config.Protocols.SetHTTP1(true)
			s.Config.Protocols.SetUnencryptedHTTP2(true)
			s.Start()
			defer s.Close()
			c := New(s.URL, WithWritesInFlight(inFlight))
			b.SetParallelism(64 / max(runtime.GOMAXPROCS(0), 1))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "r", Weight: 1}})
					if _, err := c.Operator.SetRole(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if n := f.setRoles.Load() + f.calls.Load(); n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "calls/rpc")
			}
		})
	}
}
