package devcluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
	"github.com/agora-sched/agora/tlsconf"
)

// secureRules is the ACL of the secure cluster tests: web runs the web
// role's frameworks, batch the batch role's, viewer only reads, ops
// operates.
func secureRules() map[string]auth.Rules {
	return map[string]auth.Rules{
		"web":    {RegisterRoles: []string{"web"}, ReserveRoles: []string{"web"}, UnreserveRoles: []string{"web"}, CreateVolumeRoles: []string{"web"}, DestroyVolumeRoles: []string{"web"}},
		"batch":  {RegisterRoles: []string{"batch"}},
		"viewer": {OperatorRead: true},
		"ops":    {OperatorRead: true, OperatorWrite: []string{"*"}, TeardownFrameworks: true},
	}
}

// launcher launches one task on its first offer and reports updates.
type launcher struct {
	mu       sync.Mutex
	launched bool
	offers   chan *agorav1.Offer
	updates  chan *agorav1.TaskStatus
	subs     chan string
}

func newLauncher() *launcher {
	return &launcher{offers: make(chan *agorav1.Offer, 64), updates: make(chan *agorav1.TaskStatus, 64), subs: make(chan string, 8)}
}

func (l *launcher) Subscribed(_ framework.Driver, id string, _ bool) {
	select {
	case l.subs <- id:
	default:
	}
}

func (l *launcher) Offers(d framework.Driver, offers []*agorav1.Offer) {
	for _, o := range offers {
		select {
		case l.offers <- o:
		default:
		}
	}
	l.mu.Lock()
	first := !l.launched && len(offers) > 0
	l.launched = l.launched || first
	l.mu.Unlock()
	if !first {
		return
	}
	o := offers[0]
	task := &agorav1.TaskInfo{TaskId: "web-1", Name: "web-1", AgentId: o.GetAgentId(),
		Resources: resourcepb.ToProto("", resources.MustParse("cpus:0.1;mem:32")),
		Command:   &agorav1.CommandInfo{Value: "sleep 600"}}
	_ = d.Accept(context.Background(), []string{o.GetId()}, []*agorav1.Operation{{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{task}}}, nil)
}
func (l *launcher) Rescind(framework.Driver, string) {}
func (l *launcher) Update(d framework.Driver, st *agorav1.TaskStatus) {
	select {
	case l.updates <- st:
	default:
	}
}
func (l *launcher) Failure(framework.Driver, string) {}
func (l *launcher) Error(framework.Driver, string)   {}

func wantCode(t *testing.T, what string, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Errorf("%s: got %v, want %v", what, err, code)
	}
}

