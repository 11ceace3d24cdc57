package framework

import (
	"testing"

	"google.golang.org/protobuf/proto"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestOperationBuilders(t *testing.T) {
	task := Task("web-1", "a1", "sleep 5", Scalar("cpus", 0.5), Scalar("mem", 64))
	if op := Launch(task); op.GetType() != agorav1.OperationType_OPERATION_TYPE_LAUNCH || len(op.GetTasks()) != 1 || op.GetTasks()[0] != task {
		t.Fatalf("Launch: %v", op)
	}
	if op := LaunchGroup(task, task); op.GetType() != agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP || len(op.GetTasks()) != 2 {
		t.Fatalf("LaunchGroup: %v", op)
	}
	if task.GetCommand().GetValue() != "sleep 5" || task.GetAgentId() != "a1" || task.GetName() != "web-1" {
		t.Fatalf("Task: %v", task)
	}

	in := []*agorav1.Resource{Scalar("disk", 100), Scalar("cpus", 1)}
	labels := map[string]string{"owner": "db"}
	op := Reserve("db", in, labels)
	if op.GetType() != agorav1.OperationType_OPERATION_TYPE_RESERVE {
		t.Fatalf("Reserve type %v", op.GetType())
	}
	for i, r := range op.GetResources() {
		if r.GetRole() != "db" || r.GetName() != in[i].GetName() || r.GetScalar() != in[i].GetScalar() {
			t.Fatalf("reserved resource %d: %v", i, r)
		}
		if in[i].GetRole() != "" {
			t.Fatal("Reserve modified its input")
		}
	}
	labels["owner"] = "changed"
	if op.GetLabels()["owner"] != "db" {
		t.Fatal("Reserve shares the caller's label map")
	}

	if op := Unreserve(op.GetResources()); op.GetType() != agorav1.OperationType_OPERATION_TYPE_UNRESERVE || len(op.GetResources()) != 2 {
		t.Fatalf("Unreserve: %v", op)
	}
	vol := &agorav1.VolumeInfo{Id: "v1", SizeMib: 64, ContainerPath: "data", Role: "db"}
	if op := CreateVolume(vol); op.GetType() != agorav1.OperationType_OPERATION_TYPE_CREATE || !proto.Equal(op.GetVolumes()[0], vol) {
		t.Fatalf("CreateVolume: %v", op)
	}
	if op := DestroyVolume(vol); op.GetType() != agorav1.OperationType_OPERATION_TYPE_DESTROY || len(op.GetVolumes()) != 1 {
		t.Fatalf("DestroyVolume: %v", op)
	}
}

func TestScalarInAndStates(t *testing.T) {
	rs := []*agorav1.Resource{
		Scalar("cpus", 2), {Name: "cpus", Scalar: 1, Role: "db"}, Scalar("mem", 512),
		{Name: "ports", Ranges: []*agorav1.Range{{Begin: 1, End: 2}}},
	}
	if got := ScalarIn(rs, "cpus", ""); got != 2 {
		t.Fatalf("unreserved cpus %v", got)
	}
	if got := ScalarIn(rs, "cpus", "db"); got != 1 {
		t.Fatalf("db cpus %v", got)
	}
	if got := ScalarIn(rs, "ports", ""); got != 0 {
		t.Fatalf("ranges counted as scalar: %v", got)
	}
	if !IsTerminal(agorav1.TaskState_TASK_STATE_KILLED) || IsTerminal(agorav1.TaskState_TASK_STATE_RUNNING) || IsTerminal(agorav1.TaskState_TASK_STATE_UNREACHABLE) {
		t.Fatal("IsTerminal wrong")
	}
	if StateName(agorav1.TaskState_TASK_STATE_RUNNING) != "RUNNING" {
		t.Fatal(StateName(agorav1.TaskState_TASK_STATE_RUNNING))
	}
}
