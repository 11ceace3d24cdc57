package master_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/freeport"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/tlsconf"
)

// agNoGossipLiveness keeps gossip-based liveness from deciding anything
// during a test (agents missing from gossip are only probed after two
// sweeps LivenessGrace apart), so that only agent-gone hints act.
func agNoGossipLiveness(cfg *master.Config) { cfg.LivenessGrace = time.Hour }

// agDeadGossipAddr is a loopback address where nothing listens: TCP
// connections are refused and UDP pings go unanswered, as at the gossip
// endpoint of a killed agent.
func agDeadGossipAddr(tb testing.TB) string {
	tb.Helper()
	port, err := freeport.TCPUDP("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// agRegisterAt registers agent id with gossip address gossipAddr through
// master addr and returns the registration's index.
func agRegisterAt(tb testing.TB, ctx context.Context, addr, id, gossipAddr string, opts ...client.Option) uint64 {
	tb.Helper()
	r := agRegistration(id)
	r.GossipAddress = gossipAddr
	resp, err := client.New(addr, opts...).Agent.RegisterAgent(ctx, connect.NewRequest(r))
	if err != nil {
		tb.Fatalf("register %s: %v", id, err)
	}
	return resp.Msg.GetIndex()
}

// agConns is an agent's AgentService client over connections the test
// closes at once, as the kernel closes a killed process's connections.
type agConns struct {
	mu    sync.Mutex
	conns []net.Conn
	cl    agorav1connect.AgentServiceClient
}

// agAgentClient returns an agConns calling the master at url (with
// tlsCfg when not nil).
func agAgentClient(tb testing.TB, url string, tlsCfg *tls.Config) *agConns {
	a := &agConns{}
	tr := &http.Transport{TLSClientConfig: tlsCfg, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(tlsCfg == nil)
	tr.Protocols.SetHTTP2(tlsCfg != nil)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			a.mu.Lock()
			a.conns = append(a.conns, c)
			a.mu.Unlock()
		}
		return c, err
	}
	tb.Cleanup(tr.CloseIdleConnections)
	a.cl = agorav1connect.NewAgentServiceClient(&http.Client{Transport: tr}, url)
	return a
}

// kill closes every connection of the client.
func (a *agConns) kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		_ = c.Close()
	}
}

// agCutPoll opens agent id's GetAssignments long poll on master m (at
// url), waits until it waits there, and closes its connection as a dying
// agent's kernel would.
func agCutPoll(tb testing.TB, ctx context.Context, m *master.Master, url, id string, tlsCfg *tls.Config) {
	tb.Helper()
	a := agAgentClient(tb, url, tlsCfg)
	waiting := m.AssignmentPollsWaitingForTest()
	done := make(chan error, 1)
	go func() {
		_, err := a.cl.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{
			AgentId: id, MinIndex: m.State().Index(), WaitSeconds: 30}))
		done <- err
	}()
	agWaitFor(tb, 10*time.Second, id+"'s poll waiting on "+m.ID(), func() error {
		if n := m.AssignmentPollsWaitingForTest(); n <= waiting {
			return fmt.Errorf("%d polls waiting", n)
		}
		return nil
	})
	a.kill()
	if err := <-done; err == nil {
		tb.Fatalf("%s's poll answered instead of being cut off", id)
	}
}

// A dead agent's connection closing (during a long poll, or between two)
// makes the leader probe it at once; its gossip endpoint refuses, so it
// becomes UNREACHABLE without gossip having noticed anything.
func TestAgentGoneHintMarksUnreachable(t *testing.T) {
	c, l := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: agNoGossipLiveness})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := c.Addrs()[0]
	agRegisterAt(t, ctx, addr, "dead", agDeadGossipAddr(t))
	agRegisterAt(t, ctx, addr, "other", agDeadGossipAddr(t))

	agCutPoll(t, ctx, l, addr, "dead", nil)
	agWaitAgentState(t, c, 20*time.Second, "dead", agorav1.AgentState_AGENT_STATE_UNREACHABLE)
	st := l.AgentGoneStatsForTest()
	if st.Probed != 1 || st.Missed < 2 {
		t.Errorf("hint stats %+v: want 1 hint probed and 2 probes missed", st)
	}

	// An agent killed between two polls: its idle connection closes.
	agRegisterAt(t, ctx, addr, "between", agDeadGossipAddr(t))
	a := agAgentClient(t, addr, nil)
	if _, err := a.cl.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "between"})); err != nil {
		t.Fatal(err)
	}
	a.kill()
	agWaitAgentState(t, c, 20*time.Second, "between", agorav1.AgentState_AGENT_STATE_UNREACHABLE)
	// Only the hinted agent was judged.
	if a, _ := l.State().Agent("other"); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		t.Errorf("other (no hint) is %v", a.GetState())
	}
}

