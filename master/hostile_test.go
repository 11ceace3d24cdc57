package master_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// hostileLimits are the limits of the hostile-input cluster: small, so that
// one call passes each of them. The rates refill so slowly (one token in
// 1000 s) that the bursts are what the rows spend.
var hostileLimits = master.Limits{
	MaxRequestBytes:           256 << 10,
	MaxOperationsPerAccept:    4,
	MaxLaunchesPerAccept:      3,
	MaxTasksPerFramework:      3,
	MaxFrameworksPerPrincipal: 2,
	SubscribeRate:             0.001,
	SubscribeBurst:            20,
	CallRate:                  0.001,
	CallBurst:                 100,
}

// hostileRow is one malformed or hostile call and the exact code it must
// get; no row may move the Raft commit or applied index.
type hostileRow struct {
	name string
	want connect.Code
	call func(ctx context.Context) error
}

// TestHostileInputs is the hostile-input catalogue: malformed and hostile
// calls across SchedulerService, OperatorService and AgentService against
// one real single-master cluster (Raft included). Each row asserts its
// exact Connect code and that the leader's Raft commit and applied indexes
// did not move (neither during the row nor because of an earlier one).
func TestHostileInputs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	applied := &applyLog{}
	c, err := devcluster.Start(ctx, devcluster.Options{
		Masters: 1,
		Logger:  testLogger(),
		OnNew:   func(_ int, m *master.Master) { m.OnApplyForTest(applied.record) },
		MasterConfig: func(cfg *master.Config) {
			cfg.LivenessGrace = time.Hour // fake agents are not in gossip
			cfg.OfferTimeout = time.Hour  // no expiry during the table
			cfg.Limits = hostileLimits
		},
	})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	sc := &schedCluster{t: t, c: c}
	m := sc.master()
	url := m.HTTPURL()
	sched := agorav1connect.NewSchedulerServiceClient(http.DefaultClient, url)
	op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, url)
	agentAPI := agorav1connect.NewAgentServiceClient(http.DefaultClient, url)

	// --- the scene: A (alice, role web) holds an offer on ag2 and runs t1
	// on ag1; B (bob, role db) runs tb1 and owns reservation + volume vb on
	// ag3; carol has two frameworks; "gone" was torn down.
	sc.registerAgent("ag1", "cpus:4;mem:4096;disk:4096")
	sc.registerAgent("ag2", "cpus:4;mem:4096;disk:4096")
	fa := schedSubscribe(t, url, &agorav1.FrameworkInfo{Name: "a", Principal: "alice", Roles: []string{"web"}})
	offerOf := func(fid, agentID string) *agorav1.Offer {
		var got *agorav1.Offer
		sc.waitFor("offer on "+agentID, func(st *fsm.State) error {
			for _, o := range st.OffersByFramework(fid) {
				if o.GetAgentId() == agentID {
					got = o
					return nil
				}
			}
			return fmt.Errorf("no offer of %s on %s", fid, agentID)
		})
		return got
	}
	o1 := offerOf(fa.fid, "ag1")
	offerOf(fa.fid, "ag2")
	fb := schedSubscribe(t, url, &agorav1.FrameworkInfo{Name: "b", Principal: "bob", Roles: []string{"db"}})
	sc.registerAgent("ag3", "cpus:4;mem:4096;disk:4096")
	o3 := offerOf(fb.fid, "ag3")
	yearly := schedPtr(master.MaxRefuse.Seconds())
	if _, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: fa.call(), OfferIds: []string{o1.GetId()},
		Operations: []*agorav1.Operation{schedLaunchOp("ag1", schedTask("t1", "cpus:1;mem:128"))}, RefuseSeconds: yearly})); err != nil {
		t.Fatalf("A launches t1: %v", err)
	}
	dbRes := func(spec string) []*agorav1.Resource { return resourcepb.ToProto("db", resources.MustParse(spec)) }
	tb1 := schedTask("tb1", "cpus:1")
	tb1.Resources = dbRes("cpus:1;mem:128")
	tb1.VolumeIds = []string{"vb"}
	if _, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: fb.call(), OfferIds: []string{o3.GetId()},
		Operations: []*agorav1.Operation{
			{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: dbRes("cpus:1;mem:128;disk:512")},
			{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: []*agorav1.VolumeInfo{{Id: "vb", SizeMib: 256, ContainerPath: "data", Role: "db"}}},
			schedLaunchOp("ag3", tb1),
		}, RefuseSeconds: yearly})); err != nil {
		t.Fatalf("B reserves, creates vb and launches tb1: %v", err)
	}
	uuidA := sc.taskStatus("ag1", fa.fid, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	uuidB := sc.taskStatus("ag3", fb.fid, "tb1", agorav1.TaskState_TASK_STATE_RUNNING)
	for _, name := range []string{"c1", "c2"} {
		schedSubscribe(t, url, &agorav1.FrameworkInfo{Name: name, Principal: "carol", Roles: []string{"web"}})
	}
	flood := schedSubscribe(t, url, &agorav1.FrameworkInfo{Name: "flood", Principal: "flood", Roles: []string{"web"}})
	gone := schedSubscribe(t, url, &agorav1.FrameworkInfo{Name: "gone", Principal: "gone", Roles: []string{"web"}})
	if _, err := sched.Teardown(ctx, connect.NewRequest(&agorav1.TeardownRequest{Call: gone.call()})); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	sc.quiesce()

	st := m.State()
	var offerA, offerOther *agorav1.Offer
	for _, o := range st.Offers() {
		switch {
		case o.GetFrameworkId() == fa.fid && o.GetAgentId() == "ag2":
			offerA = o
		case o.GetFrameworkId() != fa.fid:
			offerOther = o
		}
	}
	if offerA == nil || offerOther == nil {
		t.Fatalf("scene: want an offer of A on ag2 and an offer of another framework, have %v", st.Offers())
	}
	resvB := ""
	for _, r := range st.Reservations() {
		if r.GetRole() == "db" {
			resvB = r.GetId()
		}
	}
	if resvB == "" {
		t.Fatal("scene: B's reservation is missing")
	}

	// --- helpers for the rows
	callA := fa.call
	wrongToken := &agorav1.FrameworkCall{FrameworkId: fb.fid, StreamToken: fa.token}
	acceptA := func(ctx context.Context, ops ...*agorav1.Operation) error {
		_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: callA(), OfferIds: []string{offerA.GetId()}, Operations: ops}))
		return err
	}
	launchA := func(tasks ...*agorav1.TaskInfo) func(ctx context.Context) error {
		return func(ctx context.Context) error { return acceptA(ctx, schedLaunchOp("ag2", tasks...)) }
	}
	task := func(id string, rs ...*agorav1.Resource) *agorav1.TaskInfo {
		return &agorav1.TaskInfo{TaskId: id, Name: id, Resources: rs, Command: &agorav1.CommandInfo{Value: "sleep 1"}}
	}
	scalar := func(name string, v float64) *agorav1.Resource { return &agorav1.Resource{Name: name, Scalar: v} }
	cpus := func(v float64) *agorav1.TaskInfo { return task("bad-cpus", scalar("cpus", v)) }
	subscribe := func(info *agorav1.FrameworkInfo) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			s, err := schedTrySubscribe(url, info)
			if err == nil {
				s.cancel()
			}
			return err
		}
	}
	status := func(agent, fid, tid string, state agorav1.TaskState) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := agentAPI.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: agent,
				Statuses: []*agorav1.TaskStatus{{TaskId: tid, FrameworkId: fid, AgentId: agent, State: state, Uuid: master.NewID(),
					Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Timestamp: timestamppb.Now()}}}))
			return err
		}
	}
	register := func(id, cluster string, rs ...*agorav1.Resource) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := agentAPI.RegisterAgent(ctx, connect.NewRequest(&agorav1.RegisterAgentRequest{AgentId: id, Cluster: cluster,
				Hostname: "h-" + id, Address: "127.0.0.1:1", Resources: rs}))
			return err
		}
	}
	setRole := func(r *agorav1.Role) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := op.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: r}))
			return err
		}
	}
	demand := func(d ...*agorav1.Demand) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := sched.Demand(ctx, connect.NewRequest(&agorav1.DemandRequest{Call: callA(), Demands: d}))
			return err
		}
	}
	decline := func(ids []string, refuse *float64) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := sched.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: callA(), OfferIds: ids, RefuseSeconds: refuse}))
			return err
		}
	}
	huge := strings.Repeat("x", 100<<10)
	tooBig := strings.Repeat("x", 300<<10)
	ops := func(n int) []*agorav1.Operation {
		out := make([]*agorav1.Operation, n)
		for i := range out {
			out[i] = schedLaunchOp("ag2", schedTask(fmt.Sprintf("op-%d", i), "cpus:0.1;mem:8"))
		}
		return out
	}
	tasks := func(n int) []*agorav1.TaskInfo {
		out := make([]*agorav1.TaskInfo, n)
		for i := range out {
			out[i] = schedTask(fmt.Sprintf("many-%d", i), "cpus:0.1;mem:8")
		}
		return out
	}

	rows := []hostileRow{
		// Identity of the caller.
		{"accept without framework id", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: &agorav1.FrameworkCall{StreamToken: fa.token}, OfferIds: []string{offerA.GetId()}}))
			return err
		}},
		{"accept without stream token", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: &agorav1.FrameworkCall{FrameworkId: fa.fid}, OfferIds: []string{offerA.GetId()}}))
			return err
		}},
		{"accept without call", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{OfferIds: []string{offerA.GetId()}}))
			return err
		}},
		{"accept as an unknown framework", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: &agorav1.FrameworkCall{FrameworkId: "nope", StreamToken: fa.token}, OfferIds: []string{offerA.GetId()}}))
			return err
		}},
		{"accept as B with A's token", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: wrongToken, OfferIds: []string{offerOther.GetId()},
				Operations: []*agorav1.Operation{schedLaunchOp(offerOther.GetAgentId(), schedTask("steal", "cpus:0.1"))}}))
			return err
		}},
		{"kill B's task as B with a made-up token", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: &agorav1.FrameworkCall{FrameworkId: fb.fid, StreamToken: "guess"}, TaskId: "tb1"}))
			return err
		}},
		{"teardown B with A's token", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Teardown(ctx, connect.NewRequest(&agorav1.TeardownRequest{Call: wrongToken}))
			return err
		}},
		{"call as a torn-down framework", connect.CodeFailedPrecondition, func(ctx context.Context) error {
			_, err := sched.Revive(ctx, connect.NewRequest(&agorav1.ReviveRequest{Call: gone.call()}))
			return err
		}},
		{"framework id of 100 KiB", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := sched.Revive(ctx, connect.NewRequest(&agorav1.ReviveRequest{Call: &agorav1.FrameworkCall{FrameworkId: huge, StreamToken: "t"}}))
			return err
		}},

		// Another framework's objects.
		{"accept another framework's offer", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: callA(), OfferIds: []string{offerOther.GetId()},
				Operations: []*agorav1.Operation{schedLaunchOp(offerOther.GetAgentId(), schedTask("steal", "cpus:0.1"))}}))
			return err
		}},
		{"decline another framework's offer", connect.CodePermissionDenied, decline([]string{offerOther.GetId()}, nil)},
		{"kill another framework's task", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: callA(), TaskId: "tb1"}))
			return err
		}},
		{"acknowledge another framework's status", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: callA(), TaskId: "tb1", Uuid: uuidB}))
			return err
		}},
		{"destroy another framework's volume (on another agent than the offer)", connect.CodeNotFound, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_DESTROY, Volumes: []*agorav1.VolumeInfo{{Id: "vb"}}})
		}},
		{"launch on another framework's volume", connect.CodePermissionDenied, func(ctx context.Context) error {
			ti := schedTask("thief", "cpus:0.1;mem:8")
			ti.VolumeIds = []string{"vb"}
			return acceptA(ctx, schedLaunchOp("ag2", ti))
		}},
		{"unreserve another framework's reservation", connect.CodePermissionDenied, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_UNRESERVE, Resources: dbRes("cpus:1;mem:128;disk:512")})
		}},
		{"reserve for a role the framework lacks", connect.CodePermissionDenied, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: dbRes("cpus:1")})
		}},
		{"demand for a role the framework lacks", connect.CodePermissionDenied, demand(&agorav1.Demand{Role: "db", Resources: resourcepb.ToProto("", resources.MustParse("cpus:1")), Count: 1})},
		{"update framework with another framework's id", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.UpdateFramework(ctx, connect.NewRequest(&agorav1.UpdateFrameworkRequest{Call: callA(), FrameworkInfo: &agorav1.FrameworkInfo{Id: fb.fid, Name: "a", Principal: "alice"}}))
			return err
		}},
		{"update framework to another principal", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.UpdateFramework(ctx, connect.NewRequest(&agorav1.UpdateFrameworkRequest{Call: callA(), FrameworkInfo: &agorav1.FrameworkInfo{Name: "a", Principal: "bob", Roles: []string{"web"}}}))
			return err
		}},

		// Bad and stale ids.
		{"accept an unknown offer", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: callA(), OfferIds: []string{"no-such-offer"},
				Operations: []*agorav1.Operation{schedLaunchOp("ag2", schedTask("x", "cpus:0.1"))}}))
			return err
		}},
		{"accept an offer already used (stale)", connect.CodeFailedPrecondition, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: callA(), OfferIds: []string{o1.GetId()},
				Operations: []*agorav1.Operation{schedLaunchOp("ag1", schedTask("x", "cpus:0.1"))}}))
			return err
		}},
		{"accept no offers", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: callA(),
				Operations: []*agorav1.Operation{schedLaunchOp("ag2", schedTask("x", "cpus:0.1"))}}))
			return err
		}},
		{"accept the same offer twice in one call", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: callA(), OfferIds: []string{offerA.GetId(), offerA.GetId()},
				Operations: []*agorav1.Operation{schedLaunchOp("ag2", schedTask("x", "cpus:0.1"))}}))
			return err
		}},
		{"accept without operations", connect.CodeInvalidArgument, func(ctx context.Context) error { return acceptA(ctx) }},
		{"decline an unknown offer", connect.CodeNotFound, decline([]string{"no-such-offer"}, nil)},
		{"acknowledge an unknown uuid", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := sched.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: callA(), TaskId: "t1", Uuid: "not-" + uuidA}))
			return err
		}},
		{"kill an unknown task", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := sched.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: callA(), TaskId: "no-such-task"}))
			return err
		}},
		{"answer an inverse offer of an unknown agent", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := sched.AnswerInverseOffer(ctx, connect.NewRequest(&agorav1.AnswerInverseOfferRequest{Call: callA(), AgentId: "no-such-agent", Accept: true}))
			return err
		}},

		// Scalars: NaN, infinite, negative, overflowing.
		{"launch NaN cpus", connect.CodeInvalidArgument, launchA(cpus(math.NaN()))},
		{"launch +Inf cpus", connect.CodeInvalidArgument, launchA(cpus(math.Inf(1)))},
		{"launch -Inf cpus", connect.CodeInvalidArgument, launchA(cpus(math.Inf(-1)))},
		{"launch negative cpus", connect.CodeInvalidArgument, launchA(cpus(-1))},
		{"launch 1e308 cpus (past the scalar bound)", connect.CodeInvalidArgument, launchA(cpus(1e308))},
		{"launch an inverted port range", connect.CodeInvalidArgument, launchA(task("ports", scalar("cpus", 0.1),
			&agorav1.Resource{Name: "ports", Ranges: []*agorav1.Range{{Begin: 31005, End: 31000}}}))},
		{"reserve NaN disk", connect.CodeInvalidArgument, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: []*agorav1.Resource{{Name: "disk", Scalar: math.NaN(), Role: "web"}}})
		}},
		{"create a volume of NaN MiB", connect.CodeInvalidArgument, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: []*agorav1.VolumeInfo{{Id: "vn", SizeMib: math.NaN(), ContainerPath: "d", Role: "web"}}})
		}},
		{"create a volume of negative size", connect.CodeInvalidArgument, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: []*agorav1.VolumeInfo{{Id: "vn", SizeMib: -5, ContainerPath: "d", Role: "web"}}})
		}},
		{"decline with NaN refuse_seconds", connect.CodeInvalidArgument, decline([]string{offerA.GetId()}, schedPtr(math.NaN()))},
		{"decline with negative refuse_seconds", connect.CodeInvalidArgument, decline([]string{offerA.GetId()}, schedPtr(-1))},
		{"accept with infinite refuse_seconds", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: callA(), OfferIds: []string{offerA.GetId()},
				Operations: []*agorav1.Operation{schedLaunchOp("ag2", schedTask("x", "cpus:0.1"))}, RefuseSeconds: schedPtr(math.Inf(1))}))
			return err
		}},
		{"demand a count of 0", connect.CodeInvalidArgument, demand(&agorav1.Demand{Role: "web", Resources: resourcepb.ToProto("", resources.MustParse("cpus:1")), Count: 0})},
		{"demand NaN cpus", connect.CodeInvalidArgument, demand(&agorav1.Demand{Role: "web", Resources: []*agorav1.Resource{{Name: "cpus", Scalar: math.NaN()}}, Count: 1})},
		{"set a role with NaN weight", connect.CodeInvalidArgument, setRole(&agorav1.Role{Name: "nanrole", Weight: math.NaN()})},
		{"set a role with negative weight", connect.CodeInvalidArgument, setRole(&agorav1.Role{Name: "negrole", Weight: -1})},
		{"set a role with infinite weight", connect.CodeInvalidArgument, setRole(&agorav1.Role{Name: "infrole", Weight: math.Inf(1)})},
		{"set a role with max_utilization 2", connect.CodeInvalidArgument, setRole(&agorav1.Role{Name: "utilrole", Weight: 1, MaxUtilization: 2})},
		{"set a role with a NaN guarantee", connect.CodeInvalidArgument, setRole(&agorav1.Role{Name: "guarole", Weight: 1, Guarantee: []*agorav1.Resource{{Name: "cpus", Scalar: math.NaN()}}})},
		{"register an agent with NaN cpus", connect.CodeInvalidArgument, register("agnan", "", scalar("cpus", math.NaN()))},
		{"register an agent with negative mem", connect.CodeInvalidArgument, register("agneg", "", scalar("cpus", 1), scalar("mem", -1))},
		{"register an agent with infinite disk", connect.CodeInvalidArgument, register("aginf", "", scalar("cpus", 1), scalar("disk", math.Inf(1)))},
		{"agent assignments wait NaN", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := agentAPI.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "ag1", WaitSeconds: math.NaN()}))
			return err
		}},

		// Unknown enum values.
		{"operation of unknown type 99", connect.CodeInvalidArgument, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType(99)})
		}},
		{"operation of type UNSPECIFIED", connect.CodeInvalidArgument, func(ctx context.Context) error {
			return acceptA(ctx, &agorav1.Operation{})
		}},
		{"subscribe with capability 999", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: "cap", Capabilities: []agorav1.Capability{999}})},
		{"agent status with task state 99", connect.CodeInvalidArgument, status("ag1", fa.fid, "t1", agorav1.TaskState(99))},
		{"gossip keyring action 99", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := op.GossipKeyring(ctx, connect.NewRequest(&agorav1.GossipKeyringRequest{Action: agorav1.GossipKeyringAction(99)}))
			return err
		}},

		// Huge strings, repeated fields, empty required fields.
		{"subscribe with an empty name", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: " "})},
		{"subscribe with a 100 KiB name", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: huge})},
		{"subscribe with a 100 KiB principal", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: "p", Principal: huge})},
		{"subscribe with an invalid role", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: "r", Roles: []string{"Bad Role!"}})},
		{"subscribe with a role listed twice", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: "r", Roles: []string{"web", "web"}})},
		{"subscribe with a NaN failover timeout", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: "f", FailoverTimeoutSeconds: math.NaN()})},
		{"subscribe with a negative failover timeout", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: "f", FailoverTimeoutSeconds: -1})},
		{"launch a task with an empty id", connect.CodeInvalidArgument, launchA(schedTask("", "cpus:0.1"))},
		{"launch a task with a NUL in its id", connect.CodeInvalidArgument, launchA(schedTask("a\x00b", "cpus:0.1"))},
		{"launch a task with a 100 KiB id", connect.CodeInvalidArgument, launchA(schedTask(huge, "cpus:0.1"))},
		{"launch a task without a command", connect.CodeInvalidArgument, launchA(&agorav1.TaskInfo{TaskId: "nocmd", Resources: resourcepb.ToProto("", resources.MustParse("cpus:0.1"))})},
		{"launch a task without resources", connect.CodeInvalidArgument, launchA(task("nores"))},
		{"launch a task with 5000 resources", connect.CodeInvalidArgument, func(ctx context.Context) error {
			rs := make([]*agorav1.Resource, 5000)
			for i := range rs {
				rs[i] = scalar(fmt.Sprintf("r%d", i), 1)
			}
			return launchA(task("manyres", rs...))(ctx)
		}},
		{"reconcile a task with an empty id", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Reconcile(ctx, connect.NewRequest(&agorav1.ReconcileRequest{Call: callA(), Tasks: []*agorav1.ReconcileTask{{}}}))
			return err
		}},
		{"put a record with an empty key", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.PutRecord(ctx, connect.NewRequest(&agorav1.PutRecordRequest{Call: callA(), Value: []byte("v")}))
			return err
		}},
		{"put a record with a 100 KiB key", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.PutRecord(ctx, connect.NewRequest(&agorav1.PutRecordRequest{Call: callA(), Key: huge, Value: []byte("v")}))
			return err
		}},
		{"register an agent with an empty id", connect.CodeInvalidArgument, register("", "", scalar("cpus", 1))},
		{"register an agent of another cluster", connect.CodeFailedPrecondition, register("agx", "other", scalar("cpus", 1))},
		{"agent status with 1025 updates", connect.CodeInvalidArgument, func(ctx context.Context) error {
			sts := make([]*agorav1.TaskStatus, 1025)
			for i := range sts {
				sts[i] = &agorav1.TaskStatus{TaskId: "t1", FrameworkId: fa.fid, AgentId: "ag1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: master.NewID()}
			}
			_, err := agentAPI.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: "ag1", Statuses: sts}))
			return err
		}},
		{"agent assignments of an invalid agent id", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := agentAPI.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "bad\x00id"}))
			return err
		}},
		{"set a role with an invalid name", connect.CodeInvalidArgument, setRole(&agorav1.Role{Name: "Bad Role!", Weight: 1})},
		{"set a role without a role", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := op.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{}))
			return err
		}},
		{"operator teardown without an id", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := op.TeardownFramework(ctx, connect.NewRequest(&agorav1.TeardownFrameworkRequest{}))
			return err
		}},
		{"run a service from a garbage spec", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := op.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: []byte("{not json")}))
			return err
		}},
		{"scale a service to a negative count", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := op.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: "svc", PodType: "p", Count: -1}))
			return err
		}},
		{"install a gossip key that is not base64", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := op.GossipKeyring(ctx, connect.NewRequest(&agorav1.GossipKeyringRequest{Action: agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_INSTALL, Key: "%%%"}))
			return err
		}},

		{"kill with an empty task id", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Kill(ctx, connect.NewRequest(&agorav1.KillRequest{Call: callA()}))
			return err
		}},
		{"acknowledge with an empty uuid", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: callA(), TaskId: "t1"}))
			return err
		}},
		{"answer an inverse offer without an agent id", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.AnswerInverseOffer(ctx, connect.NewRequest(&agorav1.AnswerInverseOfferRequest{Call: callA()}))
			return err
		}},
		{"suppress a role the framework lacks", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Suppress(ctx, connect.NewRequest(&agorav1.SuppressRequest{Call: callA(), Roles: []string{"db"}}))
			return err
		}},
		{"revive 5000 roles the framework lacks", connect.CodePermissionDenied, func(ctx context.Context) error {
			_, err := sched.Revive(ctx, connect.NewRequest(&agorav1.ReviveRequest{Call: callA(), Roles: manyRoles(5000)}))
			return err
		}},
		{"delete a record that does not exist", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := sched.DeleteRecord(ctx, connect.NewRequest(&agorav1.DeleteRecordRequest{Call: callA(), Key: "no-such-key"}))
			return err
		}},
		{"update framework with a NaN failover timeout", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.UpdateFramework(ctx, connect.NewRequest(&agorav1.UpdateFrameworkRequest{Call: callA(), FrameworkInfo: &agorav1.FrameworkInfo{Name: "a", Principal: "alice", Roles: []string{"web"}, FailoverTimeoutSeconds: math.NaN()}}))
			return err
		}},
		{"drain an agent with a deadline in 1970", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := op.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "ag1", Deadline: timestamppb.New(time.Unix(1, 0))}))
			return err
		}},

		// Duplicates, replays and forgeries.
		{"subscribe with 5000 roles", connect.CodeInvalidArgument, subscribe(&agorav1.FrameworkInfo{Name: "roles", Roles: manyRoles(5000)})},
		{"update framework to 5000 roles", connect.CodeInvalidArgument, func(ctx context.Context) error {
			_, err := sched.UpdateFramework(ctx, connect.NewRequest(&agorav1.UpdateFrameworkRequest{Call: callA(), FrameworkInfo: &agorav1.FrameworkInfo{Name: "a", Principal: "alice", Roles: manyRoles(5000)}}))
			return err
		}},
		{"demand 5000 shapes", connect.CodeInvalidArgument, func(ctx context.Context) error {
			ds := make([]*agorav1.Demand, 5000)
			for i := range ds {
				ds[i] = &agorav1.Demand{Role: "web", Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1 + float64(i)/1e4}}, Count: 1}
			}
			return demand(ds...)(ctx)
		}},
		{"reserve with 20000 labels", connect.CodeInvalidArgument, func(ctx context.Context) error {
			labels := map[string]string{}
			for i := range 20000 {
				labels[fmt.Sprint(i)] = "v"
			}
			return acceptA(ctx, &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: resourcepb.ToProto("web", resources.MustParse("cpus:0.1")), Labels: labels})
		}},
		{"register an agent with 20000 attributes", connect.CodeInvalidArgument, func(ctx context.Context) error {
			attrs := map[string]string{}
			for i := range 20000 {
				attrs[fmt.Sprint(i)] = "v"
			}
			_, err := agentAPI.RegisterAgent(ctx, connect.NewRequest(&agorav1.RegisterAgentRequest{AgentId: "agattrs", Hostname: "h", Address: "127.0.0.1:1",
				Resources: []*agorav1.Resource{scalar("cpus", 1)}, Attributes: attrs}))
			return err
		}},
		{"launch a task id already running", connect.CodeAlreadyExists, launchA(schedTask("t1", "cpus:0.1;mem:8"))},
		{"launch the same task id twice in one accept", connect.CodeInvalidArgument, launchA(schedTask("dup", "cpus:0.1"), schedTask("dup", "cpus:0.1"))},
		{"replayed subscribe of A under another principal", connect.CodePermissionDenied, subscribe(&agorav1.FrameworkInfo{Id: fa.fid, Name: "a", Principal: "mallory", Roles: []string{"web"}})},
		{"replayed subscribe of a torn-down framework", connect.CodeFailedPrecondition, subscribe(&agorav1.FrameworkInfo{Id: gone.fid, Name: "gone", Principal: "gone", Roles: []string{"web"}})},
		{"subscribe with a made-up framework id", connect.CodeNotFound, subscribe(&agorav1.FrameworkInfo{Id: "made-up", Name: "x"})},
		{"forged status: ag2 reports ag1's task", connect.CodePermissionDenied, status("ag2", fa.fid, "t1", agorav1.TaskState_TASK_STATE_FINISHED)},
		{"forged status: task of B claimed for A", connect.CodeNotFound, status("ag3", fa.fid, "tb1", agorav1.TaskState_TASK_STATE_FAILED)},
		{"forged status from an unregistered agent", connect.CodeNotFound, status("ag-nobody", fa.fid, "t1", agorav1.TaskState_TASK_STATE_FAILED)},
		{"forged goodbye of an unregistered agent", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := agentAPI.StopAgent(ctx, connect.NewRequest(&agorav1.StopAgentRequest{AgentId: "ag-nobody"}))
			return err
		}},

		// Operator calls on things that do not exist.
		{"delete an unknown role", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := op.DeleteRole(ctx, connect.NewRequest(&agorav1.DeleteRoleRequest{Name: "no-such-role"}))
			return err
		}},
		{"operator teardown of an unknown framework", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := op.TeardownFramework(ctx, connect.NewRequest(&agorav1.TeardownFrameworkRequest{FrameworkId: "no-such-framework"}))
			return err
		}},
		{"remove an unknown raft peer", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := op.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: "no-such-master"}))
			return err
		}},
		{"drain an unknown agent", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := op.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "no-such-agent"}))
			return err
		}},
		{"undrain an agent that is not draining", connect.CodeFailedPrecondition, func(ctx context.Context) error {
			_, err := op.UndrainAgent(ctx, connect.NewRequest(&agorav1.UndrainAgentRequest{AgentId: "ag1"}))
			return err
		}},
		{"scale an unknown service", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := op.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: "no-such-service", PodType: "p", Count: 1}))
			return err
		}},
		{"explain an unknown framework", connect.CodeNotFound, func(ctx context.Context) error {
			_, err := op.ExplainFramework(ctx, connect.NewRequest(&agorav1.ExplainFrameworkRequest{FrameworkId: "no-such-framework"}))
			return err
		}},

		// Limits (hostileLimits).
		{"request over --max-request-bytes", connect.CodeResourceExhausted, func(ctx context.Context) error {
			_, err := sched.PutRecord(ctx, connect.NewRequest(&agorav1.PutRecordRequest{Call: callA(), Key: "k", Value: []byte(tooBig)}))
			return err
		}},
		{"operator request over --max-request-bytes", connect.CodeResourceExhausted, setRole(&agorav1.Role{Name: tooBig})},
		{"agent request over --max-request-bytes", connect.CodeResourceExhausted, register(tooBig, "", scalar("cpus", 1))},
		{"accept over the operations limit", connect.CodeResourceExhausted, func(ctx context.Context) error { return acceptA(ctx, ops(5)...) }},
		{"accept over the launches limit", connect.CodeResourceExhausted, launchA(tasks(4)...)},
		{"accept over the tasks-per-framework limit", connect.CodeResourceExhausted, launchA(tasks(3)...)},
		{"a third framework of principal carol", connect.CodeResourceExhausted, subscribe(&agorav1.FrameworkInfo{Name: "c3", Principal: "carol", Roles: []string{"web"}})},
		{"scheduler calls over the call rate", connect.CodeResourceExhausted, func(ctx context.Context) error {
			for i := range hostileLimits.CallBurst {
				if _, err := sched.Reconcile(ctx, connect.NewRequest(&agorav1.ReconcileRequest{Call: flood.call(),
					Tasks: []*agorav1.ReconcileTask{{TaskId: "none"}}})); err != nil {
					return fmt.Errorf("call %d within the burst: %w", i, err)
				}
			}
			_, err := sched.Reconcile(ctx, connect.NewRequest(&agorav1.ReconcileRequest{Call: flood.call()}))
			return err
		}},
		{"subscribes over the subscribe rate", connect.CodeResourceExhausted, func(ctx context.Context) error {
			info := &agorav1.FrameworkInfo{Name: "", Principal: "subflood"} // each refused: no name
			for i := range hostileLimits.SubscribeBurst {
				if err := subscribe(info)(ctx); connect.CodeOf(err) != connect.CodeInvalidArgument {
					return fmt.Errorf("subscribe %d within the burst: %w", i, err)
				}
			}
			return subscribe(info)(ctx)
		}},
	}
	if len(rows) < 60 {
		t.Fatalf("the catalogue has %d rows, want at least 60", len(rows))
	}

	runHostileRows(t, m, applied, rows)
}

