package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// fakeMaster answers SetRole as a leader (index 7) or redirects to leader.
type fakeMaster struct {
	agorav1connect.UnimplementedOperatorServiceHandler
	leaderURL  string
	headerOnly bool
	noLeader   bool
	calls      atomic.Int32
}

func (f *fakeMaster) SetRole(_ context.Context, _ *connect.Request[agorav1.SetRoleRequest]) (*connect.Response[agorav1.SetRoleResponse], error) {
	f.calls.Add(1)
	switch {
	case f.noLeader:
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("no leader is known"))
	case f.leaderURL == "":
		return connect.NewResponse(&agorav1.SetRoleResponse{Index: 7}), nil
	}
	e := connect.NewError(connect.CodeUnavailable, errors.New("not the leader"))
	if !f.headerOnly {
		d, err := connect.NewErrorDetail(&agorav1.LeaderRedirect{LeaderId: "m1", LeaderAddress: f.leaderURL})
		if err != nil {
			panic(err)
		}
		e.AddDetail(d)
	}
	e.Meta().Set(LeaderHeader, f.leaderURL)
	return nil, e
}

func serve(t *testing.T, f *fakeMaster) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(agorav1connect.NewOperatorServiceHandler(f))
	s := httptest.NewUnstartedServer(mux)
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func setRole(c *Client) (uint64, error) {
	resp, err := c.Operator.SetRole(context.Background(), connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "a"}}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetIndex(), nil
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
			follower := &fakeMaster{leaderURL: ls.URL, headerOnly: tc.headerOnly}
			fs := serve(t, follower)
			var opts []Option
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
		})
	}
}

func TestRedirectLoopIsBounded(t *testing.T) {
	a := &fakeMaster{}
	as := serve(t, a)
	b := &fakeMaster{leaderURL: as.URL}
	bs := serve(t, b)
	a.leaderURL = bs.URL // a and b name each other
	_, err := setRole(New(as.URL))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("err %v, want Unavailable", err)
	}
	if total := a.calls.Load() + b.calls.Load(); total != maxHops+1 {
		t.Fatalf("%d calls, want %d", total, maxHops+1)
	}
}

func TestNoLeaderIsReturned(t *testing.T) {
	f := &fakeMaster{noLeader: true}
	s := serve(t, f)
	_, err := setRole(New(s.URL))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("err %v, want Unavailable", err)
	}
	if _, _, ok := LeaderFromError(err); ok {
		t.Fatal("LeaderFromError found a leader in a no-leader error")
	}
	if f.calls.Load() != 1 {
		t.Fatalf("%d calls, want 1", f.calls.Load())
	}
}

func TestDeadLeaderFallsBackToOrigin(t *testing.T) {
	leader := &fakeMaster{}
	ls := serve(t, leader)
	follower := &fakeMaster{leaderURL: ls.URL}
	fs := serve(t, follower)
	c := New(fs.URL)
	if _, err := setRole(c); err != nil {
		t.Fatal(err)
	}
	ls.Close() // the leader dies; the follower now knows another leader
	next := &fakeMaster{}
	ns := serve(t, next)
	follower.leaderURL = ns.URL
	if idx, err := setRole(c); err != nil || idx != 7 {
		t.Fatalf("after leader death: %d, %v", idx, err)
	}
	if c.Target() != ns.URL {
		t.Fatalf("target %s, want %s", c.Target(), ns.URL)
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7100":         "http://127.0.0.1:7100",
		"http://127.0.0.1:7100":  "http://127.0.0.1:7100",
		"http://127.0.0.1:7100/": "http://127.0.0.1:7100",
		"https://m1:443":         "https://m1:443",
	} {
		if got := parseTarget(in).String(); got != want {
			t.Errorf("parseTarget(%q) = %q, want %q", in, got, want)
		}
	}
}
