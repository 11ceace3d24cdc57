package master_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// SetRoles judges and answers each role on its own: valid ones are
// committed (and listed), refused ones get their own code and message and
// do not stop the others; a follower redirects the whole call, and an
// empty call is refused.
func TestSetRolesAnswersEachRole(t *testing.T) {
	c := startCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	li := c.LeaderIndex()
	op := agorav1connect.NewOperatorServiceClient(client.DefaultHTTPClient(), c.Addrs()[li])

	roles := []*agorav1.Role{
		{Name: "alpha", Weight: 2},
		{Name: "Not A Name", Weight: 1},
		{Name: "beta", Weight: 3},
		{Name: "gamma", Weight: -1},
	}
	resp, err := op.SetRoles(ctx, connect.NewRequest(&agorav1.SetRolesRequest{Roles: roles}))
	if err != nil {
		t.Fatal(err)
	}
	res := resp.Msg.GetResults()
	if len(res) != len(roles) {
		t.Fatalf("%d results for %d roles", len(res), len(roles))
	}
	for _, i := range []int{0, 2} {
		if res[i].GetCode() != "" || res[i].GetIndex() == 0 {
			t.Errorf("role %s: got %v, want an index", roles[i].GetName(), res[i])
		}
	}
	for _, i := range []int{1, 3} {
		if res[i].GetCode() != connect.CodeInvalidArgument.String() || res[i].GetIndex() != 0 || res[i].GetMessage() == "" {
			t.Errorf("role %q: got %v, want invalid_argument with a message", roles[i].GetName(), res[i])
		}
	}
	names, err := roleNames(t, op, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := hasAll(names, "alpha", "beta"); err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 {
		t.Fatalf("roles %v, want alpha and beta only", names)
	}

	fop := agorav1connect.NewOperatorServiceClient(client.DefaultHTTPClient(), c.Addrs()[followerIndex(c)])
	_, err = fop.SetRoles(ctx, connect.NewRequest(&agorav1.SetRolesRequest{Roles: roles[:1]}))
	if _, addr, ok := client.LeaderFromError(err); !ok || addr != c.Addrs()[li] {
		t.Fatalf("follower answered %v, want a redirect to %s", err, c.Addrs()[li])
	}
	if _, err := op.SetRoles(ctx, connect.NewRequest(&agorav1.SetRolesRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("empty SetRoles: got %v, want InvalidArgument", err)
	}
}

// Concurrent SetRole calls through one client are carried by SetRoles and
// each still gets its own verdict from the cluster.
func TestConcurrentSetRoleThroughClient(t *testing.T) {
	c := startCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := client.New(c.Addrs()[c.LeaderIndex()], client.WithWritesInFlight(1))
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			name := "ok" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			if i%4 == 0 {
				name = "Bad Name"
			}
			_, err := cl.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: name, Weight: 1}}))
			if i%4 == 0 {
				if connect.CodeOf(err) != connect.CodeInvalidArgument {
					errs <- fmt.Errorf("%q: got %v, want InvalidArgument", name, err)
					return
				}
				err = nil
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	names, err := roleNames(t, cl.Operator, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n-n/4 {
		t.Fatalf("%d roles set, want %d", len(names), n-n/4)
	}
}
