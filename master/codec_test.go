package master

import (
	"testing"

	"google.golang.org/protobuf/proto"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestProtoCodec: Accept bodies, on the fast path or not, and every other
// message decode as proto.Unmarshal decodes them; bad input is an error.
func TestProtoCodec(t *testing.T) {
	refuse := 3.0
	launch := &agorav1.AcceptRequest{Call: &agorav1.FrameworkCall{FrameworkId: "fw"}, OfferIds: []string{"o1"}, RefuseSeconds: &refuse,
		Operations: []*agorav1.Operation{{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{
			{TaskId: "t1", AgentId: "a1", Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 0.5}}, Command: &agorav1.CommandInfo{Value: "true"}}}}}}
	// Volume ids are not on the entry decoder's path: proto.Unmarshal decodes them.
	withVolumes := proto.Clone(launch).(*agorav1.AcceptRequest)
	withVolumes.Operations[0].Tasks[0].VolumeIds = []string{"v1"}
	var c protoCodec
	running := &agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{
		{TaskId: "t1", FrameworkId: "fw", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u1"}}}
	for _, want := range []proto.Message{launch, withVolumes, running, &agorav1.DeclineRequest{OfferIds: []string{"o2"}}} {
		b, err := c.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got := want.ProtoReflect().New().Interface()
		if err := c.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("decoded %v, want %v", got, want)
		}
	}
	if err := c.Unmarshal([]byte{0xff}, &agorav1.AcceptRequest{}); err == nil {
		t.Error("a malformed Accept body decoded")
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("a string encoded")
	}
}
