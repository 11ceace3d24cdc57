package devcluster

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
	"github.com/agora-sched/agora/tlsconf"
)

// SecureBench configures BenchSecure: one 3-master cluster, with or
// without the whole of security on.
type SecureBench struct {
	// Secure turns on TLS, a gossip key, authentication and ACLs.
	Secure bool
	// Writers and Duration of the write measurement (defaults 64, 3s).
	Writers  int
	Duration time.Duration
	// Rounds of the freed-to-offers measurement (default 20).
	Rounds int
	// Dir as in WriteBench; Logger nil discards logs.
	Dir    string
	Logger *slog.Logger
}

// SecureResult is one side of the security cost comparison.
type SecureResult struct {
	// WritesPerSec is SetRole calls/s through the Connect API.
	WritesPerSec float64
	// WriteErrors counts failed SetRole calls (should be 0).
	WriteErrors int64
	// Freed are the times from a framework's receipt of a task's KILLED
	// update to its receipt of the OFFERS of the freed resources (the
	// agent's whole capacity, so nothing else is offered in between).
	Freed []time.Duration
}

// String formats the result on one line.
func (r SecureResult) String() string {
	return fmt.Sprintf("%.0f writes/s (errors %d), freed-to-offers p50 %v p99 %v (%d rounds)", r.WritesPerSec, r.WriteErrors,
		Percentile(r.Freed, 50).Round(10*time.Microsecond), Percentile(r.Freed, 99).Round(10*time.Microsecond), len(r.Freed))
}

// benchRules is the ACL of the secure side: the bench principal may
// write roles and run frameworks in role "bench".
func benchRules() map[string]auth.Rules {
	return map[string]auth.Rules{"bench": {RegisterRoles: []string{"bench"}, OperatorRead: true, OperatorWrite: []string{auth.AreaRoles}}}
}

// BenchSecure measures replicated writes (SetRole from concurrent
// writers through the Connect API) and freed-to-offers latency (a
// framework launches a task on an agent's whole capacity, kills it and
// waits for the offer), on a 3-master loopback cluster with one agent.
// Run it with Secure off and on in the same process to compare.
func BenchSecure(ctx context.Context, o SecureBench) (SecureResult, error) {
	if o.Writers <= 0 {
		o.Writers = 64
	}
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 20
	}
	log := quiet(o.Logger)
	var res SecureResult
	dir, cleanup, err := benchDir(o.Dir, "agora-bench-secure-")
	if err != nil {
		return res, fmt.Errorf("devcluster: bench dir: %w", err)
	}
	defer cleanup()
	opts := Options{Masters: 3, DataDir: filepath.Join(dir, "agora"), RaftProfile: "default", Logger: log}
	var token string
	if o.Secure {
		a, err := NewAuth([]string{"b1"}, benchRules(), true)
		if err != nil {
			return res, err
		}
		opts.TLS, opts.GossipKeyring, opts.Auth = true, [][]byte{[]byte("0123456789abcdef")}, a
		token = a.Tokens["bench"]
	}
	c, err := Start(ctx, opts)
	if err != nil {
		return res, err
	}
	defer c.Stop()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		return res, err
	}
	copts := []client.Option{client.WithToken(token)}
	tlsCfg, err := c.ClientTLS(tlsconf.RoleClient, "bench")
	if err != nil {
		return res, err
	}
	if tlsCfg != nil {
		copts = append(copts, client.WithTLS(tlsCfg))
	}
	cl := client.New(leader.HTTPURL(), copts...)
	defer cl.CloseIdleConnections()
	var errs atomic.Int64
	n := runWriters(ctx, o.Writers, o.Duration, func(ctx context.Context, w, i int) {
		_, err := cl.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{
			Role: &agorav1.Role{Name: "w" + strconv.Itoa(w) + "-" + strconv.Itoa(i%4), Weight: float64(i%10 + 1)},
		}))
		if err != nil {
			errs.Add(1)
		}
	})
	res.WritesPerSec = float64(n) / o.Duration.Seconds()
	res.WriteErrors = errs.Load()

	if _, err := c.StartAgent(ctx, AgentOptions{ID: "b1", Resources: "cpus:1;mem:256"}); err != nil {
		return res, err
	}
	fw := &freedBench{rounds: o.Rounds, done: make(chan struct{})}
	fcfg := framework.Config{Masters: c.Addrs(), Token: token, Logger: log,
		Info: &agorav1.FrameworkInfo{Name: "freed-bench", Roles: []string{"bench"}}}
	if tlsCfg != nil {
		if fcfg.TLS, err = c.IssueTLS(tlsconf.RoleClient, "bench-fw"); err != nil {
			return res, err
		}
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- framework.Run(fctx, fcfg, fw) }()
	select {
	case <-fw.done:
	case err := <-runErr:
		return res, fmt.Errorf("devcluster: freed bench framework: %w", err)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	cancel()
	<-runErr
	res.Freed = fw.freed
	return res, nil
}

// freedBench launches a task on every offer (all of the agent), kills it
// once RUNNING and times KILLED to the next OFFERS. The SDK calls its
// methods from one goroutine.
type freedBench struct {
	rounds int
	n      int
	killed time.Time
	freed  []time.Duration
	done   chan struct{}
}

func (f *freedBench) Subscribed(framework.Driver, string, bool) {}
func (f *freedBench) Offers(d framework.Driver, offers []*agorav1.Offer) {
	now := time.Now()
	if !f.killed.IsZero() {
		f.freed = append(f.freed, now.Sub(f.killed))
		f.killed = time.Time{}
		if len(f.freed) == f.rounds {
			close(f.done)
		}
	}
	if len(f.freed) >= f.rounds {
		return
	}
	for _, o := range offers {
		f.n++
		task := &agorav1.TaskInfo{TaskId: "freed-" + strconv.Itoa(f.n), Name: "freed", AgentId: o.GetAgentId(),
			Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:256")),
			Command:   &agorav1.CommandInfo{Value: "sleep 600"}}
		refuse := 0.0 // no filter: the freed resources come straight back
		_ = d.Accept(context.Background(), []string{o.GetId()},
			[]*agorav1.Operation{{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{task}}}, &refuse)
	}
}
func (f *freedBench) Rescind(framework.Driver, string) {}
func (f *freedBench) Update(d framework.Driver, st *agorav1.TaskStatus) {
	switch st.GetState() {
	case agorav1.TaskState_TASK_STATE_RUNNING:
		_ = d.Kill(context.Background(), st.GetTaskId(), st.GetAgentId())
	case agorav1.TaskState_TASK_STATE_KILLED:
		f.killed = time.Now()
	}
}
func (f *freedBench) Failure(framework.Driver, string) {}
func (f *freedBench) Error(framework.Driver, string)   {}
