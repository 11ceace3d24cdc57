package master

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/gossip"
)

// neverFuture is a Raft future that is never answered, like an Apply
// future whose entry was committed but not handed to the FSM when Raft
// shut down (hashicorp/raft v1.7.3 gives such futures no shutdown channel).
type neverFuture struct{ block chan struct{} }

func (f neverFuture) Error() error { <-f.block; return nil }

// TestWaitFutureEndsOnStop: a wait on a future that Raft never answers
// ends once the master begins to stop, with ErrRaftShutdown, so teardown
// (which waits for the leader's loops) cannot hang on it; an answered
// future gives its own result.
func TestWaitFutureEndsOnStop(t *testing.T) {
	m, err := New(Config{ID: "m1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:" + freePort(t),
		GossipAddr: "127.0.0.1:0", BootstrapExpect: 1, GossipProfile: gossip.ProfileLocal,
		RaftProfile: RaftProfileFast, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	answered := neverFuture{block: make(chan struct{})}
	close(answered.block)
	if err := m.waitFuture(answered); err != nil {
		t.Fatalf("answered future: %v", err)
	}
	never := neverFuture{block: make(chan struct{})}
	defer close(never.block)
	done := make(chan error, 1)
	go func() { done <- m.waitFuture(never) }()
	select {
	case err := <-done:
		t.Fatalf("wait ended before the stop: %v", err)
	case <-time.After(100 * time.Millisecond): // nothing may happen in this window
	}
	m.beginStop()
	select {
	case err := <-done:
		if !errors.Is(err, raft.ErrRaftShutdown) {
			t.Fatalf("wait ended with %v, want ErrRaftShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait on an unanswered future did not end when the master began to stop")
	}
}
