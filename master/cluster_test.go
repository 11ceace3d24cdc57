package master_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

func testLogger() *slog.Logger {
	if os.Getenv("AGORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, d, err)
}

// leadershipTracker records, per master, how many leader tasks are
// active at once.
type leadershipTracker struct {
	mu        sync.Mutex
	active    map[string]int
	maxActive map[string]int
	starts    atomic.Int64
}

func (lt *leadershipTracker) hook(_ int, m *master.Master) {
	id := m.ID()
	m.AddLeaderTaskForTest("test-tracker", func(ctx context.Context) {
		lt.starts.Add(1)
		lt.mu.Lock()
		lt.active[id]++
		lt.maxActive[id] = max(lt.maxActive[id], lt.active[id])
		lt.mu.Unlock()
		<-ctx.Done()
		lt.mu.Lock()
		lt.active[id]--
		lt.mu.Unlock()
	})
}

func startCluster(t *testing.T, lt *leadershipTracker) *devcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: testLogger()}
	if lt != nil {
		o.OnNew = lt.hook
	}
	c, err := devcluster.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func followerIndex(c *devcluster.Cluster) int {
	li := c.LeaderIndex()
	for i := range c.Masters() {
		if i != li && c.Alive(i) {
			return i
		}
	}
	return -1
}

func roleNames(t *testing.T, op agorav1connect.OperatorServiceClient, stale bool) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := op.ListRoles(ctx, connect.NewRequest(&agorav1.ListRolesRequest{Read: &agorav1.ReadOptions{Stale: stale}}))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range resp.Msg.GetRoles() {
		names = append(names, r.GetName())
	}
	return names, nil
}

func setRole(ctx context.Context, op agorav1connect.OperatorServiceClient, r *agorav1.Role) (uint64, error) {
	resp, err := op.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: r}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetIndex(), nil
}

func scalar(name string, v float64) *agorav1.Resource {
	return &agorav1.Resource{Name: name, Scalar: v}
}

func hasAll(names []string, want ...string) error {
	for _, w := range want {
		if !slices.Contains(names, w) {
			return errors.New("missing role " + w + " in " + strings.Join(names, ","))
		}
	}
	return nil
}

