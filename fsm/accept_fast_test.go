package fsm

import (
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// fillEveryField sets every field of m to a non-default value (one element
// for lists and maps, an empty message for messages) and adds an unknown
// field, so that a hand-written copy that misses a field, present or
// added later, differs from m.
func fillEveryField(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(scalarValue(fd.MapKey()).MapKey(), scalarValue(fd.MapValue()))
		case fd.IsList():
			l := m.Mutable(fd).List()
			if fd.Message() != nil {
				l.Append(protoreflect.ValueOfMessage(l.NewElement().Message()))
			} else {
				l.Append(scalarValue(fd))
			}
		case fd.Message() != nil:
			m.Mutable(fd)
		default:
			m.Set(fd, scalarValue(fd))
		}
	}
	m.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9999, protowire.VarintType), 7))
}

func scalarValue(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x-" + string(fd.Name()))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1.5)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(3)
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(3)
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(3)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(3)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	}
	panic(fmt.Sprintf("kind %v", fd.Kind()))
}

func TestCopyTaskCopiesEveryField(t *testing.T) {
	in := &agorav1.Task{}
	fillEveryField(in.ProtoReflect())
	if out := copyTask(in); !proto.Equal(in, out) {
		t.Fatalf("copyTask lost a field:\n in: %v\nout: %v", in, out)
	}
}

func TestCopyStatusCopiesEveryField(t *testing.T) {
	in := &agorav1.TaskStatus{}
	fillEveryField(in.ProtoReflect())
	if out := copyStatus(in); !proto.Equal(in, out) {
		t.Fatalf("copyStatus lost a field:\n in: %v\nout: %v", in, out)
	}
}

func TestCopyCommandCopiesEveryField(t *testing.T) {
	in := &agorav1.CommandInfo{}
	fillEveryField(in.ProtoReflect())
	out := copyCommand(in)
	if !proto.Equal(in, out) {
		t.Fatalf("copyCommand lost a field:\n in: %v\nout: %v", in, out)
	}
	out.Environment["new"] = "y"
	if _, shared := in.Environment["new"]; shared {
		t.Fatal("copyCommand shares the environment map")
	}
	if copyCommand(nil) != nil {
		t.Fatal("copyCommand(nil) is not nil")
	}
}

// TestLaunchMemo launches tasks whose resources repeat, change and repeat
// again, in one accept, and checks that each stored task holds exactly
// what parsing its own resources gives (resourcepb.FromProto, then
// Pools.ToProto), that tasks share resource and command messages only where
// they are equal (and do share them in a run of equal tasks), and that the
// agent is charged their sum.
func TestLaunchMemo(t *testing.T) {
	h := newHarness(t)
	for _, e := range seedLog(t)[:5] { // the role, agents a1 and a2, frameworks f1 and f2
		h.index++
		if res := h.f.ApplyCommand(h.index, e); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	h.apply(CmdOffersCreated, mustParse[*agorav1.OffersCreatedCommand](t, `now: {seconds: 2} offers: {id: "o9" framework_id: "f2" agent_id: "a2" role: "*" @resources(cpus:4;mem:4096) expires_at: {seconds: 100}}`))
	specs := []string{"cpus:0.5;mem:100", "cpus:0.5;mem:100", "cpus:0.25", "cpus:0.5;mem:100", "cpus:0.5;mem:100", "mem:100;cpus:0.5", "cpus:0.25"}
	op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
	want := map[string][]*agorav1.Resource{}
	var sum resources.Resources
	for i, spec := range specs {
		r := resources.MustParse(spec)
		rs := resourcepb.ToProto("", r)
		if i == 5 { // the same resources in another order: not the memo's input, parsed anew
			rs[0], rs[1] = rs[1], rs[0]
		}
		id := fmt.Sprintf("m%d", i)
		op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: id, Resources: rs, Command: &agorav1.CommandInfo{Value: "x"}})
		p, err := resourcepb.FromProto(rs)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = p.ToProto()
		sum = sum.Add(r)
	}
	if res := h.apply(CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f2", OfferIds: []string{"o9"}, Now: &timestamppb.Timestamp{Seconds: 3}, Operations: []*agorav1.Operation{op}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	tasks := map[string]*agorav1.Task{}
	for id, w := range want {
		task, ok := h.f.State().Task("f2", id)
		if !ok {
			t.Fatalf("task %s not stored", id)
		}
		tasks[id] = task
		got := &agorav1.Task{Resources: task.GetResources()}
		if !proto.Equal(got, &agorav1.Task{Resources: w}) {
			t.Errorf("task %s resources %v, want %v", id, task.GetResources(), w)
		}
		if task.GetCommand().GetValue() != "x" {
			t.Errorf("task %s command %v, want x", id, task.GetCommand())
		}
	}
	// A message two tasks share holds what both asked for.
	seen := map[*agorav1.Resource]string{}
	for id, task := range tasks {
		for _, r := range task.GetResources() {
			if other, dup := seen[r]; dup && !proto.Equal(&agorav1.Task{Resources: want[id]}, &agorav1.Task{Resources: want[other]}) {
				t.Errorf("tasks %s and %s share a resource message but ask for different resources", id, other)
			}
			seen[r] = id
		}
	}
	// A run of equal tasks shares one resource list and one command.
	if a, b := tasks["m0"], tasks["m1"]; &a.GetResources()[0] != &b.GetResources()[0] || a.GetCommand() != b.GetCommand() {
		t.Errorf("tasks m0 and m1 ask for the same resources and command but do not share them")
	}
	if used := h.f.State().AgentUsage("a2").Used.Total(); !used.Equal(sum) {
		t.Errorf("agent a2 charged %s, want %s", used, sum)
	}
}

