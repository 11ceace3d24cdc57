package gossip

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWireNameRoundTrip(t *testing.T) {
	for _, name := range []string{"agent/a1", "master/m0", "plain", "a%2Fb", "%", "x/%/y%", "%25/", ""} {
		w := wireName(name)
		if got := localName(w); got != name {
			t.Errorf("localName(wireName(%q)) = %q (wire %q)", name, got, w)
		}
		for i := 0; i < len(w); i++ {
			if w[i] == '/' {
				t.Errorf("wireName(%q) = %q still holds a slash", name, w)
			}
		}
	}
}

// A member whose name holds a slash, restarted at the same address without
// joining anyone, must be brought back by the others' periodic reconnect
// (serf joins "name/host:port"; an unescaped slash broke that).
func TestFailedMemberWithSlashIsReconnected(t *testing.T) {
	t.Parallel()
	var nodes []*node
	for i, name := range []string{"agent/r0", "agent/r1", "master/r2"} {
		n := startNode(t, name, "127.0.0.1:0", ProfileLocal, Tags{Role: RoleAgent, ID: name})
		if i > 0 {
			if _, err := n.Join([]string{nodes[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, n)
	}
	a, b, victim := nodes[0], nodes[1], nodes[2]
	waitFor(t, 10*time.Second, "pool converges", func() bool {
		return alive(a.Members()) == 3 && alive(b.Members()) == 3 && alive(victim.Members()) == 3
	})
	if victim.LocalMember().Name != "master/r2" {
		t.Fatalf("local name = %q, want master/r2", victim.LocalMember().Name)
	}
	addr := victim.Addr()
	killed := time.Now()
	victim.stop()
	waitFor(t, 15*time.Second, "failed event at both survivors", func() bool {
		_, okA := a.rec.find(EventFailed, "master/r2", killed)
		_, okB := b.rec.find(EventFailed, "master/r2", killed)
		return okA && okB
	})
	// Stay down past GossipToTheDeadTime: until then the survivors still
	// gossip to the dead member, and it would refute its death by itself.
	ea, _ := a.rec.find(EventFailed, "master/r2", killed)
	if wait := 5*time.Second + 500*time.Millisecond - time.Since(ea.at); wait > 0 {
		time.Sleep(wait) // the fault's duration, not synchronisation
	}
	back := time.Now()
	startNode(t, "master/r2", addr, ProfileLocal, Tags{Role: RoleMaster, ID: "r2"}) // joins nobody
	waitFor(t, 20*time.Second, "survivors reconnect the restarted member", func() bool {
		_, okA := a.rec.find(EventJoin, "master/r2", back)
		_, okB := b.rec.find(EventJoin, "master/r2", back)
		return okA && okB
	})
}

func TestPing(t *testing.T) {
	t.Parallel()
	nodes := startPool(t, "agent/ping", 2, ProfileLocal)
	a, b := nodes[0], nodes[1]
	name, addr := b.LocalMember().Name, b.Addr()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if rtt, err := a.Ping(ctx, name, addr); err != nil || rtt <= 0 {
		t.Fatalf("ping by name: rtt %v, err %v", rtt, err)
	}
	if _, err := a.Ping(ctx, "", addr); err != nil {
		t.Fatalf("ping without a name: %v", err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := a.Ping(short, "agent/someone-else", addr); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("ping for another name: err %v, want ErrNoAnswer", err)
	}

	b.stop()
	short3, cancel3 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel3()
	if _, err := a.Ping(short3, name, addr); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("ping of a stopped member: err %v, want ErrNoAnswer", err)
	}
	if _, err := a.Ping(short3, name, "not an address"); err == nil {
		t.Fatal("ping of a bad address succeeded")
	}
}

// Leave must not hang on serf's broadcast timeouts when nobody is left to
// hear it (a master stopping after the other masters are gone).
func TestLeaveAloneIsBounded(t *testing.T) {
	t.Parallel()
	nodes := startPool(t, "agent/leave", 2, ProfileLocal)
	a, b := nodes[0], nodes[1]
	killed := time.Now()
	b.stop()
	waitFor(t, 15*time.Second, "failure detected", func() bool {
		_, ok := a.rec.find(EventFailed, b.LocalMember().Name, killed)
		return ok
	})
	began := time.Now()
	if err := a.Leave(); err != nil {
		t.Fatalf("leave: %v", err)
	}
	// The local profile bounds Leave at ~1.2 s; serf's defaults take ~11 s.
	if d := time.Since(began); d > 4*time.Second {
		t.Fatalf("leave took %v", d)
	}
	t.Logf("leave alone took %v", time.Since(began))
}
