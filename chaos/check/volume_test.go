package check

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestCheckVolumeExclusive(t *testing.T) {
	ok := []VolumeUse{
		{Volume: "v1", Task: "f/t1", TaskAgent: "a1", VolumeAgent: "a1", State: "RUNNING"},
		{Volume: "v2", Task: "f/t2", TaskAgent: "a1", VolumeAgent: "a1", State: "STAGING"},
	}
	if v := CheckVolumeExclusive(5, ok); len(v) != 0 {
		t.Fatalf("false positives: %v", v)
	}
	cases := map[string][]VolumeUse{
		"two running tasks": append(append([]VolumeUse{}, ok...),
			VolumeUse{Volume: "v1", Task: "g/t9", TaskAgent: "a1", VolumeAgent: "a1", State: "RUNNING"}),
		"unreachable and staging": {
			{Volume: "v1", Task: "f/t1", TaskAgent: "a1", VolumeAgent: "a1", State: "UNREACHABLE"},
			{Volume: "v1", Task: "f/t2", TaskAgent: "a1", VolumeAgent: "a1", State: "STAGING"},
		},
		"volume elsewhere": {{Volume: "v1", Task: "f/t1", TaskAgent: "a2", VolumeAgent: "a1", State: "RUNNING"}},
		"volume missing":   {{Volume: "v1", Task: "f/t1", TaskAgent: "a1", State: "RUNNING"}},
	}
	for name, uses := range cases {
		v := CheckVolumeExclusive(9, uses)
		if len(v) != 1 || v[0].Checker != "volume-exclusive" || !strings.Contains(v[0].Detail, "index 9") {
			t.Errorf("%s: planted violation not caught as one volume-exclusive violation: %v", name, v)
		}
	}
}

// volumeScenario reserves, creates v1 and launches t1 on it; the agent is
// partitioned (t1 LOST), returns still running t1 (kill requested), and t2
// is launched on v1: at no index do two live tasks share v1.
func volumeScenario(t0 time.Time) []logEntry {
	ts := timestamppb.New
	disk := func(role string, mib float64) *agorav1.Resource {
		return &agorav1.Resource{Name: "disk", Scalar: mib, Role: role}
	}
	agent := &agorav1.Agent{Id: "a1", Hostname: "h1", Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 4}, {Name: "mem", Scalar: 1024}, disk("", 1000)}}
	launch := func(tid string) *agorav1.Operation {
		return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{{TaskId: tid,
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1, Role: "db"}}, Command: &agorav1.CommandInfo{Value: "sleep 30"}, VolumeIds: []string{"v1"}}}}
	}
	offer := func(id string, rs ...*agorav1.Resource) *agorav1.OffersCreatedCommand {
		return &agorav1.OffersCreatedCommand{Now: ts(t0), Offers: []*agorav1.Offer{{Id: id, FrameworkId: "f1", AgentId: "a1", Role: "db",
			Resources: rs, ExpiresAt: ts(t0.Add(time.Hour))}}}
	}
	return []logEntry{
		{fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: ts(t0), Agent: agent}},
		{fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: ts(t0), Framework: &agorav1.Framework{Id: "f1", StreamToken: "tok",
			Info: &agorav1.FrameworkInfo{Id: "f1", Name: "fw", Roles: []string{"db"}, FailoverTimeoutSeconds: 3600}}}},
		{fsm.CmdOffersCreated, offer("o1", &agorav1.Resource{Name: "cpus", Scalar: 2}, disk("", 500))},
		{fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f1", OfferIds: []string{"o1"}, Now: ts(t0), Operations: []*agorav1.Operation{
			{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 2, Role: "db"}, disk("db", 500)}},
			{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: []*agorav1.VolumeInfo{{Id: "v1", SizeMib: 500, ContainerPath: "data"}}},
			launch("t1"),
		}}},
		{fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: "a1", Now: ts(t0), Statuses: []*agorav1.TaskStatus{{
			TaskId: "t1", FrameworkId: "f1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u1"}}}},
		{fsm.CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: "a1", Now: ts(t0)}},
		{fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: ts(t0), Agent: agent, Tasks: []*agorav1.TaskStatus{{
			TaskId: "t1", FrameworkId: "f1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u1"}}}},
		{fsm.CmdOffersCreated, offer("o2", &agorav1.Resource{Name: "cpus", Scalar: 1, Role: "db"},
			&agorav1.Resource{Name: "disk", Scalar: 500, Role: "db", Volume: &agorav1.ResourceVolume{Id: "v1", ContainerPath: "data"}})},
		{fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f1", OfferIds: []string{"o2"}, Now: ts(t0), Operations: []*agorav1.Operation{launch("t2")}}},
	}
}

func TestReplayChecksVolumes(t *testing.T) {
	dir := writeLog(t, volumeScenario(time.Unix(1000, 0)))
	res, err := Replay(dir, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) != 0 {
		t.Fatalf("violations on a clean volume log: %v", res.Violations)
	}
	uses := VolumeUsesOf(res.Final)
	if len(uses) != 1 || uses[0].Task != "f1/t2" || uses[0].VolumeAgent != "a1" {
		t.Fatalf("final volume uses: %+v", uses)
	}
	// The same state with the stale task planted back alive, as an FSM that
	// revived a returning agent's LOST task would leave it.
	planted := append(uses, VolumeUse{Volume: "v1", Task: "f1/t1", TaskAgent: "a1", VolumeAgent: "a1", State: "RUNNING"})
	if v := CheckVolumeExclusive(res.Final.Index(), planted); len(v) != 1 {
		t.Fatalf("revived stale task not caught: %v", v)
	}
}
