package simagent

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// TestAnswerCodecKeepsWhatTheSimulatorReads: an answer encoded by the
// masters' codec decodes to the fields a simulated agent reads, equal to
// the full decode's; the rest is skipped; other messages decode in full.
func TestAnswerCodecKeepsWhatTheSimulatorReads(t *testing.T) {
	full := &agorav1.GetAssignmentsResponse{Index: 1 << 40, Known: true, Unchanged: true,
		Volumes: []*agorav1.Volume{{Id: "v1", AgentId: "a1", SizeMib: 10}},
		Tasks: []*agorav1.Task{
			{Id: "t1", FrameworkId: "f1", AgentId: "a1", Name: "n", Role: "r", State: agorav1.TaskState_TASK_STATE_RUNNING,
				Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:64;ports:[1-3]")), Command: &agorav1.CommandInfo{Value: "x"},
				VolumeIds: []string{"v1"}, GroupId: "g", Acknowledged: true, CreatedAt: timestamppb.New(timestamppb.Now().AsTime()),
				Status: &agorav1.TaskStatus{TaskId: "t1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u"}, Revocable: true},
			{Id: "t2", FrameworkId: "f2", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_KILLING, KillRequested: true,
				KillGraceSeconds: 2.5, KillReason: "PREEMPTED"},
		}}
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var got agorav1.GetAssignmentsResponse
	if err := (answerCodec{}).Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := &agorav1.GetAssignmentsResponse{Index: full.Index, Known: true, Unchanged: true}
	for _, ft := range full.Tasks {
		want.Tasks = append(want.Tasks, &agorav1.Task{Id: ft.Id, FrameworkId: ft.FrameworkId, AgentId: ft.AgentId, State: ft.State,
			KillRequested: ft.KillRequested, KillGraceSeconds: ft.KillGraceSeconds})
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("decoded %v, want %v", &got, want)
	}
	if err := (answerCodec{}).Unmarshal(b[:len(b)-3], &got); err == nil {
		t.Fatal("a truncated answer decoded")
	}
	// Other messages are decoded in full.
	st := &agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{TaskId: "t1", Uuid: "u", Message: "m"}}}
	sb, err := (answerCodec{}).Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back agorav1.UpdateStatusRequest
	if err := (answerCodec{}).Unmarshal(sb, &back); err != nil || !proto.Equal(&back, st) {
		t.Fatalf("round trip %v (%v), want %v", &back, err, st)
	}
}

// BenchmarkAnswerDecode decodes an answer of 100 tasks as the masters
// send them (e2e bench tasks): in full, and with answerCodec.
func BenchmarkAnswerDecode(b *testing.B) {
	r := &agorav1.GetAssignmentsResponse{Index: 12345, Known: true}
	for i := range 100 {
		id := "t0-" + string(rune('a'+i%26)) + "00000"
		r.Tasks = append(r.Tasks, &agorav1.Task{Id: id, FrameworkId: "fw-0123456789", AgentId: "sim123-00042", Name: id, Role: "*",
			Resources: resourcepb.ToProto("", resources.MustParse("cpus:0.01;mem:1")), Command: &agorav1.CommandInfo{Value: "true"},
			State: agorav1.TaskState_TASK_STATE_RUNNING, Acknowledged: true, CreatedAt: timestamppb.Now(),
			Status: &agorav1.TaskStatus{TaskId: id, FrameworkId: "fw-0123456789", AgentId: "sim123-00042", State: agorav1.TaskState_TASK_STATE_RUNNING,
				Uuid: "0c1d8a52-6b0e-4a8e-9f0e-1b2c3d4e5f60", Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Timestamp: timestamppb.Now()}})
	}
	raw, err := proto.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m agorav1.GetAssignmentsResponse
			if err := proto.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("answerCodec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m agorav1.GetAssignmentsResponse
			if err := (answerCodec{}).Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
