package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/chaos"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// With the leader SIGSTOPped, a CLI write sent to a follower that still
// names the paused leader succeeds at the next leader, well within 15s and
// without a timeout of the test's making: the client gives up on the
// paused master after its attempt deadline and tries the others.
func TestWriteThroughFollowerWithPausedLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 master processes")
	}
	// The default raft profile (1s heartbeat timeout): the followers keep
	// naming the paused leader for a while, so the CLI is sent to it.
	cl, err := chaos.NewProcessCluster(chaos.ProcessOptions{Binary: agoraBin, Dir: t.TempDir(), Masters: 3,
		ExtraMasterArgs: []string{"--raft-profile", "default"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGCONT and SIGTERM for every master, SIGKILL for any that does
		// not stop; the processes also die with the test (Pdeathsig).
		if err := cl.Close(); err != nil {
			t.Error(err)
		}
	})
	for i := range cl.Masters() {
		if err := cl.StartMaster(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	urls := cl.MasterURLs()

	// Wait until every master names the same leader with its address.
	leader := -1
	eventually(t, 30*time.Second, "a leader known to every master", func() (bool, string) {
		leader = -1
		for i, u := range urls {
			st, err := stableStatus(u)
			if err != nil {
				return false, err.Error()
			}
			li := indexOf(urls, st.GetLeader().GetHttpAddress())
			if li < 0 || (leader >= 0 && li != leader) {
				return false, fmt.Sprintf("master %d names leader %v", i, st.GetLeader())
			}
			leader = li
		}
		return true, ""
	})
	follower := (leader + 1) % len(urls)

	if err := cl.PauseMaster(leader); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.ResumeMaster(leader) })
	// The follower still names the paused master: the CLI will be sent there.
	st, err := stableStatus(urls[follower])
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetLeader().GetHttpAddress(); got != urls[leader] {
		t.Fatalf("follower names leader %q right after the pause, want the paused %q", got, urls[leader])
	}

	// The safety net only: a client that hangs fails the duration check
	// long before it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agoraBin, "role", "set", "paused-leader", "--weight", "2", "--addr", urls[follower])
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	t.Logf("agora role set through a follower with the leader paused: %s, %q", took.Round(time.Millisecond), strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("agora role set: %v after %s: %s", err, took, out)
	}
	if took > 15*time.Second {
		t.Fatalf("agora role set took %s, want well within 15s", took)
	}
	if !strings.Contains(string(out), "role paused-leader set") {
		t.Fatalf("output %q", out)
	}

	// The role is there on the new leader (a linearizable read).
	out2, stderr, code := agora(t, "roles", "--json", "--addr", urls[follower])
	if code != 0 {
		t.Fatalf("agora roles: exit %d: %s", code, stderr)
	}
	roles := mustJSON[[]map[string]any](t, out2)
	found := false
	for _, r := range roles {
		found = found || (r["name"] == "paused-leader" && r["weight"] == 2.0)
	}
	if !found {
		t.Fatalf("role paused-leader not in %s", out2)
	}
	st, err = stableStatus(urls[follower])
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetLeader().GetHttpAddress(); got == urls[leader] || got == "" {
		t.Fatalf("leader after the write is %q, want a new one", got)
	}
}

// stableStatus asks one master for its own view (a stale read), with a
// short bound.
func stableStatus(u string) (*agorav1.GetStatusResponse, error) {
	c := client.New(u, client.WithCallTimeout(2*time.Second), client.WithAttemptTimeout(2*time.Second))
	resp, err := c.Operator.GetStatus(context.Background(), connect.NewRequest(&agorav1.GetStatusRequest{Read: &agorav1.ReadOptions{Stale: true}}))
	if err != nil {
		return nil, err
	}
	if resp.Msg == nil {
		return nil, errors.New("empty status")
	}
	return resp.Msg, nil
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