// A hint for an agent that answers the probe changes nothing.
func TestAgentGoneHintLiveAgentStays(t *testing.T) {
	c, l := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: agNoGossipLiveness})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A live gossip endpoint, not joined to the masters' pool: gossip
	// still has no view of it, only the probe can tell.
	p, err := gossip.New(gossip.Config{NodeName: "agent/live", BindAddr: "127.0.0.1:0", Profile: gossip.ProfileLocal,
		Tags: gossip.Tags{Role: gossip.RoleAgent, ID: "live"}, Logger: agLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	addr := c.Addrs()[0]
	agRegisterAt(t, ctx, addr, "live", p.Addr())
	before := l.State().Index()

	agCutPoll(t, ctx, l, addr, "live", nil)
	agWaitFor(t, 20*time.Second, "the hint's probe answered", func() error {
		if st := l.AgentGoneStatsForTest(); st.Answered == 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	st := l.AgentGoneStatsForTest()
	if st.Probed != 1 || st.Missed != 0 {
		t.Errorf("hint stats %+v: want 1 hint probed, no probe missed", st)
	}
	if a, _ := l.State().Agent("live"); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		t.Fatalf("live agent is %v after a hint", a.GetState())
	}
	if idx := l.State().Index(); idx != before {
		t.Errorf("state index %d -> %d: the hint of a live agent wrote", before, idx)
	}
	// A second hint at once is rate limited: no second probe.
	agCutPoll(t, ctx, l, addr, "live", nil)
	agWaitFor(t, 20*time.Second, "the second hint taken", func() error {
		if st := l.AgentGoneStatsForTest(); st.Limited == 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if st := l.AgentGoneStatsForTest(); st.Probed != 1 {
		t.Errorf("hint stats %+v: the second hint within the interval probed", st)
	}
}

// An agent that polls again at once (its client dropped the connection)
// is no hint.
func TestAgentGoneRepollIsNoHint(t *testing.T) {
	c, l := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: agNoGossipLiveness})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := c.Addrs()[0]
	agRegisterAt(t, ctx, addr, "a1", agDeadGossipAddr(t))
	// The agent's next poll (over a new connection) is open before the
	// closed connection settles.
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	agCutPoll(t, ctx, l, addr, "a1", nil)
	go func() {
		_, _ = client.New(addr).Agent.GetAssignments(pctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{
			AgentId: "a1", MinIndex: l.State().Index(), WaitSeconds: 30}))
	}()
	agWaitFor(t, 20*time.Second, "the cut-off poll settled", func() error {
		if st := l.AgentGoneStatsForTest(); st.Repolled == 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if st := l.AgentGoneStatsForTest(); st.Received != 0 {
		t.Errorf("hint stats %+v: a re-polling agent was hinted", st)
	}
	if a, _ := l.State().Agent("a1"); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		t.Fatalf("a1 is %v", a.GetState())
	}
}

// A follower that sees an agent's poll cut off passes the hint to the
// leader, which probes and marks the agent.
func TestAgentGoneHintFromFollower(t *testing.T) {
	c, l := agStartAgentCluster(t, devcluster.Options{Masters: 3, MasterConfig: agNoGossipLiveness})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	agRegisterAt(t, ctx, c.Addrs()[0], "dead", agDeadGossipAddr(t))
	fi := (c.LeaderIndex() + 1) % 3
	f := c.Masters()[fi]
	agWaitFor(t, 10*time.Second, "the follower knows the agent", func() error {
		if a, ok := f.State().Agent("dead"); !ok || a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	agCutPoll(t, ctx, f, c.Addrs()[fi], "dead", nil)
	agWaitAgentState(t, c, 20*time.Second, "dead", agorav1.AgentState_AGENT_STATE_UNREACHABLE)
	if st := f.AgentGoneStatsForTest(); st.Forwarded != 1 {
		t.Errorf("follower stats %+v: want 1 hint forwarded", st)
	}
	if st := l.AgentGoneStatsForTest(); st.Received != 1 || st.Probed != 1 {
		t.Errorf("leader stats %+v: want 1 hint received and probed", st)
	}
}

// With mutual TLS, the follower's hint reaches the leader over the
// masters' certificates, and only a master may pass one.
func TestAgentGoneHintFromFollowerTLS(t *testing.T) {
	c, l := agStartAgentCluster(t, devcluster.Options{Masters: 3, TLS: true, MasterConfig: agNoGossipLiveness})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	agentTLS, err := c.ClientTLS(tlsconf.RoleAgent, "dead")
	if err != nil {
		t.Fatal(err)
	}
	agRegisterAt(t, ctx, strings.Join(c.Addrs(), ","), "dead", agDeadGossipAddr(t), client.WithTLS(agentTLS))
	fi := (c.LeaderIndex() + 1) % 3
	f := c.Masters()[fi]
	agWaitFor(t, 10*time.Second, "the follower knows the agent", func() error {
		if _, ok := f.State().Agent("dead"); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	// A client certificate may not pass hints.
	cliTLS, err := c.ClientTLS(tlsconf.RoleClient, "cli")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cliTLS, ForceAttemptHTTP2: true}}
	t.Cleanup(hc.CloseIdleConnections)
	hint := connect.NewClient[wrapperspb.StringValue, emptypb.Empty](hc, l.HTTPURL()+master.AgentGoneProcedure)
	if _, err := hint.CallUnary(ctx, connect.NewRequest(wrapperspb.String("dead"))); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("hint with a client certificate: %v, want PermissionDenied", err)
	}
	if st := l.AgentGoneStatsForTest(); st.Received != 0 {
		t.Fatalf("leader took a client's hint: %+v", st)
	}

	agCutPoll(t, ctx, f, c.Addrs()[fi], "dead", agentTLS)
	agWaitAgentState(t, c, 20*time.Second, "dead", agorav1.AgentState_AGENT_STATE_UNREACHABLE)
	if st := f.AgentGoneStatsForTest(); st.Forwarded != 1 {
		t.Errorf("follower stats %+v: want 1 hint forwarded", st)
	}
}