// A 3-master, 2-agent cluster with TLS, a gossip key, authentication and
// ACLs: a framework with the right token works end to end through a
// leader failover, and every kind of impostor is refused with its code.
func TestSecureClusterAuthAndACL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	au, err := devcluster.NewAuth([]string{"a1", "a2"}, secureRules(), true)
	if err != nil {
		t.Fatal(err)
	}
	au.AuditLog = true
	c, err := devcluster.Start(ctx, devcluster.Options{
		TLS:           true,
		GossipKeyring: [][]byte{[]byte("0123456789abcdef")},
		Auth:          au,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2"} {
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: id, Resources: "cpus:2;mem:1024"}); err != nil {
			t.Fatal(err)
		}
	}
	clientTLS, err := c.ClientTLS(tlsconf.RoleClient, "cli")
	if err != nil {
		t.Fatal(err)
	}
	addrs := strings.Join(c.Addrs(), ",")
	as := func(principal string) *client.Client {
		cl := client.New(addrs, client.WithTLS(clientTLS), client.WithToken(au.Tokens[principal]), client.WithCallTimeout(20*time.Second))
		t.Cleanup(cl.CloseIdleConnections)
		return cl
	}
	ops, viewer, web, batch := as("ops"), as("viewer"), as("web"), as("batch")

	waitUntil(t, time.Minute, "both agents registered with their tokens", func() bool {
		r, err := ops.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
		return err == nil && len(r.Msg.GetAgents()) == 2
	})

	// The web framework, through the SDK with its token.
	files, err := c.IssueTLS(tlsconf.RoleClient, "web-fw")
	if err != nil {
		t.Fatal(err)
	}
	l := newLauncher()
	fctx, fcancel := context.WithCancel(ctx)
	fdone := make(chan error, 1)
	go func() {
		fdone <- framework.Run(fctx, framework.Config{Masters: c.Addrs(), TLS: files, Token: au.Tokens["web"],
			Info: &agorav1.FrameworkInfo{Name: "web-fw", Roles: []string{"web"}, FailoverTimeoutSeconds: 300}}, l)
	}()
	defer func() { fcancel(); <-fdone }()
	var fid string
	select {
	case fid = <-l.subs:
	case err := <-fdone:
		t.Fatalf("framework ended: %v", err)
	case <-ctx.Done():
		t.Fatal("web framework never subscribed")
	}
	waitRunning := func(what string) {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			select {
			case st := <-l.updates:
				if st.GetTaskId() == "web-1" && st.GetState() == agorav1.TaskState_TASK_STATE_RUNNING {
					return
				}
			case <-deadline:
				t.Fatalf("%s: web-1 never RUNNING", what)
			}
		}
	}
	waitRunning("launch")

	t.Run("the framework's principal is recorded and shown", func(t *testing.T) {
		r, err := viewer.Operator.ListFrameworks(ctx, connect.NewRequest(&agorav1.ListFrameworksRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Msg.GetFrameworks()) != 1 || r.Msg.GetFrameworks()[0].GetInfo().GetPrincipal() != "web" {
			t.Fatalf("frameworks %v, want one of principal web", r.Msg.GetFrameworks())
		}
	})

	t.Run("missing and wrong tokens are Unauthenticated", func(t *testing.T) {
		none := client.New(addrs, client.WithTLS(clientTLS))
		defer none.CloseIdleConnections()
		_, err := none.Operator.ListFrameworks(ctx, connect.NewRequest(&agorav1.ListFrameworksRequest{}))
		wantCode(t, "no token", err, connect.CodeUnauthenticated)
		wrong := client.New(addrs, client.WithTLS(clientTLS), client.WithToken("agora_not-a-token"))
		defer wrong.CloseIdleConnections()
		_, err = wrong.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "web"}}))
		wantCode(t, "wrong token", err, connect.CodeUnauthenticated)
		st, err := wrong.Scheduler.Subscribe(ctx, connect.NewRequest(&agorav1.SubscribeRequest{FrameworkInfo: &agorav1.FrameworkInfo{Name: "x", Roles: []string{"web"}}}))
		if err == nil {
			for st.Receive() {
			}
			err = st.Err()
			_ = st.Close()
		}
		wantCode(t, "subscribe with a wrong token", err, connect.CodeUnauthenticated)
	})

	t.Run("operator reads and writes follow the ACL", func(t *testing.T) {
		_, err := web.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
		wantCode(t, "web lists agents", err, connect.CodePermissionDenied)
		_, err = viewer.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "web", Weight: 2}}))
		wantCode(t, "viewer sets a role", err, connect.CodePermissionDenied)
		_, err = viewer.Operator.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: "m1"}))
		wantCode(t, "viewer removes a peer", err, connect.CodePermissionDenied)
		_, err = web.Operator.GossipKeyring(ctx, connect.NewRequest(&agorav1.GossipKeyringRequest{Action: agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_LIST}))
		wantCode(t, "web lists gossip keys", err, connect.CodePermissionDenied)
		_, err = ops.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: "batch", Weight: 1}}))
		if err != nil {
			t.Errorf("ops sets a role: %v", err)
		}
	})

	t.Run("a framework may not claim a role or principal it is not granted", func(t *testing.T) {
		subscribe := func(cl *client.Client, info *agorav1.FrameworkInfo) error {
			st, err := cl.Scheduler.Subscribe(ctx, connect.NewRequest(&agorav1.SubscribeRequest{FrameworkInfo: info}))
			if err != nil {
				return err
			}
			defer st.Close()
			for st.Receive() {
				if st.Msg().GetSubscribed() != nil {
					return nil
				}
			}
			return st.Err()
		}
		wantCode(t, "batch claims role web", subscribe(batch, &agorav1.FrameworkInfo{Name: "b", Roles: []string{"web"}}), connect.CodePermissionDenied)
		wantCode(t, "batch claims the default role", subscribe(batch, &agorav1.FrameworkInfo{Name: "b"}), connect.CodePermissionDenied)
		wantCode(t, "batch claims principal web", subscribe(batch, &agorav1.FrameworkInfo{Name: "b", Roles: []string{"batch"}, Principal: "web"}), connect.CodePermissionDenied)
		wantCode(t, "batch resubscribes as web's framework", subscribe(batch, &agorav1.FrameworkInfo{Id: fid, Name: "web-fw", Roles: []string{"batch"}}), connect.CodePermissionDenied)
	})

	t.Run("a principal may not act on another's framework", func(t *testing.T) {
		_, err := batch.Operator.TeardownFramework(ctx, connect.NewRequest(&agorav1.TeardownFrameworkRequest{FrameworkId: fid}))
		wantCode(t, "batch tears down web's framework", err, connect.CodePermissionDenied)
		_, err = batch.Scheduler.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: &agorav1.FrameworkCall{FrameworkId: fid, StreamToken: "guess"}, TaskId: "web-1"}))
		wantCode(t, "batch kills web's task", err, connect.CodePermissionDenied)
	})

	t.Run("an agent reports and reads only for itself", func(t *testing.T) {
		agentTLS, err := c.ClientTLS(tlsconf.RoleAgent, "a1")
		if err != nil {
			t.Fatal(err)
		}
		a1 := client.New(addrs, client.WithTLS(agentTLS), client.WithToken(au.AgentTokens["a1"]))
		defer a1.CloseIdleConnections()
		r, err := ops.Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
		if err != nil || len(r.Msg.GetTasks()) != 1 {
			t.Fatalf("tasks %v %v", r, err)
		}
		task := r.Msg.GetTasks()[0]
		other := "a1"
		if task.GetAgentId() == "a1" {
			other = "a2"
		}
		forged := &agorav1.TaskStatus{TaskId: task.GetId(), FrameworkId: fid, AgentId: task.GetAgentId(), State: agorav1.TaskState_TASK_STATE_FAILED, Uuid: "forged"}
		owner := client.New(addrs, client.WithTLS(agentTLS), client.WithToken(au.AgentTokens[other]))
		defer owner.CloseIdleConnections()
		// The other agent's credential reporting the task's own agent id:
		_, err = owner.Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: task.GetAgentId(), Statuses: []*agorav1.TaskStatus{forged}}))
		wantCode(t, "agent "+other+" reports as agent "+task.GetAgentId(), err, connect.CodePermissionDenied)
		// ... and its own id, for a task that runs elsewhere (the FSM's check).
		_, err = owner.Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: other, Statuses: []*agorav1.TaskStatus{forged}}))
		wantCode(t, "agent "+other+" reports a task of "+task.GetAgentId(), err, connect.CodePermissionDenied)
		_, err = owner.Agent.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: task.GetAgentId()}))
		wantCode(t, "agent "+other+" reads "+task.GetAgentId()+"'s assignments", err, connect.CodePermissionDenied)
		// A client principal is no agent, even with an agent certificate.
		webAsAgent := client.New(addrs, client.WithTLS(agentTLS), client.WithToken(au.Tokens["web"]))
		defer webAsAgent.CloseIdleConnections()
		_, err = webAsAgent.Agent.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a1"}))
		wantCode(t, "web reads assignments", err, connect.CodePermissionDenied)
		r, err = ops.Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
		if err != nil || r.Msg.GetTasks()[0].GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
			t.Fatalf("after the forgeries the task is %v (%v), want RUNNING", r.Msg.GetTasks(), err)
		}
	})

	t.Run("metrics and pprof need operator read", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 20 * time.Second}
		defer hc.CloseIdleConnections()
		get := func(path, token string) int {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Addrs()[0]+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		for _, c := range []struct {
			path, principal string
			want            int
		}{
			{"/metrics", "", http.StatusUnauthorized},
			{"/metrics", "web", http.StatusForbidden},
			{"/metrics", "viewer", http.StatusOK},
			{"/debug/pprof/", "web", http.StatusForbidden},
			{"/debug/pprof/", "ops", http.StatusOK},
		} {
			if got := get(c.path, au.Tokens[c.principal]); got != c.want {
				t.Errorf("GET %s as %q: %d, want %d", c.path, c.principal, got, c.want)
			}
		}
	})

	t.Run("the framework survives a leader failover", func(t *testing.T) {
		old := c.LeaderIndex()
		c.Kill(old)
		if _, err := c.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-l.subs:
			if id != fid {
				t.Fatalf("resubscribed as %s, want %s", id, fid)
			}
		case <-ctx.Done():
			t.Fatal("the framework never resubscribed to the new leader")
		}
		rs, err := web.Scheduler.Reconcile(ctx, connect.NewRequest(&agorav1.ReconcileRequest{}))
		wantCode(t, "reconcile without the stream token", err, connect.CodeInvalidArgument)
		_ = rs
		waitUntil(t, time.Minute, "web-1 RUNNING after failover", func() bool {
			r, err := viewer.Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
			return err == nil && len(r.Msg.GetTasks()) == 1 && r.Msg.GetTasks()[0].GetState() == agorav1.TaskState_TASK_STATE_RUNNING
		})
		if err := c.Restart(ctx, old); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the audit log records writes and refusals", func(t *testing.T) {
		var lines []map[string]any
		for _, m := range c.Configs() {
			f, err := os.Open(c.AuditLogPath(m.ID))
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var e map[string]any
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("audit line %q: %v", sc.Text(), err)
				}
				lines = append(lines, e)
			}
			_ = f.Close()
		}
		find := func(principal, procSuffix, result string) bool {
			for _, e := range lines {
				if e["principal"] == principal && strings.HasSuffix(e["procedure"].(string), procSuffix) && e["result"] == result {
					return true
				}
			}
			return false
		}
		for _, w := range []struct{ principal, proc, result string }{
			{"web", "/Subscribe", "ok"},
			{"web", "/Accept", "ok"},
			{"ops", "/SetRole", "ok"},
			{"viewer", "/SetRole", "permission_denied"},
			{"batch", "/TeardownFramework", "permission_denied"},
			{"", "/ListFrameworks", "unauthenticated"},
			{"agent-a1", "/RegisterAgent", "ok"},
		} {
			if !find(w.principal, w.proc, w.result) {
				t.Errorf("no audit line for %s %s %s", w.principal, w.proc, w.result)
			}
		}
		for _, e := range lines {
			if e["time"] == nil || e["master"] == nil {
				t.Fatalf("audit line without time or master: %v", e)
			}
		}
	})
}