func TestClusterLifecycle(t *testing.T) {
	lt := &leadershipTracker{active: map[string]int{}, maxActive: map[string]int{}}
	c := startCluster(t, lt)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := c.Leader()
	fi := followerIndex(c)
	fURL := c.Addrs()[fi]

	// Every master's address is recorded by the leader's reconcile loop.
	eventually(t, 10*time.Second, "masters recorded in the fsm", func() error {
		if n := len(leader.State().Masters()); n != 3 {
			return errors.New("masters recorded: " + strings.Repeat("x", n))
		}
		return nil
	})

	// A write through a follower is redirected to the leader and committed.
	cl := client.New(fURL)
	idx, err := setRole(ctx, cl.Operator, &agorav1.Role{Name: "analytics", Weight: 3})
	if err != nil || idx == 0 {
		t.Fatalf("SetRole through follower: index %d, %v", idx, err)
	}
	if cl.Target() != leader.HTTPURL() {
		t.Fatalf("client target %s, want leader %s", cl.Target(), leader.HTTPURL())
	}
	names, err := roleNames(t, cl.Operator, false)
	if err != nil || hasAll(names, "analytics") != nil {
		t.Fatalf("linearizable ListRoles: %v, %v", names, err)
	}

	t.Run("bad input proposes nothing", func(t *testing.T) {
		before := leader.Raft().LastIndex()
		for _, tc := range []struct {
			name string
			role *agorav1.Role
			code connect.Code
		}{
			{"missing role", nil, connect.CodeInvalidArgument},
			{"invalid name", &agorav1.Role{Name: "Bad Name"}, connect.CodeInvalidArgument},
			{"negative weight", &agorav1.Role{Name: "neg", Weight: -1}, connect.CodeInvalidArgument},
			{"limit below guarantee", &agorav1.Role{Name: "q", Guarantee: []*agorav1.Resource{scalar("cpus", 4)}, Limit: []*agorav1.Resource{scalar("cpus", 2)}}, connect.CodeInvalidArgument},
			{"unknown resource", &agorav1.Role{Name: "u", Guarantee: []*agorav1.Resource{scalar("widgets", 1)}}, connect.CodeInvalidArgument},
		} {
			for _, target := range []string{leader.HTTPURL(), fURL} {
				op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, target)
				_, err := setRole(ctx, op, tc.role)
				if connect.CodeOf(err) != tc.code {
					t.Errorf("%s at %s: %v, want %v", tc.name, target, err, tc.code)
				}
			}
		}
		_, err := cl.Operator.DeleteRole(ctx, connect.NewRequest(&agorav1.DeleteRoleRequest{Name: "nope"}))
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("DeleteRole unknown: %v, want NotFound", err)
		}
		_, err = cl.Operator.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: "m9"}))
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("RemovePeer unknown: %v, want NotFound", err)
		}
		if after := leader.Raft().LastIndex(); after != before {
			t.Errorf("raft last index moved from %d to %d on rejected input", before, after)
		}
	})

	t.Run("follower redirects raw clients", func(t *testing.T) {
		op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, fURL)
		for name, call := range map[string]func() error{
			"write": func() error { _, err := setRole(ctx, op, &agorav1.Role{Name: "raw"}); return err },
			"read":  func() error { _, err := roleNames(t, op, false); return err },
		} {
			err := call()
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable {
				t.Fatalf("%s on follower: %v, want Unavailable", name, err)
			}
			id, addr, ok := client.LeaderFromError(err)
			if !ok || id != leader.ID() || addr != leader.HTTPURL() {
				t.Errorf("%s: redirect detail (%q, %q, %v), want (%s, %s)", name, id, addr, ok, leader.ID(), leader.HTTPURL())
			}
			if h := ce.Meta().Get(master.LeaderHeader); h != leader.HTTPURL() {
				t.Errorf("%s: %s header %q, want %q", name, master.LeaderHeader, h, leader.HTTPURL())
			}
		}
		eventually(t, 5*time.Second, "stale read on follower", func() error {
			names, err := roleNames(t, op, true)
			if err != nil {
				return err
			}
			return hasAll(names, "analytics")
		})
	})

	t.Run("status on every master", func(t *testing.T) {
		for _, u := range c.Addrs() {
			op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, u)
			resp, err := op.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			s := resp.Msg
			if s.GetLeader().GetId() != leader.ID() || s.GetLeader().GetHttpAddress() != leader.HTTPURL() {
				t.Errorf("%s: leader %v", u, s.GetLeader())
			}
			if len(s.GetMasters()) != 3 || s.GetRaft().GetCommitIndex() == 0 || s.GetAnsweredBy() == "" {
				t.Errorf("%s: status %v", u, s)
			}
			for _, mv := range s.GetMasters() {
				if mv.GetSuffrage() != "voter" || mv.GetHttpAddress() == "" {
					t.Errorf("%s: master %v", u, mv)
				}
			}
		}
	})

	// Kill the leader: a new one serves writes and linearizable reads.
	// (LeaderIndex alone may answer -1 while an election is under way on
	// a loaded machine: wait for a leader.)
	leader, err = c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	li := slices.Index(c.Masters(), leader)
	c.Kill(li)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	survivor := client.New(c.Addrs()[(li+1)%3])
	eventually(t, 10*time.Second, "write after failover", func() error {
		_, err := setRole(ctx, survivor.Operator, &agorav1.Role{Name: "batch", Weight: 1})
		return err
	})
	names, err = roleNames(t, survivor.Operator, false)
	if err != nil || hasAll(names, "analytics", "batch") != nil {
		t.Fatalf("read after failover: %v, %v", names, err)
	}

	// The killed master restarts from its data dir and catches up.
	if err := c.Restart(ctx, li); err != nil {
		t.Fatal(err)
	}
	restarted := agorav1connect.NewOperatorServiceClient(http.DefaultClient, c.Addrs()[li])
	eventually(t, 15*time.Second, "restarted master catches up", func() error {
		names, err := roleNames(t, restarted, true)
		if err != nil {
			return err
		}
		return hasAll(names, "analytics", "batch")
	})

	// Stop all three, restart from disk: every committed write is there.
	c.StopMasters()
	for i := range 3 {
		if err := c.Restart(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cl = client.New(c.Addrs()[0])
	eventually(t, 10*time.Second, "roles after full restart", func() error {
		names, err := roleNames(t, cl.Operator, false)
		if err != nil {
			return err
		}
		return hasAll(names, "analytics", "batch")
	})

	// RemovePeer of a dead master.
	dead := followerIndex(c)
	deadID := c.Master(dead).ID()
	c.Kill(dead)
	newLeader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "gossip sees the dead master fail", func() error {
		for _, mem := range newLeader.Gossip().Members() {
			if mem.Tags.ID == deadID && mem.Status == gossip.StatusAlive {
				return errors.New("still alive")
			}
		}
		return nil
	})
	if _, err := cl.Operator.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: deadID})); err != nil {
		t.Fatalf("RemovePeer %s: %v", deadID, err)
	}
	peers, err := cl.Operator.ListPeers(ctx, connect.NewRequest(&agorav1.ListPeersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers.Msg.GetPeers() {
		if p.GetId() == deadID {
			t.Fatalf("removed peer %s still listed: %v", deadID, peers.Msg.GetPeers())
		}
	}
	if len(peers.Msg.GetPeers()) != 2 {
		t.Fatalf("peers after removal: %v", peers.Msg.GetPeers())
	}
	if _, err := setRole(ctx, cl.Operator, &agorav1.Role{Name: "after-removal"}); err != nil {
		t.Fatalf("write with two voters: %v", err)
	}

	lt.mu.Lock()
	defer lt.mu.Unlock()
	for id, n := range lt.maxActive {
		if n > 1 {
			t.Errorf("master %s ran %d leadership sets at once", id, n)
		}
	}
	if lt.starts.Load() < 3 {
		t.Errorf("leadership runs started %d times, want >= 3 (initial, failover, restart)", lt.starts.Load())
	}
}

func TestHealthReflectionMetrics(t *testing.T) {
	c := startCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := client.DefaultHTTPClient()
	for _, u := range c.Addrs() {
		check := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, u+"/grpc.health.v1.Health/Check", connect.WithGRPC())
		eventually(t, 5*time.Second, "health SERVING at "+u, func() error {
			resp, err := check.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
			if err != nil {
				return err
			}
			if resp.Msg.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return errors.New(resp.Msg.GetStatus().String())
			}
			return nil
		})
		_, err := check.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{Service: "no.such.Service"}))
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("health of unknown service: %v, want NotFound", err)
		}
	}

	watch := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc, c.Addrs()[0]+"/grpc.health.v1.Health/Watch", connect.WithGRPC())
	wctx, wcancel := context.WithCancel(ctx)
	stream, err := watch.CallServerStream(wctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() || stream.Msg().GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health watch: first message %v, err %v", stream.Msg(), stream.Err())
	}
	wcancel()
	_ = stream.Close()

	rs := grpcreflect.NewClient(hc, c.Addrs()[1]).NewStream(ctx)
	svcs, err := rs.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range svcs {
		got = append(got, string(s))
	}
	for _, want := range master.Services {
		if !slices.Contains(got, want) {
			t.Errorf("reflection lists %v, missing %s", got, want)
		}
	}
	if _, err := rs.FileContainingSymbol("agora.v1.OperatorService"); err != nil {
		t.Errorf("reflection cannot describe the operator service: %v", err)
	}
	_, _ = rs.Close()

	leader := c.Leader()
	cl := client.New(leader.HTTPURL())
	if _, err := setRole(ctx, cl.Operator, &agorav1.Role{Name: "metrics"}); err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(leader.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{`agora_is_leader{master="` + leader.ID() + `"} 1`, "agora_raft_applied_index", "agora_raft_", "go_goroutines"} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	resp, err = hc.Get(leader.HTTPURL() + "/debug/pprof/cmdline")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("pprof: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
