package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/freeport"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestConfigDefaults(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without an id succeeded")
	}
	base := Config{ID: "m1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0"}
	bad := base
	bad.RaftProfile = "turbo"
	if _, err := New(bad); err == nil {
		t.Fatal("unknown raft profile accepted")
	}
	c := base
	c.GossipProfile = gossip.ProfileLocal
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Config()
	if got.Cluster != "agora" || got.RaftProfile != RaftProfileDefault || got.LivenessGrace != 3*time.Second ||
		got.OfferTimeout != time.Minute || got.AllocationInterval != 5*time.Millisecond || got.AgentRemovalRate != 10 {
		t.Fatalf("defaults: %+v", got)
	}
}

func TestRejectionError(t *testing.T) {
	for code, want := range map[fsm.Code]connect.Code{
		fsm.CodeInvalidArgument:    connect.CodeInvalidArgument,
		fsm.CodeNotFound:           connect.CodeNotFound,
		fsm.CodeFailedPrecondition: connect.CodeFailedPrecondition,
		fsm.CodePermissionDenied:   connect.CodePermissionDenied,
		fsm.CodeAlreadyExists:      connect.CodeAlreadyExists,
		fsm.CodeResourceExhausted:  connect.CodeResourceExhausted,
	} {
		e := RejectionError(&fsm.Rejection{Code: code, Message: "no such thing"})
		if e.Code() != want || e.Message() != "no such thing" {
			t.Errorf("%v -> %v %q", code, e.Code(), e.Message())
		}
	}
	if RejectionError(nil) != nil {
		t.Error("nil rejection mapped to an error")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	p, err := freeport.TCPUDP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

// TestSingleMasterRestart: one master bootstraps itself, writes, stops and
// restarts from its data dir without bootstrapping again.
func TestSingleMasterRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{
		ID: "m1", DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:" + freePort(t),
		GossipAddr: "127.0.0.1:0", BootstrapExpect: 1, GossipProfile: gossip.ProfileLocal,
		RaftProfile: RaftProfileFast, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func() *Master {
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		for !m.LeaderReady() {
			if ctx.Err() != nil {
				t.Fatal("no leadership")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return m
	}
	m := start()
	if m.hadRaft {
		t.Fatal("fresh data dir reported existing raft state")
	}
	if _, exists := m.State().Role("r"); exists {
		t.Fatal("role exists before it was written")
	}
	res, err := m.Apply(ctx, fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "r", Weight: 2}})
	if err != nil || res.Index == 0 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	_, err = m.Apply(ctx, fsm.CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: "missing"})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("rejected apply: %v, want NotFound", err)
	}
	st, err := m.ReadState(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := st.Role("r"); !ok || r.GetWeight() != 2 {
		t.Fatalf("linearizable read lacks the write: %v", r)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(ctx, fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "x"}}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("apply after shutdown: %v, want Unavailable", err)
	}

	m = start()
	defer m.Kill()
	if !m.hadRaft {
		t.Fatal("restart did not see its raft state")
	}
	f := m.raft.GetConfiguration()
	if err := f.Error(); err != nil || len(f.Configuration().Servers) != 1 {
		t.Fatalf("configuration after restart: %v %v", f.Configuration(), err)
	}
	st, err = m.ReadState(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Role("r"); !ok {
		t.Fatal("write lost across restart")
	}
}

func TestNotLeaderErrorWithoutLeader(t *testing.T) {
	m, err := New(Config{ID: "m1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:" + freePort(t),
		GossipAddr: "127.0.0.1:0", GossipProfile: gossip.ProfileLocal, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	// BootstrapExpect 0: never bootstraps, so no leader ever exists.
	_, err = m.Apply(context.Background(), fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "r"}})
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable || len(ce.Details()) != 0 || ce.Meta().Get(LeaderHeader) != "" {
		t.Fatalf("apply without leader: %v", err)
	}
	if _, err := m.ReadState(context.Background(), false); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("linearizable read without leader: %v", err)
	}
	if _, err := m.ReadState(context.Background(), true); err != nil {
		t.Fatalf("stale read without leader: %v", err)
	}
}