// TestLaunchSharesPlainCommands: tasks of a launch share a stored command
// only when it is a bare value equal to the previous task's; a command with
// an environment is each task's own copy, and no stored command is the
// caller's message or holds its map.
func TestLaunchSharesPlainCommands(t *testing.T) {
	h := newHarness(t)
	for _, e := range seedLog(t)[:5] {
		h.index++
		h.f.ApplyCommand(h.index, e)
	}
	h.apply(CmdOffersCreated, mustParse[*agorav1.OffersCreatedCommand](t, `now: {seconds: 2} offers: {id: "o9" framework_id: "f2" agent_id: "a2" role: "*" @resources(cpus:4) expires_at: {seconds: 100}}`))
	cmds := []*agorav1.CommandInfo{
		{Value: "x"}, {Value: "x"}, {Value: "y"},
		{Value: "y", Environment: map[string]string{"K": "1"}}, {Value: "y", Environment: map[string]string{"K": "1"}},
		{Value: "y"},
	}
	op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
	for i, c := range cmds {
		op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: fmt.Sprintf("c%d", i), Command: c,
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 0.5}}})
	}
	if res := h.apply(CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f2", OfferIds: []string{"o9"}, Now: &timestamppb.Timestamp{Seconds: 3}, Operations: []*agorav1.Operation{op}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	stored := make([]*agorav1.CommandInfo, len(cmds))
	for i, c := range cmds {
		task, ok := h.f.State().Task("f2", fmt.Sprintf("c%d", i))
		if !ok {
			t.Fatalf("task c%d not stored", i)
		}
		stored[i] = task.GetCommand()
		if !proto.Equal(stored[i], c) {
			t.Errorf("task c%d command %v, want %v", i, stored[i], c)
		}
		if stored[i] == c {
			t.Errorf("task c%d stores the caller's command message", i)
		}
	}
	shared := func(i, j int) bool { return stored[i] == stored[j] }
	if !shared(0, 1) {
		t.Error("c0 and c1 run the same bare command but do not share it")
	}
	if shared(1, 2) || shared(2, 3) || shared(3, 4) || shared(4, 5) || shared(2, 5) {
		t.Error("tasks share a command that differs from, or follows, one with an environment")
	}
	cmds[3].Environment["K"] = "changed"
	if stored[3].GetEnvironment()["K"] != "1" {
		t.Error("a stored command holds the caller's environment map")
	}
}

