package chaos

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
	"github.com/agora-sched/agora/tlsconf"
)

func pollFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

// oneTask launches task "p-1" on its first offer and records its states.
type oneTask struct {
	mu       sync.Mutex
	launched bool
	state    agorav1.TaskState
	subs     chan string
}

func (s *oneTask) Subscribed(_ framework.Driver, id string, _ bool) {
	select {
	case s.subs <- id:
	default:
	}
}
func (s *oneTask) Offers(d framework.Driver, offers []*agorav1.Offer) {
	s.mu.Lock()
	first := !s.launched
	s.launched = true
	s.mu.Unlock()
	if !first {
		return
	}
	o := offers[0]
	task := &agorav1.TaskInfo{TaskId: "p-1", Name: "p-1", AgentId: o.GetAgentId(),
		Resources: resourcepb.ToProto("", resources.MustParse("cpus:0.1;mem:32")), Command: &agorav1.CommandInfo{Value: "sleep 600"}}
	_ = d.Accept(context.Background(), []string{o.GetId()}, []*agorav1.Operation{{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{task}}}, nil)
}
func (s *oneTask) Rescind(framework.Driver, string) {}
func (s *oneTask) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	s.mu.Lock()
	s.state = st.GetState()
	s.mu.Unlock()
}
func (s *oneTask) Failure(framework.Driver, string) {}
func (s *oneTask) Error(framework.Driver, string)   {}
func (s *oneTask) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == agorav1.TaskState_TASK_STATE_RUNNING
}

// TestSecureProcessCluster: 3 master and 2 agent processes with TLS, a
// gossip key, authentication and ACLs. A framework with the right token
// gets offers, launches, sees RUNNING and survives the leader's SIGKILL;
// a missing or wrong token, a certificate of the wrong role, a gossip
// member without the key, a role the principal may not use, another's
// framework and an agent reporting for another agent are refused.
func TestSecureProcessCluster(t *testing.T) {
	cl, err := NewProcessCluster(ProcessOptions{Binary: agoraBinary(t), Dir: t.TempDir(), Masters: 3, Agents: 2, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := range cl.Masters() {
		if err := cl.StartMaster(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range cl.Agents() {
		if err := cl.StartAgent(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	pc := cl.(*processCluster)
	sec := pc.sec
	addrs := strings.Join(cl.MasterURLs(), ",")
	ops := newClient(cl, addrs, client.WithCallTimeout(20*time.Second))
	defer ops.CloseIdleConnections()
	pollFor(t, time.Minute, "both agents registered", func() bool {
		r, err := ops.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
		return err == nil && len(r.Msg.GetAgents()) == 2
	})

	// A framework with the right credentials, end to end.
	s := &oneTask{subs: make(chan string, 4)}
	fcfg := framework.Config{Masters: cl.MasterURLs(), Logger: slog.New(slog.DiscardHandler),
		Info: &agorav1.FrameworkInfo{Name: "secure-fw", Roles: []string{"web"}, FailoverTimeoutSeconds: 300}}
	secureFramework(cl, &fcfg)
	fctx, fcancel := context.WithCancel(ctx)
	fdone := make(chan error, 1)
	go func() { fdone <- framework.Run(fctx, fcfg, s) }()
	defer func() { fcancel(); <-fdone }()
	var fid string
	select {
	case fid = <-s.subs:
	case err := <-fdone:
		t.Fatalf("framework ended: %v", err)
	case <-ctx.Done():
		t.Fatal("never subscribed")
	}
	pollFor(t, time.Minute, "p-1 RUNNING", s.running)

	want := func(what string, err error, code connect.Code) {
		t.Helper()
		if connect.CodeOf(err) != code {
			t.Errorf("%s: %v, want %v", what, err, code)
		}
	}
	withTok := func(tok string, tlsFiles tlsconf.Files) *client.Client {
		b, err := tlsFiles.Load()
		if err != nil {
			t.Fatal(err)
		}
		c := client.New(addrs, client.WithTLS(b.ClientConfig(tlsconf.DefaultCluster)), client.WithToken(tok), client.WithCallTimeout(20*time.Second))
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	certFiles := func(name string) tlsconf.Files {
		return tlsconf.Files{CA: sec.ca.CA, Cert: filepath.Join(sec.dir, name+".pem"), Key: filepath.Join(sec.dir, name+"-key.pem")}
	}
	clientCert := certFiles(chaosPrincipal)

	_, err = withTok("", clientCert).Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
	want("no token", err, connect.CodeUnauthenticated)
	_, err = withTok("agora_wrong", clientCert).Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
	want("a wrong token", err, connect.CodeUnauthenticated)
	_, err = withTok(sec.agentTok[0], clientCert).Agent.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a0"}))
	want("an agent's token with a client certificate (wrong role)", err, connect.CodePermissionDenied)

	limited := withTok(sec.limitedTok, clientCert)
	st, err := limited.Scheduler.Subscribe(ctx, connect.NewRequest(&agorav1.SubscribeRequest{FrameworkInfo: &agorav1.FrameworkInfo{Name: "x", Roles: []string{"web"}}}))
	if err == nil {
		for st.Receive() {
			if st.Msg().GetSubscribed() != nil {
				break
			}
		}
		err = st.Err()
		_ = st.Close()
	}
	want("limited claims role web", err, connect.CodePermissionDenied)
	_, err = limited.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
	want("limited makes an operator read", err, connect.CodePermissionDenied)
	_, err = limited.Operator.TeardownFramework(ctx, connect.NewRequest(&agorav1.TeardownFrameworkRequest{FrameworkId: fid}))
	want("limited tears down another's framework", err, connect.CodePermissionDenied)

	tasks, err := ops.Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
	if err != nil || len(tasks.Msg.GetTasks()) != 1 {
		t.Fatalf("tasks %v %v", tasks, err)
	}
	task := tasks.Msg.GetTasks()[0]
	other := 0
	if task.GetAgentId() == "a0" {
		other = 1
	}
	forger := withTok(sec.agentTok[other], certFiles("a"+string(rune('0'+other))))
	_, err = forger.Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: task.GetAgentId(),
		Statuses: []*agorav1.TaskStatus{{TaskId: task.GetId(), FrameworkId: fid, AgentId: task.GetAgentId(), State: agorav1.TaskState_TASK_STATE_FAILED, Uuid: "forged"}}}))
	want("an agent reports another agent's task", err, connect.CodePermissionDenied)

	p, err := gossip.New(gossip.Config{NodeName: "agent/nokey", BindAddr: "127.0.0.1:0", Profile: gossip.ProfileLocal, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Join(pc.joins); err == nil {
		t.Error("a gossip member without the key joined")
	}
	_ = p.Shutdown()

	// Leader failover: the framework resubscribes and its task still runs.
	leader := -1
	for i, u := range cl.MasterURLs() {
		r, err := newClient(cl, u).Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		if err == nil && strings.EqualFold(r.Msg.GetRaft().GetState(), "leader") {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	if err := cl.KillMaster(leader); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-s.subs:
		if id != fid {
			t.Fatalf("resubscribed as %s, want %s", id, fid)
		}
	case <-ctx.Done():
		t.Fatal("the framework never resubscribed after the leader's SIGKILL")
	}
	pollFor(t, time.Minute, "p-1 RUNNING after failover", func() bool {
		r, err := ops.Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
		return err == nil && len(r.Msg.GetTasks()) == 1 && r.Msg.GetTasks()[0].GetState() == agorav1.TaskState_TASK_STATE_RUNNING
	})
}
