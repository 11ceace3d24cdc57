package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/rpc/client"
)

// electingMaster is a leaderView whose leader the test sets.
type electingMaster struct {
	mu       sync.Mutex
	leading  bool
	leaderID string
	asked    chan struct{} // closed at the first question after creation
	once     sync.Once
}

func (e *electingMaster) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

func (e *electingMaster) Leader() (string, string) {
	e.mu.Lock()
	id := e.leaderID
	e.mu.Unlock()
	defer e.once.Do(func() { close(e.asked) }) // after the first answer
	if id == "" {
		return "", ""
	}
	return id, "http://" + id + ":1"
}

func (e *electingMaster) NotLeaderError() *connect.Error {
	id, url := e.Leader()
	if id == "" {
		return connect.NewError(connect.CodeUnavailable, errors.New("knows no leader"))
	}
	ce := connect.NewError(connect.CodeUnavailable, fmt.Errorf("the leader is %s", id))
	ce.Meta().Set(LeaderHeader, url)
	return ce
}

func (e *electingMaster) elect(id string, self bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leaderID, e.leading = id, self
}

// A Subscribe that reaches a follower during an election is answered with
// the redirect to the leader elected while it waited, not with "no leader"
// (issue 13: the framework then retried with a backoff).
func TestLeaderOrRedirectWaitsForElection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	e := &electingMaster{asked: make(chan struct{})}
	got := make(chan error, 1)
	go func() { got <- leaderOrRedirect(ctx, e, "", time.Hour) }()
	<-e.asked
	e.elect("m2", false)
	err := <-got
	if _, addr, ok := client.LeaderFromError(err); !ok || addr != "http://m2:1" {
		t.Fatalf("answer %v, want a redirect to the leader elected meanwhile", err)
	}

	// Elected itself: served.
	e = &electingMaster{asked: make(chan struct{})}
	go func() { got <- leaderOrRedirect(ctx, e, "", time.Hour) }()
	<-e.asked
	e.elect("m1", true)
	if err := <-got; err != nil {
		t.Fatalf("answer %v on the master elected meanwhile, want nil", err)
	}

	// A follower that names a leader answers at once; a caller that gives
	// up gets "no leader".
	e = &electingMaster{asked: make(chan struct{}), leaderID: "m3"}
	if _, addr, ok := client.LeaderFromError(leaderOrRedirect(ctx, e, "", time.Hour)); !ok || addr != "http://m3:1" {
		t.Fatal("a follower naming a leader did not redirect")
	}
	// A follower that names a leader the caller cannot reach (just
	// killed; the follower's heartbeat timeout has not run out) holds the
	// answer until the election that follows names another.
	e = &electingMaster{asked: make(chan struct{}), leaderID: "m3"}
	unreachable := "http://m1:1, http://m3:1"
	go func() { got <- leaderOrRedirect(ctx, e, unreachable, time.Hour) }()
	<-e.asked
	e.elect("", false) // heartbeat timeout: election
	e.elect("m2", false)
	if _, addr, ok := client.LeaderFromError(<-got); !ok || addr != "http://m2:1" {
		t.Fatal("a follower naming an unreachable leader did not wait for the next one")
	}

	// The leader elected is named even when the caller's list names it
	// too (a master killed and restarted before this election, still
	// passed over by the caller): the list is older than the election.
	e = &electingMaster{asked: make(chan struct{}), leaderID: "m3"}
	go func() { got <- leaderOrRedirect(ctx, e, unreachable, time.Hour) }()
	<-e.asked
	e.elect("m1", false)
	err = <-got
	if ctx.Err() != nil {
		t.Fatal("held until the caller gave up although a new leader was elected")
	}
	if _, addr, ok := client.LeaderFromError(err); !ok || addr != "http://m1:1" {
		t.Fatalf("answer %v, want a redirect to the new leader m1", err)
	}

	e = &electingMaster{asked: make(chan struct{})}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := leaderOrRedirect(cctx, e, "", time.Hour); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("answer %v after the caller gave up, want Unavailable", err)
	}
}