// TestLaunchMemoRefusals: a task whose resources repeat the previous
// task's is refused as that task would be when the offers run out, and a
// NaN scalar repeated is refused every time (never taken from the memo).
func TestLaunchMemoRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		cpus []float64
		want string
	}{
		{"pool runs out on a repeat", []float64{1.5, 1.5}, "operation 0: not enough resources in the offers for task m1: wants cpus:1.5, cpus:0.5 left"},
		{"NaN repeated", []float64{1, math.NaN()}, "operation 0: task m1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for _, e := range seedLog(t)[:5] {
				h.index++
				h.f.ApplyCommand(h.index, e)
			}
			h.apply(CmdOffersCreated, mustParse[*agorav1.OffersCreatedCommand](t, `now: {seconds: 2} offers: {id: "o9" framework_id: "f2" agent_id: "a2" role: "*" @resources(cpus:2) expires_at: {seconds: 100}}`))
			op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
			for i, c := range tc.cpus {
				op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: fmt.Sprintf("m%d", i), Command: &agorav1.CommandInfo{Value: "x"},
					Resources: []*agorav1.Resource{{Name: "cpus", Scalar: c}}})
			}
			res := h.apply(CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f2", OfferIds: []string{"o9"}, Now: &timestamppb.Timestamp{Seconds: 3}, Operations: []*agorav1.Operation{op}})
			if res.Err == nil || len(res.Err.Message) < len(tc.want) || res.Err.Message[:len(tc.want)] != tc.want {
				t.Fatalf("rejection %v, want one starting %q", res.Err, tc.want)
			}
		})
	}
}

// TestLaunchRunsMatchOneByOne: a launch debits runs of tasks asking for
// the same resources once per run (launchRun); whatever the mix of
// repeated and changing resources, it must accept exactly what taking the
// tasks from the offer one by one accepts, refuse the first task that no
// longer fits with the same message, and charge the agent the same sum.
func TestLaunchRunsMatchOneByOne(t *testing.T) {
	specs := []string{"cpus:0.5;mem:100", "cpus:0.25", "mem:300", "cpus:1;mem:1000", "cpus:0.001", "mem:100;cpus:0.5"}
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(rt)
		for _, e := range seedLog(rt)[:5] { // the role, agents a1 and a2, frameworks f1 and f2
			h.index++
			if res := h.f.ApplyCommand(h.index, e); res.Err != nil {
				rt.Fatalf("seed: %v", res.Err)
			}
		}
		offer := rapid.SampledFrom([]string{"cpus:2;mem:1000", "cpus:4;mem:4096", "cpus:0.75;mem:250", "cpus:0.003;mem:4000"}).Draw(rt, "offer")
		if res := h.apply(CmdOffersCreated, mustParse[*agorav1.OffersCreatedCommand](rt, `now: {seconds: 2} offers: {id: "o9" framework_id: "f2" agent_id: "a2" role: "*" @resources(`+offer+`) expires_at: {seconds: 100}}`)); res.Err != nil {
			rt.Fatalf("offer: %v", res.Err)
		}
		left := resources.MustParse(offer)
		var sum resources.Resources
		wantErr := ""
		op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
		for i := range rapid.IntRange(1, 12).Draw(rt, "tasks") {
			spec := rapid.SampledFrom(specs).Draw(rt, "spec")
			r := resources.MustParse(spec)
			rs := resourcepb.ToProto("", r)
			if spec == "mem:100;cpus:0.5" { // same resources, another order: parsed anew
				rs[0], rs[1] = rs[1], rs[0]
			}
			id := fmt.Sprintf("m%d", i)
			op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: id, Resources: rs, Command: &agorav1.CommandInfo{Value: "x"}})
			if wantErr != "" {
				continue
			}
			if !left.Contains(r) {
				wantErr = fmt.Sprintf("operation 0: not enough resources in the offers for task %s: wants %s, %s left", id, r, orNothing(left))
				continue
			}
			var err error
			if left, err = left.Subtract(r); err != nil {
				rt.Fatalf("reference: %v", err)
			}
			sum = sum.Add(r)
		}
		res := h.apply(CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f2", OfferIds: []string{"o9"}, Now: &timestamppb.Timestamp{Seconds: 3}, Operations: []*agorav1.Operation{op}})
		switch {
		case wantErr != "" && (res.Err == nil || res.Err.Message != wantErr):
			rt.Fatalf("rejection %v, want %q", res.Err, wantErr)
		case wantErr == "" && res.Err != nil:
			rt.Fatalf("refused: %v", res.Err)
		case wantErr == "":
			if used := h.f.State().AgentUsage("a2").Used.Total(); !used.Equal(sum) {
				rt.Fatalf("agent a2 charged %s, want %s", used, sum)
			}
		}
	})
}
