package fsm

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// The placement benchmarks below follow one accept of `agora bench e2e`
// through the FSM: an offer of one agent, an Accept launching 100 tasks of
// 0.01 cpu and 1 MiB, the agent's RUNNING updates of them in one
// StatusUpdateBatch and the framework's acknowledgements in one
// AcknowledgeBatch:
//
//	go test ./fsm -run '^$' -bench 'Accept|StatusUpdate|Ack'

const benchTasksPerAccept = 100

// placementBench is an FSM with 1,000 agents of cpus:64;mem:65536 and one
// subscribed framework f1 (newPlacementBench), or the state of a cluster at
// scale (newPlacementBenchAtScale).
type placementBench struct {
	b      testing.TB
	f      *FSM
	index  uint64
	n      int // accepts made
	fid    string
	agents int
	agent  func(i int) string
}

func newPlacementBench(b testing.TB) *placementBench {
	p := &placementBench{b: b, f: New(Config{}), fid: "f1", agents: 1000, agent: func(i int) string { return fmt.Sprintf("a%04d", i) }}
	for i := range 1000 {
		p.apply(CmdRegisterAgent, &agorav1.RegisterAgentCommand{Agent: &agorav1.Agent{Id: fmt.Sprintf("a%04d", i), Hostname: "h",
			Address: "x:1", Resources: resourcepb.ToProto("", resources.MustParse("cpus:64;mem:65536"))}, Now: &timestamppb.Timestamp{Seconds: 1}})
	}
	p.apply(CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Framework: &agorav1.Framework{Id: "f1",
		Info: &agorav1.FrameworkInfo{Name: "bench", Principal: "p"}, StreamToken: "s"}, Now: &timestamppb.Timestamp{Seconds: 1}})
	return p
}

// Scale of newPlacementBenchAtScale: the agents of the e2e goal and a few
// hundred thousand tasks already running on them.
const (
	benchScaleAgents = 10_000
	benchScaleTasks  = 300_000
)

var benchScaleSnapshot = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	if err := WriteSyntheticSnapshot(&buf, benchScaleAgents, benchScaleTasks); err != nil {
		panic(err)
	}
	return buf.Bytes()
})

// newPlacementBenchAtScale is an FSM restored from a synthetic snapshot of
// 10,000 agents running 300,000 tasks (WriteSyntheticSnapshot), in which a
// framework with an id as long as the master gives (NewID: 32 hex digits)
// subscribes: the tree is as deep, and the garbage collector has as much to
// mark, as on a master during `agora bench e2e` at scale.
func newPlacementBenchAtScale(b testing.TB) *placementBench {
	p := &placementBench{b: b, f: New(Config{}), fid: "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a90", agents: benchScaleAgents, agent: SyntheticAgentID}
	if err := p.f.Restore(nopCloser{bytes.NewReader(benchScaleSnapshot())}); err != nil {
		b.Fatal(err)
	}
	p.index = p.f.State().index
	p.apply(CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Framework: &agorav1.Framework{Id: p.fid,
		Info: &agorav1.FrameworkInfo{Name: "bench", Principal: "p"}, StreamToken: "s"}, Now: &timestamppb.Timestamp{Seconds: 1}})
	return p
}

func (p *placementBench) apply(t CommandType, m proto.Message) Result {
	p.b.Helper()
	e, err := Encode(t, m)
	if err != nil {
		p.b.Fatal(err)
	}
	p.index++
	res := p.f.ApplyCommand(p.index, e)
	if res.Err != nil {
		p.b.Fatalf("%v: %v", t, res.Err)
	}
	return res
}

