package devcluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/tlsconf"
)

// logBuffer collects log lines so a test can wait for one.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) has(parts ...string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(b.buf.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

// subscribed is a framework.Scheduler that reports its first SUBSCRIBED.
type subscribed struct {
	once sync.Once
	ch   chan string
}

func (s *subscribed) Subscribed(_ framework.Driver, id string, _ bool) {
	s.once.Do(func() { s.ch <- id })
}
func (s *subscribed) Offers(framework.Driver, []*agorav1.Offer) {}
func (s *subscribed) Rescind(framework.Driver, string)          {}
func (s *subscribed) Update(framework.Driver, *agorav1.TaskStatus) {
}
func (s *subscribed) Failure(framework.Driver, string) {}
func (s *subscribed) Error(framework.Driver, string)   {}

// A cluster with TLS and gossip encryption on: 3 masters and an agent.
func TestTLSAndGossipEncryption(t *testing.T) {
	key1 := []byte("0123456789abcdef0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	b64 := base64.StdEncoding.EncodeToString
	logs := &logBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{
		TLS:           true,
		GossipKeyring: [][]byte{key1},
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Addrs() {
		if !strings.HasPrefix(a, "https://") {
			t.Fatalf("master address %s, want https", a)
		}
	}
	ag, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: "a1", Resources: "cpus:2;mem:1024"})
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := c.ClientTLS(tlsconf.RoleClient, "alice")
	if err != nil {
		t.Fatal(err)
	}
	cl := client.New(strings.Join(c.Addrs(), ","), client.WithTLS(clientTLS))
	defer cl.CloseIdleConnections()

	t.Run("client certificate works; the agent registers", func(t *testing.T) {
		st, err := cl.Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if st.Msg.GetLeader() == nil || !strings.HasPrefix(st.Msg.GetLeader().GetHttpAddress(), "https://") {
			t.Fatalf("leader %v, want an https address", st.Msg.GetLeader())
		}
		// Over gRPC too.
		g := client.New(strings.Join(c.Addrs(), ","), client.WithTLS(clientTLS), client.WithGRPC())
		defer g.CloseIdleConnections()
		if _, err := g.Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{})); err != nil {
			t.Fatalf("gRPC over TLS: %v", err)
		}
		waitUntil(t, time.Minute, "agent a1 registered over TLS", func() bool {
			r, err := cl.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
			return err == nil && len(r.Msg.GetAgents()) == 1 && r.Msg.GetAgents()[0].GetAgent().GetId() == "a1"
		})
	})

	t.Run("framework subscribes through the SDK with a client certificate", func(t *testing.T) {
		files, err := c.IssueTLS(tlsconf.RoleClient, "fw")
		if err != nil {
			t.Fatal(err)
		}
		s := &subscribed{ch: make(chan string, 1)}
		fctx, fcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- framework.Run(fctx, framework.Config{Masters: c.Addrs(), TLS: files,
				Info: &agorav1.FrameworkInfo{Name: "tls-fw", Roles: []string{"*"}}}, s)
		}()
		select {
		case id := <-s.ch:
			if id == "" {
				t.Error("subscribed with no framework id")
			}
		case err := <-done:
			t.Fatalf("framework.Run ended: %v", err)
		case <-ctx.Done():
			t.Fatal("framework never subscribed")
		}
		fcancel()
		<-done
	})

	t.Run("a client without a certificate is refused at the handshake", func(t *testing.T) {
		noCert := clientTLS.Clone()
		noCert.Certificates = nil
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}, Timeout: 30 * time.Second}
		resp, err := hc.Get(c.Addrs()[0] + "/metrics")
		if err == nil {
			_ = resp.Body.Close()
			t.Fatal("a client without a certificate got an answer")
		}
		if !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("err %v, want the server's certificate_required alert", err)
		}
		// The SDK's client gives up at once: a certificate does not get
		// better by retrying.
		nc := client.New(c.Addrs()[0], client.WithTLS(noCert))
		start := time.Now()
		if _, err := nc.Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{})); err == nil {
			t.Fatal("GetStatus without a certificate succeeded")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("refusal took %v; it should be final", d)
		}
		// Plaintext HTTP is not served either.
		resp, err = http.Get(strings.Replace(c.Addrs()[0], "https://", "http://", 1) + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("plaintext request answered: %s", body)
			}
		}
	})

	t.Run("a client certificate cannot register an agent", func(t *testing.T) {
		_, err := cl.Agent.RegisterAgent(ctx, connect.NewRequest(&agorav1.RegisterAgentRequest{AgentId: "intruder", Cluster: "agora"}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("RegisterAgent with a client certificate: %v, want PermissionDenied", err)
		}
		r, err := cl.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
		if err != nil || len(r.Msg.GetAgents()) != 1 {
			t.Fatalf("agents %v %v, want only a1", r, err)
		}
	})

	leaderRaft := func() raft.ServerAddress {
		l := c.Leader()
		if l == nil {
			t.Fatal("no leader")
		}
		return raft.ServerAddress(l.Config().RaftAddr)
	}
	quiet := slog.New(slog.DiscardHandler)

	t.Run("an agent certificate cannot speak raft to a master", func(t *testing.T) {
		try := func(role string) error {
			b, err := bundle(c, role, "raft-"+role)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := master.NewRaftTransportTLS("127.0.0.1:0", quiet, b.PeerConfig(""))
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			// Term 0 is below every term: a master answers "no" and changes nothing.
			var resp raft.AppendEntriesResponse
			return tr.AppendEntries("x", leaderRaft(), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("x"), Addr: []byte("127.0.0.1:1")}}, &resp)
		}
		if err := try(tlsconf.RoleMaster); err != nil {
			t.Fatalf("a master certificate: %v", err)
		}
		for _, role := range []string{tlsconf.RoleAgent, tlsconf.RoleClient} {
			err := try(role)
			if err == nil || !strings.Contains(err.Error(), "tls") {
				t.Errorf("a %s certificate speaking raft to the leader: %v, want a TLS refusal", role, err)
			}
			t.Logf("%s: %v", role, err)
		}
	})

	t.Run("a gossip member without the master identity never becomes a voter", func(t *testing.T) {
		b, err := bundle(c, tlsconf.RoleAgent, "m9")
		if err != nil {
			t.Fatal(err)
		}
		impostorRaft, err := master.NewRaftTransportTLS("127.0.0.1:0", quiet, b.PeerConfig(""))
		if err != nil {
			t.Fatal(err)
		}
		defer impostorRaft.Close()
		// It holds the gossip key (an agent does) and claims to be a master.
		p, err := gossip.New(gossip.Config{NodeName: "master/m9", BindAddr: "127.0.0.1:0", Profile: gossip.ProfileLocal,
			Keyring: [][]byte{key1}, Logger: quiet,
			Tags: gossip.Tags{Role: gossip.RoleMaster, ID: "m9", HTTPAddr: "127.0.0.1:1",
				Extra: map[string]string{master.TagRaft: string(impostorRaft.LocalAddr()), master.TagCluster: "agora"}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Join(c.JoinAddrs()); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, time.Minute, "the leader to refuse m9 as a voter", func() bool {
			return logs.has("not adding gossip member as a raft voter", "peer=m9")
		})
		f := c.Leader().Raft().GetConfiguration()
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == "m9" {
				t.Fatal("m9 is in the raft configuration")
			}
		}
		if err := p.Leave(); err != nil {
			t.Log(err)
		}
		_ = p.Shutdown()
	})

	members := func() []*gossip.Pool {
		var ps []*gossip.Pool
		for _, m := range c.Masters() {
			ps = append(ps, m.Gossip())
		}
		return append(ps, ag.Gossip())
	}
	joinWith := func(name string, keys ...[]byte) error {
		p, err := gossip.New(gossip.Config{NodeName: name, BindAddr: "127.0.0.1:0", Profile: gossip.ProfileLocal, Keyring: keys, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.Leave(); _ = p.Shutdown() }()
		_, err = p.Join(c.JoinAddrs())
		return err
	}

	t.Run("a member without the key cannot join", func(t *testing.T) {
		if err := joinWith("agent/nokey"); err == nil {
			t.Error("a member without a key joined")
		}
		if err := joinWith("agent/wrongkey", key2); err == nil {
			t.Error("a member with another key joined")
		}
	})

	t.Run("key rotation keeps the cluster together", func(t *testing.T) {
		// Wait until every member sees exactly the 4 of us alive (the
		// impostor and probes have left).
		waitUntil(t, time.Minute, "4 members", func() bool {
			for _, p := range members() {
				n := 0
				for _, m := range p.Members() {
					if m.Status == gossip.StatusAlive {
						n++
					}
				}
				if n != 4 {
					return false
				}
			}
			return true
		})
		step := func(action agorav1.GossipKeyringAction, key []byte, want ...[]byte) {
			t.Helper()
			r, err := cl.Operator.GossipKeyring(ctx, connect.NewRequest(&agorav1.GossipKeyringRequest{Action: action, Key: b64(key)}))
			if err != nil {
				t.Fatalf("%v: %v", action, err)
			}
			if r.Msg.GetResponses() != 4 || r.Msg.GetErrors() != 0 {
				t.Fatalf("%v: %+v, want 4 answers and no errors", action, r.Msg)
			}
			var w []string
			for _, k := range want {
				w = append(w, b64(k))
			}
			for _, p := range members() {
				if got := p.LocalKeys(); !slices.Equal(got, w) {
					t.Fatalf("%v: member %s has keys %v, want %v", action, p.LocalMember().Name, got, w)
				}
			}
		}
		step(agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_INSTALL, key2, key1, key2)
		step(agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_USE, key2, key2, key1)
		step(agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_REMOVE, key1, key2)
		r, err := cl.Operator.GossipKeyring(ctx, connect.NewRequest(&agorav1.GossipKeyringRequest{Action: agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_LIST}))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Msg.GetKeys()) != 1 || r.Msg.GetKeys()[b64(key2)] != 4 || r.Msg.GetPrimaryKeys()[b64(key2)] != 4 {
			t.Fatalf("list after rotation: %+v", r.Msg)
		}
		_, err = cl.Operator.GossipKeyring(ctx, connect.NewRequest(&agorav1.GossipKeyringRequest{Action: agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_INSTALL, Key: "c2hvcnQ="}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("a 5-byte key: %v, want InvalidArgument", err)
		}
		if err := joinWith("agent/oldkey", key1); err == nil {
			t.Error("a member with the removed key joined")
		}
		if err := joinWith("agent/newkey", key2); err != nil {
			t.Errorf("a member with the new key: %v", err)
		}
		// Still one cluster: the agent is active and the leader answers.
		for _, p := range members() {
			if !slices.ContainsFunc(p.Members(), func(m gossip.Member) bool { return m.Name == "agent/a1" && m.Status == gossip.StatusAlive }) {
				t.Errorf("%s does not see the agent alive", p.LocalMember().Name)
			}
		}
		if _, err := cl.Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{})); err != nil {
			t.Fatal(err)
		}
	})
}

func bundle(c *devcluster.Cluster, role, name string) (*tlsconf.Bundle, error) {
	cert, err := c.CA().Issue(tlsconf.Request{Role: role, Name: name})
	if err != nil {
		return nil, err
	}
	return c.CA().Bundle(cert)
}
