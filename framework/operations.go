package framework

import (
	"maps"

	"google.golang.org/protobuf/proto"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Launch builds a LAUNCH operation for tasks. Each task names its agent and
// the resources it takes from the accepted offers.
func Launch(tasks ...*agorav1.TaskInfo) *agorav1.Operation {
	return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: tasks}
}

// LaunchGroup builds a LAUNCH_GROUP operation: the tasks start and fail
// together on one agent.
func LaunchGroup(tasks ...*agorav1.TaskInfo) *agorav1.Operation {
	return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP, Tasks: tasks}
}

// Reserve builds a RESERVE operation that reserves copies of r for role,
// with labels. The resources given are not modified.
func Reserve(role string, r []*agorav1.Resource, labels map[string]string) *agorav1.Operation {
	out := make([]*agorav1.Resource, 0, len(r))
	for _, res := range r {
		c := proto.Clone(res).(*agorav1.Resource)
		c.Role = role
		out = append(out, c)
	}
	return &agorav1.Operation{
		Type:      agorav1.OperationType_OPERATION_TYPE_RESERVE,
		Resources: out,
		Labels:    maps.Clone(labels),
	}
}

// Unreserve builds an UNRESERVE operation; each resource carries the role
// it is reserved for.
func Unreserve(r []*agorav1.Resource) *agorav1.Operation {
	return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_UNRESERVE, Resources: r}
}

// CreateVolume builds a CREATE operation for persistent volumes on reserved
// disk.
func CreateVolume(volumes ...*agorav1.VolumeInfo) *agorav1.Operation {
	return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: volumes}
}

// DestroyVolume builds a DESTROY operation for persistent volumes.
func DestroyVolume(volumes ...*agorav1.VolumeInfo) *agorav1.Operation {
	return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_DESTROY, Volumes: volumes}
}

// Scalar builds an unreserved scalar resource such as Scalar("cpus", 0.5).
func Scalar(name string, v float64) *agorav1.Resource {
	return &agorav1.Resource{Name: name, Scalar: v}
}

// ScalarIn sums the scalar resource name reserved for role ("" for
// unreserved) in rs, such as the cpus of an offer.
func ScalarIn(rs []*agorav1.Resource, name, role string) float64 {
	var sum float64
	for _, r := range rs {
		if r.GetName() == name && r.GetRole() == role && len(r.GetRanges()) == 0 && len(r.GetSet()) == 0 {
			sum += r.GetScalar()
		}
	}
	return sum
}

// Task builds a TaskInfo running cmd with /bin/sh -c on agentID with the
// given resources.
func Task(id, agentID, cmd string, res ...*agorav1.Resource) *agorav1.TaskInfo {
	return &agorav1.TaskInfo{
		TaskId:    id,
		Name:      id,
		AgentId:   agentID,
		Resources: res,
		Command:   &agorav1.CommandInfo{Value: cmd},
	}
}

// IsTerminal reports whether a task in state s will never change again.
func IsTerminal(s agorav1.TaskState) bool {
	switch s {
	case agorav1.TaskState_TASK_STATE_FINISHED, agorav1.TaskState_TASK_STATE_FAILED,
		agorav1.TaskState_TASK_STATE_KILLED, agorav1.TaskState_TASK_STATE_ERROR,
		agorav1.TaskState_TASK_STATE_LOST, agorav1.TaskState_TASK_STATE_DROPPED,
		agorav1.TaskState_TASK_STATE_GONE, agorav1.TaskState_TASK_STATE_GONE_BY_OPERATOR:
		return true
	}
	return false
}

// StateName is the short name of a task state, such as "RUNNING".
func StateName(s agorav1.TaskState) string {
	n := s.String()
	const prefix = "TASK_STATE_"
	if len(n) > len(prefix) && n[:len(prefix)] == prefix {
		return n[len(prefix):]
	}
	return n
}
