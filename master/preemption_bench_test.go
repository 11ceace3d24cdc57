package master

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/preempt"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

var preemptBench struct {
	once    sync.Once
	st, st2 *fsm.State // st2: st with one more task kill requested
	err     error
}

// preemptBenchState is a full cluster in replicated state, built by
// applying commands: agents agents of 16 cpus and 64 GiB, each running
// 10 revocable tasks of batch roles (priorities 0-2: 4, 3 and 3 tasks)
// that use it all, launched at a different time per agent; one connected
// prod framework (priority 10) demanding units units of cpus:4;mem:8192.
func preemptBenchState(agents, units int) (*fsm.State, error) {
	b := newPreemptBuilder()
	if err := b.build(agents, units); err != nil {
		return nil, err
	}
	return b.f.State(), nil
}

// preemptBuilder applies commands to an FSM at consecutive indexes.
type preemptBuilder struct {
	f     *fsm.FSM
	index uint64
}

func newPreemptBuilder() *preemptBuilder { return &preemptBuilder{f: fsm.New(fsm.Config{})} }

func (pb *preemptBuilder) apply(t fsm.CommandType, m proto.Message) error {
	pb.index++
	res, err := pb.f.ApplyMessage(pb.index, t, m)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return fmt.Errorf("%v %v: %w", t, m, res.Err)
	}
	return nil
}

func (pb *preemptBuilder) build(agents, units int) error {
	apply := pb.apply
	ts := func(s int) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: 1_700_000_000 + int64(s)} }
	res := func(spec string) []*agorav1.Resource { return resourcepb.ToProto("", resources.MustParse(spec)) }
	if err := apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "prod", Weight: 1, Priority: 10}}); err != nil {
		return err
	}
	for p := range 3 {
		if err := apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: fmt.Sprintf("batch%d", p), Weight: 1, Priority: int32(p)}}); err != nil {
			return err
		}
		if err := apply(fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: ts(0), Framework: &agorav1.Framework{
			Id: fmt.Sprintf("batch-%d", p), StreamToken: fmt.Sprintf("s%d", p), Info: &agorav1.FrameworkInfo{
				Name: "batch", Principal: "batch", Roles: []string{fmt.Sprintf("batch%d", p)},
				Capabilities: []agorav1.Capability{agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES}}}}); err != nil {
			return err
		}
	}
	if err := apply(fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: ts(0), Framework: &agorav1.Framework{
		Id: "prod", StreamToken: "sp", Info: &agorav1.FrameworkInfo{Name: "prod", Principal: "prod", Roles: []string{"prod"}}}}); err != nil {
		return err
	}
	perRole := [3]int{4, 3, 3}
	for i := range agents {
		id := fmt.Sprintf("agent-%05d", i)
		if err := apply(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: ts(i), Agent: &agorav1.Agent{
			Id: id, Hostname: id, Address: fmt.Sprintf("10.%d.%d.%d:5051", i/65536, i/256%256, i%256), Resources: res("cpus:16;mem:65536")}}); err != nil {
			return err
		}
		offers := &agorav1.OffersCreatedCommand{Now: ts(i)}
		for p, n := range perRole {
			offers.Offers = append(offers.Offers, &agorav1.Offer{Id: fmt.Sprintf("o-%d-%d", i, p), FrameworkId: fmt.Sprintf("batch-%d", p),
				AgentId: id, Role: fmt.Sprintf("batch%d", p), Revocable: true, ExpiresAt: ts(i + 3600),
				Resources: res(fmt.Sprintf("cpus:%g;mem:%d", 1.6*float64(n), 6553*n))})
		}
		if err := apply(fsm.CmdOffersCreated, offers); err != nil {
			return err
		}
		for p, n := range perRole {
			acc := &agorav1.AcceptCommand{FrameworkId: fmt.Sprintf("batch-%d", p), OfferIds: []string{fmt.Sprintf("o-%d-%d", i, p)}, Now: ts(i)}
			op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
			for j := range n {
				op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: fmt.Sprintf("t-%d-%d-%d", i, p, j), Resources: res("cpus:1.6;mem:6553"),
					Command: &agorav1.CommandInfo{Value: "sleep 3600"}})
			}
			acc.Operations = []*agorav1.Operation{op}
			if err := apply(fsm.CmdAccept, acc); err != nil {
				return err
			}
		}
	}
	if err := apply(fsm.CmdSetDemand, &agorav1.SetDemandCommand{FrameworkId: "prod", Demand: []*agorav1.Demand{
		{Role: "prod", Resources: res("cpus:4;mem:8192"), Count: uint32(units)}}}); err != nil {
		return err
	}
	return nil
}

// BenchmarkPreemptionPass: the leader's whole decision over a state of
// 10,000 agents and 100,000 revocable tasks (state -> input -> Decide),
// and the input building alone. It builds the state once (seconds).
func BenchmarkPreemptionPass(b *testing.B) {
	const agents, units = 10_000, 10
	preemptBench.once.Do(func() {
		pb := newPreemptBuilder()
		if preemptBench.err = pb.build(agents, units); preemptBench.err != nil {
			return
		}
		preemptBench.st = pb.f.State()
		preemptBench.err = pb.apply(fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "batch-0", TaskId: "t-17-0-1", Now: &timestamppb.Timestamp{Seconds: 1_700_000_000}})
		preemptBench.st2 = pb.f.State()
	})
	st, st2, err := preemptBench.st, preemptBench.st2, preemptBench.err
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_700_000_000+agents, 0)
	name := fmt.Sprintf("agents=%d/tasks=%d/units=%d", agents, 10*agents, units)
	b.Run("input/"+name, func(b *testing.B) {
		for b.Loop() {
			in := preemptInput(st, now)
			if len(in.Agents) != agents || len(in.Demands) != 1 {
				b.Fatalf("input: %d agents, %d demands", len(in.Agents), len(in.Demands))
			}
		}
	})
	b.Run("pass/"+name, func(b *testing.B) {
		for b.Loop() {
			p := preempt.Decide(preemptInput(st, now))
			if v := p.Verdicts[0]; v.Preempting != units {
				b.Fatalf("verdict %+v", v)
			}
		}
	})
	// What the leader does: its cache converts only the agents whose tasks
	// or usage changed since its last pass. "unchanged" passes over the
	// same state; "one-agent-changed" alternates between two states that
	// differ in one agent's tasks, so each pass converts that agent again.
	cached := func(states ...*fsm.State) func(b *testing.B) {
		return func(b *testing.B) {
			c := newPreemptCache()
			c.input(st, now)
			i := 0
			for b.Loop() {
				p := preempt.Decide(c.input(states[i%len(states)], now))
				i++
				if v := p.Verdicts[0]; v.Preempting != units {
					b.Fatalf("verdict %+v", v)
				}
			}
		}
	}
	b.Run("cached-input/unchanged/"+name, func(b *testing.B) {
		c := newPreemptCache()
		c.input(st, now)
		for b.Loop() {
			c.input(st, now)
		}
	})
	b.Run("cached-pass/unchanged/"+name, cached(st))
	b.Run("cached-pass/one-agent-changed/"+name, cached(st, st2))
}
