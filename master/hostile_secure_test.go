package master_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/tlsconf"
)

// TestHostileInputsSecure is the hostile-input catalogue's part that needs
// TLS, authentication and ACLs: a single master with all three on, and
// calls without a credential, with a wrong token, with a certificate of
// the wrong role, as an agent for another agent, and as principals acting
// beyond their ACL or on another principal's framework. Each row asserts
// its code and that Raft's commit and applied indexes did not move.
func TestHostileInputsSecure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rules := map[string]auth.Rules{
		"web":    {RegisterRoles: []string{"web"}, ReserveRoles: []string{"web"}},
		"batch":  {RegisterRoles: []string{"batch"}},
		"viewer": {OperatorRead: true},
	}
	au, err := devcluster.NewAuth([]string{"a1", "a2"}, rules, true)
	if err != nil {
		t.Fatal(err)
	}
	applied := &applyLog{}
	c, err := devcluster.Start(ctx, devcluster.Options{
		Masters: 1,
		TLS:     true,
		Auth:    au,
		Logger:  testLogger(),
		OnNew:   func(_ int, m *master.Master) { m.OnApplyForTest(applied.record) },
		MasterConfig: func(cfg *master.Config) {
			cfg.LivenessGrace = time.Hour
		},
	})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	m, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addrs := strings.Join(c.Addrs(), ",")
	clientTLS, err := c.ClientTLS(tlsconf.RoleClient, "cli")
	if err != nil {
		t.Fatal(err)
	}
	agentTLS, err := c.ClientTLS(tlsconf.RoleAgent, "a1")
	if err != nil {
		t.Fatal(err)
	}
	newClient := func(opts ...client.Option) *client.Client {
		cl := client.New(addrs, append([]client.Option{client.WithCallTimeout(10 * time.Second)}, opts...)...)
		t.Cleanup(cl.CloseIdleConnections)
		return cl
	}
	as := func(principal string) *client.Client {
		return newClient(client.WithTLS(clientTLS), client.WithToken(au.Tokens[principal]))
	}
	web, batch, viewer := as("web"), as("batch"), as("viewer")
	noToken := newClient(client.WithTLS(clientTLS))
	wrongToken := newClient(client.WithTLS(clientTLS), client.WithToken("agora_not-a-token"))
	agentA1 := newClient(client.WithTLS(agentTLS), client.WithToken(au.AgentTokens["a1"]))
	clientAsA1 := newClient(client.WithTLS(clientTLS), client.WithToken(au.AgentTokens["a1"]))

	// The scene: a framework of principal web, subscribed with its token.
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := web.Scheduler.Subscribe(sctx, connect.NewRequest(&agorav1.SubscribeRequest{FrameworkInfo: &agorav1.FrameworkInfo{Name: "web-fw", Roles: []string{"web"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() || stream.Msg().GetSubscribed() == nil {
		t.Fatalf("no SUBSCRIBED: %v", stream.Err())
	}
	sub := stream.Msg().GetSubscribed()
	webCall := &agorav1.FrameworkCall{FrameworkId: sub.GetFrameworkId(), StreamToken: sub.GetStreamToken()}
	sc := &schedCluster{t: t, c: c}
	sc.quiesce()

	subscribe := func(cl *client.Client, info *agorav1.FrameworkInfo) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			s, err := cl.Scheduler.Subscribe(ctx, connect.NewRequest(&agorav1.SubscribeRequest{FrameworkInfo: info}))
			if err != nil {
				return err
			}
			defer func() { _ = s.Close() }()
			if s.Receive() {
				return nil
			}
			return s.Err()
		}
	}
	status := func(cl *client.Client, agentID string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := cl.Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: agentID,
				Statuses: []*agorav1.TaskStatus{{TaskId: "t", FrameworkId: webCall.GetFrameworkId(), AgentId: agentID, State: agorav1.TaskState_TASK_STATE_FAILED, Uuid: master.NewID()}}}))
			return err
		}
	}
	rows := []hostileRow{
		{"operator read without a token", connect.CodeUnauthenticated, func(ctx context.Context) error {
			_, err := noToken.Operator.ListFrameworks(ctx, connect.NewRequest(&agorav1.ListFrameworksRequest{}))
			return err
		}},
		{"subscribe without a token", connect.CodeUnauthenticated, subscribe(noToken, &agorav1.FrameworkInfo{Name: "x", Roles: []string{"web"}})},
		{"framework call without a token (leaked stream token)", connect.CodeUnauthenticated, func(ctx context.Context) error {
			_, err := noToken.Scheduler.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: webCall, TaskId: "t"}))
			return err
		}},
		{"operator write with a wrong token", connect.CodeUnauthenticated, func(ctx context.Context) error {
			_, err := wrongToken.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "web", Weight: 1}}))
			return err
		}},
		{"framework call with a wrong token", connect.CodeUnauthenticated, func(ctx context.Context) error {
			_, err := wrongToken.Scheduler.Teardown(ctx, connect.NewRequest(&agorav1.TeardownRequest{Call: webCall}))
			return err
		}},
		{"agent call with a client certificate (wrong role)", connect.CodePermissionDenied, status(clientAsA1, "a1")},
		{"agent a1 reports for agent a2", connect.CodePermissionDenied, status(agentA1, "a2")},
		{"agent a1 reads a2's assignments", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := agentA1.Agent.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a2"}))
			return err
		}},
		{"agent a1 registers as a2", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := agentA1.Agent.RegisterAgent(ctx, connect.NewRequest(&agorav1.RegisterAgentRequest{AgentId: "a2", Hostname: "h", Address: "127.0.0.1:1",
				Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1}}}))
			return err
		}},
		{"viewer sets a role", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := viewer.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "web", Weight: 2}}))
			return err
		}},
		{"viewer sets roles in one call", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := viewer.Operator.SetRoles(ctx, connect.NewRequest(&agorav1.SetRolesRequest{Roles: []*agorav1.Role{{Name: "web", Weight: 2}}}))
			return err
		}},
		{"viewer tears down a framework", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := viewer.Operator.TeardownFramework(ctx, connect.NewRequest(&agorav1.TeardownFrameworkRequest{FrameworkId: webCall.GetFrameworkId()}))
			return err
		}},
		{"web removes a raft peer", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := web.Operator.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: m.ID()}))
			return err
		}},
		{"batch registers under role web", connect.CodePermissionDenied, subscribe(batch, &agorav1.FrameworkInfo{Name: "b", Roles: []string{"web"}})},
		{"web claims principal viewer", connect.CodePermissionDenied, subscribe(web, &agorav1.FrameworkInfo{Name: "w", Principal: "viewer", Roles: []string{"web"}})},
		{"batch acts on web's framework with its stream token", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := batch.Scheduler.Teardown(ctx, connect.NewRequest(&agorav1.TeardownRequest{Call: webCall}))
			return err
		}},
		{"batch re-subscribes web's framework", connect.CodePermissionDenied, subscribe(batch, &agorav1.FrameworkInfo{Id: webCall.GetFrameworkId(), Name: "web-fw", Roles: []string{"web"}})},
	}
	runHostileRows(t, m, applied, rows)
}
