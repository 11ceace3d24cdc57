package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// checkTaskDecode: where the task decoder accepts body, proto.Unmarshal
// accepts it too and yields an equal task; where proto.Unmarshal rejects
// it, the decoder declines.
func checkTaskDecode(t interface {
	Helper()
	Fatalf(string, ...any)
}, d *taskDecoder, body []byte) (accepted bool) {
	t.Helper()
	want := &agorav1.Task{}
	perr := proto.Unmarshal(body, want)
	got, ok := d.decode(body)
	if !ok {
		return false
	}
	if perr != nil {
		t.Fatalf("decoder accepted what proto.Unmarshal rejects (%v): %x", perr, body)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("decoded %v, proto.Unmarshal %v", got, want)
	}
	return true
}

func genTask(t *rapid.T) *agorav1.Task {
	str := rapid.SampledFrom([]string{"", "a", "fw-1", "agent-00001", "task-0000001", "web", "é", "x\x00y"})
	ts := func(label string) *timestamppb.Timestamp {
		if !rapid.Bool().Draw(t, label+"?") {
			return nil
		}
		return &timestamppb.Timestamp{Seconds: rapid.Int64().Draw(t, label+"s"), Nanos: rapid.Int32().Draw(t, label+"n")}
	}
	task := &agorav1.Task{Id: str.Draw(t, "id"), FrameworkId: str.Draw(t, "fid"), AgentId: str.Draw(t, "aid"),
		Name: str.Draw(t, "name"), Role: str.Draw(t, "role"), GroupId: str.Draw(t, "group"),
		State: agorav1.TaskState(rapid.Int32Range(-2, 12).Draw(t, "state")), Acknowledged: rapid.Bool().Draw(t, "ack"),
		KillRequested: rapid.Bool().Draw(t, "kill"), KillGraceSeconds: rapid.Float64().Draw(t, "grace"),
		CreatedAt: ts("created"), Revocable: rapid.Bool().Draw(t, "revocable"), KillReason: str.Draw(t, "reason")}
	for i := range rapid.IntRange(0, 4).Draw(t, "resources") {
		r := &agorav1.Resource{Name: str.Draw(t, "rname"), Scalar: rapid.Float64().Draw(t, "scalar"), Role: str.Draw(t, "rrole")}
		switch rapid.IntRange(0, 6).Draw(t, "rkind") {
		case 0:
			r.Ranges = []*agorav1.Range{{Begin: uint64(i), End: uint64(i + 10)}}
		case 1:
			r.Set = []string{str.Draw(t, "set")}
		case 2:
			r.Volume = &agorav1.ResourceVolume{Id: "v"}
		}
		task.Resources = append(task.Resources, r)
	}
	for range rapid.IntRange(0, 2).Draw(t, "volumes") {
		task.VolumeIds = append(task.VolumeIds, str.Draw(t, "vid"))
	}
	if rapid.Bool().Draw(t, "command?") {
		task.Command = &agorav1.CommandInfo{Value: str.Draw(t, "cmd")}
		if rapid.IntRange(0, 4).Draw(t, "env?") == 0 {
			task.Command.Environment = map[string]string{"K": "V"}
		}
	}
	if rapid.Bool().Draw(t, "status?") {
		id := task.Id
		if rapid.Bool().Draw(t, "otherID") {
			id = str.Draw(t, "sid")
		}
		task.Status = &agorav1.TaskStatus{TaskId: id, FrameworkId: str.Draw(t, "sfid"), AgentId: str.Draw(t, "said"),
			State: agorav1.TaskState(rapid.Int32Range(-1, 12).Draw(t, "sstate")), Uuid: str.Draw(t, "uuid"),
			Reason: str.Draw(t, "sreason"), Message: str.Draw(t, "msg"), Source: agorav1.StatusSource(rapid.Int32Range(0, 3).Draw(t, "src")),
			Timestamp: ts("stamp"), ExitCode: rapid.Int32().Draw(t, "exit"), Healthy: rapid.Bool().Draw(t, "healthy")}
	}
	return task
}

// TestTaskDecoderMatchesProto: on random tasks, on two encodings
// concatenated (which proto merges) and on truncated or corrupted
// encodings, the task decoder either declines or yields what
// proto.Unmarshal yields; and it accepts the common shape (scalar
// resources, a command, a status) that restores are made of.
func TestTaskDecoderMatchesProto(t *testing.T) {
	d := &taskDecoder{in: interner{}}
	rapid.Check(t, func(rt *rapid.T) {
		task := genTask(rt)
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(task)
		if err != nil {
			rt.Fatal(err)
		}
		accepted := checkTaskDecode(rt, d, body)
		common := task.GetCommand().GetEnvironment() == nil
		for _, r := range task.GetResources() {
			common = common && r.Ranges == nil && r.Set == nil && r.Volume == nil
		}
		if common && !accepted {
			rt.Fatalf("decoder declined a task of the common shape: %v", task)
		}
		other, _ := proto.Marshal(genTask(rt))
		checkTaskDecode(rt, d, append(append([]byte{}, body...), other...))
		if len(body) > 0 {
			cut := rapid.IntRange(0, len(body)-1).Draw(rt, "cut")
			checkTaskDecode(rt, d, body[:cut])
			flipped := append([]byte{}, body...)
			flipped[cut] ^= byte(rapid.IntRange(1, 255).Draw(rt, "flip"))
			checkTaskDecode(rt, d, flipped)
		}
	})
}