// offer creates the next offer (cpus:1;mem:100 of the next agent) and
// returns the accept that launches 100 tasks from it.
func (p *placementBench) offer() *agorav1.AcceptCommand {
	k := p.n
	p.n++
	agent, oid := p.agent(k%p.agents), fmt.Sprintf("o%d", k)
	now := &timestamppb.Timestamp{Seconds: int64(10 + k)}
	p.apply(CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: now, Offers: []*agorav1.Offer{{Id: oid, FrameworkId: p.fid, AgentId: agent,
		Role: "*", Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:100"))}}})
	op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
	for j := range benchTasksPerAccept {
		op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: fmt.Sprintf("t%d-%d", k, j), Name: "bench",
			Resources: resourcepb.ToProto("", resources.MustParse("cpus:0.01;mem:1")), Command: &agorav1.CommandInfo{Value: "sleep 3600"}})
	}
	return &agorav1.AcceptCommand{FrameworkId: p.fid, OfferIds: []string{oid}, Now: now, Operations: []*agorav1.Operation{op}}
}

// BenchmarkApplyAccept100Tasks: one op is one Accept entry launching 100
// tasks, applied (as every replica does).
func BenchmarkApplyAccept100Tasks(b *testing.B) { benchApplyAccept(b, newPlacementBench) }

// BenchmarkApplyAccept100TasksAtScale is BenchmarkApplyAccept100Tasks on
// the state of a cluster at scale (newPlacementBenchAtScale).
func BenchmarkApplyAccept100TasksAtScale(b *testing.B) { benchApplyAccept(b, newPlacementBenchAtScale) }

func benchApplyAccept(b *testing.B, setup func(testing.TB) *placementBench) {
	p := setup(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c := p.offer()
		e, err := Encode(CmdAccept, c)
		if err != nil {
			b.Fatal(err)
		}
		p.index++
		b.StartTimer()
		if res := p.f.ApplyCommand(p.index, e); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkJudgeAccept100Tasks: one op is the leader's judgement of an
// Accept launching 100 tasks (State.Judge), before it is proposed.
func BenchmarkJudgeAccept100Tasks(b *testing.B) { benchJudgeAccept(b, newPlacementBench) }

// BenchmarkJudgeAccept100TasksAtScale is BenchmarkJudgeAccept100Tasks on
// the state of a cluster at scale (newPlacementBenchAtScale).
func BenchmarkJudgeAccept100TasksAtScale(b *testing.B) { benchJudgeAccept(b, newPlacementBenchAtScale) }

// TestJudgeAcceptWritesLittle: the leader's judgement of an Accept
// launching 100 tasks skips the writes no check of the accept reads (the
// tasks, the offers' removal, the usage charge): 47 allocations where
// Apply's writes made 146 (BenchmarkJudgeAccept100Tasks). The bound
// leaves room for unrelated changes and fails if those writes come back.
func TestJudgeAcceptWritesLittle(t *testing.T) {
	p := newPlacementBench(t)
	c := p.offer()
	st := p.f.State()
	allocs := testing.AllocsPerRun(20, func() {
		if changed, rej := st.Judge(CmdAccept, c); rej != nil || !changed {
			t.Fatal(changed, rej)
		}
	})
	if allocs > 80 {
		t.Errorf("Judge of a 100-task Accept: %.0f allocations, want <= 80", allocs)
	}
}

func benchJudgeAccept(b *testing.B, setup func(testing.TB) *placementBench) {
	p := setup(b)
	c := p.offer()
	st := p.f.State()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if changed, rej := st.Judge(CmdAccept, c); rej != nil || !changed {
			b.Fatal(changed, rej)
		}
	}
}

// BenchmarkApplyStatusUpdateBatchAck100Tasks: one op is one
// StatusUpdateBatch entry (one agent's RUNNING updates of the 100 tasks of
// an accept), then one AcknowledgeBatch entry acknowledging them; the
// sub-benchmarks time each alone, and JudgeAck the leader's judgement of
// the 100 acknowledgements one by one (as its coalescer does) before the
// AcknowledgeBatch is applied.
func BenchmarkApplyStatusUpdateBatchAck100Tasks(b *testing.B) {
	benchStatusUpdateBatchAck(b, newPlacementBench)
}

// BenchmarkApplyStatusUpdateBatchAck100TasksAtScale is
// BenchmarkApplyStatusUpdateBatchAck100Tasks on the state of a cluster at
// scale (newPlacementBenchAtScale).
func BenchmarkApplyStatusUpdateBatchAck100TasksAtScale(b *testing.B) {
	benchStatusUpdateBatchAck(b, newPlacementBenchAtScale)
}

func benchStatusUpdateBatchAck(b *testing.B, setup func(testing.TB) *placementBench) {
	for _, which := range []string{"StatusUpdate", "Ack", "JudgeAck"} {
		b.Run(which, func(b *testing.B) {
			p := setup(b)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				c := p.offer()
				p.apply(CmdAccept, c)
				su := &agorav1.StatusUpdateCommand{AgentId: p.agent((p.n - 1) % p.agents), Now: c.GetNow()}
				ack := &agorav1.AcknowledgeBatchCommand{}
				for _, ti := range c.GetOperations()[0].GetTasks() {
					u := fmt.Sprintf("u-%s", ti.GetTaskId())
					su.Statuses = append(su.Statuses, &agorav1.TaskStatus{TaskId: ti.GetTaskId(), FrameworkId: p.fid,
						State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: u})
					ack.Acks = append(ack.Acks, &agorav1.AcknowledgeCommand{FrameworkId: p.fid, TaskId: ti.GetTaskId(), Uuid: u})
				}
				se, _ := Encode(CmdStatusUpdateBatch, &agorav1.StatusUpdateBatchCommand{Updates: []*agorav1.StatusUpdateCommand{su}})
				ae, _ := Encode(CmdAcknowledgeBatch, ack)
				if which == "StatusUpdate" {
					b.StartTimer()
				}
				p.index++
				if res := p.f.ApplyCommand(p.index, se); res.Err != nil || res.Items[0] != nil {
					b.Fatal(res.Err, res.Items)
				}
				if which == "JudgeAck" {
					st := p.f.State()
					b.StartTimer()
					for _, a := range ack.Acks {
						if changed, rej := st.Judge(CmdAcknowledge, a); rej != nil || !changed {
							b.Fatal(changed, rej)
						}
					}
				}
				if which == "Ack" {
					b.StartTimer()
				} else {
					b.StopTimer()
				}
				p.index++
				if res := p.f.ApplyCommand(p.index, ae); res.Err != nil {
					b.Fatal(res.Err)
				}
				b.StopTimer()
				if t, _ := p.f.State().Task(p.fid, su.Statuses[0].GetTaskId()); !t.GetAcknowledged() || t.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
					b.Fatalf("task %v", t)
				}
				b.StartTimer()
			}
		})
	}
}
