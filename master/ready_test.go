package master_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// TestRequestsWaitForLeaderBarrier: a leader that has won an election but
// not yet applied what its predecessor committed must not judge requests
// against its stale state. After a full-cluster SIGKILL (chaos process seed
// 301) a new leader answered a framework's resubscription with "unknown
// framework" (NotFound, which the SDK takes as final) before its Barrier
// had applied the framework's registration, and the framework was gone for
// good. Requests now wait for the Barrier, and answer Unavailable (retry)
// if it does not come.
func TestRequestsWaitForLeaderBarrier(t *testing.T) {
	sc := startSchedCluster(t, nil)
	l := sc.master()
	f := schedSubscribe(t, l.HTTPURL(), schedInfo("patient", "web"))

	release := l.HoldReadyForTest()
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	resub := make(chan error, 1)
	go func() {
		info := schedInfo("patient", "web")
		info.Id = f.fid
		g, err := schedTrySubscribe(l.HTTPURL(), info)
		if g != nil {
			defer g.cancel()
		}
		resub <- err
	}()
	set := make(chan error, 1)
	op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, l.HTTPURL())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := op.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "patient", Weight: 2}}))
		set <- err
	}()
	// While the Barrier is outstanding neither request may be answered.
	select {
	case err := <-resub:
		t.Fatalf("resubscription answered before the leader was ready: %v", err)
	case err := <-set:
		t.Fatalf("SetRole answered before the leader was ready: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	released = true
	for name, ch := range map[string]chan error{"resubscribe": resub, "set role": set} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s after the leader became ready: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s not answered after the leader became ready", name)
		}
	}

	// A caller whose deadline ends first hears Unavailable (or its own
	// DeadlineExceeded): retry, not a verdict on the request. Its outcome
	// is unknown to it: the handler may still see the leader become ready
	// before it notices the deadline, so nothing is asserted about the
	// state here.
	release = l.HoldReadyForTest()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := op.DeleteRole(ctx, connect.NewRequest(&agorav1.DeleteRoleRequest{Name: "other"}))
	if code := connect.CodeOf(err); code != connect.CodeUnavailable && code != connect.CodeDeadlineExceeded {
		t.Fatalf("DeleteRole on an unready leader: %v, want Unavailable", err)
	}
	// Without a deadline of its own the caller hears the leader's
	// Unavailable once readyWait has passed, and then nothing changed: the
	// handler has returned before the leader becomes ready again.
	_, err = op.DeleteRole(context.Background(), connect.NewRequest(&agorav1.DeleteRoleRequest{Name: "patient"}))
	if code := connect.CodeOf(err); code != connect.CodeUnavailable {
		t.Fatalf("DeleteRole on a leader that stays unready: %v, want Unavailable", err)
	}
	release()
	// A read through the one client: with the fast Raft profile a loaded
	// machine can move the leadership meanwhile (a CI rehearsal's
	// ListRoles on l heard "knows no leader"); any leader's linearizable
	// read tells whether the refused DeleteRole changed the roles.
	roles, err := client.New(strings.Join(sc.c.Addrs(), ",")).Operator.ListRoles(context.Background(), connect.NewRequest(&agorav1.ListRolesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range roles.Msg.GetRoles() {
		found = found || (r.GetName() == "patient" && r.GetWeight() == 2)
	}
	if !found {
		t.Fatalf("the refused DeleteRole changed the roles: %v", roles.Msg.GetRoles())
	}
}