// TestTaskDecoderSharesRepeatedParts: consecutive tasks encoded with the
// same resources or command share one copy of them (as a launch stores
// them), each still equal to what proto.Unmarshal yields; a task whose
// resources or command differ, or one that follows a declined task, gets
// its own or the right shared copy.
func TestTaskDecoderSharesRepeatedParts(t *testing.T) {
	res := func(cpus float64) []*agorav1.Resource {
		return []*agorav1.Resource{{Name: "cpus", Scalar: cpus}, {Name: "mem", Scalar: 512}}
	}
	tasks := []*agorav1.Task{
		{Id: "t1", Resources: res(0.5), Command: &agorav1.CommandInfo{Value: "sleep 1"}},
		{Id: "t2", Resources: res(0.5), Command: &agorav1.CommandInfo{Value: "sleep 1"}},
		{Id: "t3", Resources: res(0.25), Command: &agorav1.CommandInfo{Value: "sleep 1"}},
		{Id: "t4", Resources: res(0.25), Command: &agorav1.CommandInfo{Value: "sleep 2"}},
		// Declined (a range): decoded by proto.Unmarshal, not remembered.
		{Id: "t5", Resources: []*agorav1.Resource{{Name: "ports", Ranges: []*agorav1.Range{{Begin: 1, End: 2}}}}},
		{Id: "t6", Resources: res(0.25), Command: &agorav1.CommandInfo{Value: "sleep 2"}},
		{Id: "t7", Resources: res(0.25)[:1], Command: &agorav1.CommandInfo{Value: "sleep 2"}},
		{Id: "t8"},
	}
	d := &taskDecoder{in: interner{}}
	got := make([]*agorav1.Task, len(tasks))
	for i, task := range tasks {
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(task)
		if err != nil {
			t.Fatal(err)
		}
		dec, ok := d.decode(body)
		if want := i != 4; ok != want {
			t.Fatalf("task %s: decoded %v, want %v", task.Id, ok, want)
		}
		if !ok {
			continue
		}
		if !proto.Equal(dec, task) {
			t.Fatalf("task %s decoded as %v", task.Id, dec)
		}
		got[i] = dec
	}
	sameRes := func(i, j int) bool { return &got[i].Resources[0] == &got[j].Resources[0] }
	if !sameRes(0, 1) || got[0].Command != got[1].Command {
		t.Error("t1 and t2 are encoded alike but do not share resources and command")
	}
	if sameRes(1, 2) || got[2].Command != got[1].Command {
		t.Error("t3: resources differ from t2's (must not be shared), command equal (must be shared)")
	}
	if !sameRes(2, 3) || got[3].Command == got[2].Command {
		t.Error("t4: resources equal to t3's (must be shared), command differs (must not be)")
	}
	if !sameRes(3, 5) || got[5].Command != got[3].Command {
		t.Error("t6 after a declined task: still shares t4's resources and command")
	}
	if len(got[6].Resources) != 1 || sameRes(5, 6) || got[6].Command != got[5].Command {
		t.Error("t7 has one resource of t6's two: its own list; same command: shared")
	}
	if got[7].Resources != nil || got[7].Command != nil {
		t.Error("t8 has no resources or command but was given some")
	}
}

// FuzzTaskDecode: on any bytes the task decoder declines or agrees with
// proto.Unmarshal.
func FuzzTaskDecode(f *testing.F) {
	for _, task := range []*agorav1.Task{
		{Id: "task-1", FrameworkId: "fw-1", AgentId: "agent-00001", Name: "task-1", Role: "web",
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 0.5}, {Name: "mem", Scalar: 512}},
			Command:   &agorav1.CommandInfo{Value: "sleep 3600"}, State: agorav1.TaskState_TASK_STATE_RUNNING, Acknowledged: true,
			CreatedAt: &timestamppb.Timestamp{Seconds: 1700000000},
			Status: &agorav1.TaskStatus{TaskId: "task-1", FrameworkId: "fw-1", AgentId: "agent-00001", State: agorav1.TaskState_TASK_STATE_RUNNING,
				Uuid: "u", Timestamp: &timestamppb.Timestamp{Seconds: 1700000000}}},
		{},
	} {
		b, err := proto.Marshal(task)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	d := &taskDecoder{in: interner{}}
	f.Fuzz(func(t *testing.T, b []byte) { checkTaskDecode(t, d, b) })
}