// runHostileRows runs rows against m, each asserting its code and that
// the Raft commit and applied indexes did not move since the table began,
// then checks the state's index and invariants.
func runHostileRows(t *testing.T, m *master.Master, applied *applyLog, rows []hostileRow) {
	t.Helper()
	r := m.Raft()
	start, startApplied := r.CommitIndex(), r.AppliedIndex()
	if start != startApplied {
		t.Fatalf("scene not quiet: commit %d, applied %d", start, startApplied)
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := row.call(ctx)
			if err == nil {
				t.Errorf("succeeded, want %v", row.want)
			} else if got := connect.CodeOf(err); got != row.want {
				t.Errorf("got %v (%v), want %v", got, err, row.want)
			}
			if c, a := r.CommitIndex(), r.AppliedIndex(); c != start || a != start {
				t.Errorf("raft moved: commit %d, applied %d, before the table both %d; last entries: %s", c, a, start, applied.since(start))
				start = c // report each move once
			}
		})
	}
	if st := m.State(); st.Index() != start {
		t.Errorf("state index %d, want %d", st.Index(), start)
	}
	if err := m.State().CheckInvariants(); err != nil {
		t.Errorf("invariants: %v", err)
	}
}

// applyLog records what each applied entry did, to name an unexpected
// write.
type applyLog struct {
	mu      sync.Mutex
	entries []string
	indexes []uint64
}

func (l *applyLog) record(index uint64, events []fsm.Event) {
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, fmt.Sprintf("%v fw=%s", e.Kind, e.FrameworkID))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf("%d[%s]", index, strings.Join(kinds, ";")))
	l.indexes = append(l.indexes, index)
}

// since lists the entries applied after index.
func (l *applyLog) since(index uint64) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for i, idx := range l.indexes {
		if idx > index {
			out = append(out, l.entries[i])
		}
	}
	return strings.Join(out, " ")
}

func manyRoles(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("r%d", i)
	}
	return out
}
