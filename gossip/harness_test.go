package gossip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// testLogger discards gossip logs unless AGORA_TEST_LOG is set: a pool of
// 100 members logs a lot, and failure tests log errors on purpose.
func testLogger() *slog.Logger {
	if os.Getenv("AGORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// recorder keeps every event a pool emits, stamped with when it was read.
type recorder struct {
	mu     sync.Mutex
	events []stamped
	done   chan struct{}
}

type stamped struct {
	Event
	at time.Time
}

func record(p *Pool) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for e := range p.Events() {
			now := time.Now()
			r.mu.Lock()
			r.events = append(r.events, stamped{e, now})
			r.mu.Unlock()
		}
	}()
	return r
}

// find returns the first event of typ for name read at or after since.
func (r *recorder) find(typ EventType, name string, since time.Time) (stamped, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Type == typ && e.Member.Name == name && !e.at.Before(since) {
			return e, true
		}
	}
	return stamped{}, false
}

// node is a pool plus its recorded events.
type node struct {
	*Pool
	rec *recorder
}

func (n *node) stop() {
	_ = n.Shutdown()
	<-n.rec.done
}

func startNode(t testing.TB, name, bind string, profile Profile, tags Tags) *node {
	t.Helper()
	return startNodeConfig(t, Config{NodeName: name, BindAddr: bind, Profile: profile, Tags: tags})
}

func startNodeConfig(t testing.TB, cfg Config) *node {
	t.Helper()
	name := cfg.NodeName
	cfg.Logger = testLogger()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	n := &node{Pool: p, rec: record(p)}
	t.Cleanup(n.stop)
	return n
}

// startPool starts size members named prefix-i, joins them all to the
// first and waits until every member sees every other alive.
func startPool(t testing.TB, prefix string, size int, profile Profile) []*node {
	t.Helper()
	return startPoolConfig(t, prefix, size, Config{Profile: profile})
}

// startPoolConfig is startPool with every member built from base.
func startPoolConfig(t testing.TB, prefix string, size int, base Config) []*node {
	t.Helper()
	began := time.Now()
	nodes := make([]*node, size)
	for i := range nodes {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		cfg := base
		cfg.NodeName, cfg.BindAddr, cfg.Tags = name, "127.0.0.1:0", Tags{Role: RoleAgent, ID: name}
		nodes[i] = startNodeConfig(t, cfg)
		if i > 0 {
			// A newcomer learns the pool from the push-pull with the
			// members it contacts; the previous newcomer knows the most,
			// a random older one spreads the load.
			seeds := []string{nodes[i-1].Addr(), nodes[rand.IntN(i)].Addr()}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := nodes[i].JoinRetry(ctx, seeds)
			cancel()
			if err != nil {
				t.Fatalf("join %s: %v", name, err)
			}
		}
	}
	t.Logf("%d members started in %v", size, time.Since(began))
	// Members copies every member's tags under serf's lock, so polling
	// 100 members every 10 ms would starve serf itself: check each member
	// until it has converged, then all of them once more.
	pending := nodes
	waitForEvery(t, 60*time.Second, 100*time.Millisecond, "pool converges", func() bool {
		var still []*node
		for _, n := range pending {
			if alive(n.Members()) != size {
				still = append(still, n)
			}
		}
		pending = still
		if len(pending) > 0 {
			return false
		}
		for _, n := range nodes {
			if alive(n.Members()) != size {
				pending = append(pending, n)
			}
		}
		return len(pending) == 0
	})
	t.Logf("%d members converged in %v", size, time.Since(began))
	return nodes
}

func alive(ms []Member) int {
	c := 0
	for _, m := range ms {
		if m.Status == StatusAlive {
			c++
		}
	}
	return c
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForEvery(t, d, 10*time.Millisecond, what, cond)
}

func waitForEvery(t testing.TB, d, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(every)
	}
}
