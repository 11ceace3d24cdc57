package master

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// TestAcceptIDsCoverWhatTheFSMTakes applies accepts given exactly
// acceptIDs fresh ids and checks that every reservation and group id the
// FSM stored is one of them (none derived from the entry's index), and
// that a plain launch is given none.
func TestAcceptIDsCoverWhatTheFSMTakes(t *testing.T) {
	f := fsm.New(fsm.Config{})
	index := uint64(0)
	apply := func(ct fsm.CommandType, m proto.Message) fsm.Result {
		t.Helper()
		index++
		res, err := f.ApplyMessage(index, ct, m)
		if err != nil || res.Err != nil {
			t.Fatalf("%v: %v %v", ct, err, res.Err)
		}
		return res
	}
	now := &timestamppb.Timestamp{Seconds: 10}
	res := func(role, spec string) []*agorav1.Resource {
		return resourcepb.ToProto(role, resources.MustParse(spec))
	}
	apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "web", Weight: 1}})
	apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "db", Weight: 1}})
	apply(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Agent: &agorav1.Agent{Id: "a1", Hostname: "h", Address: "x:1",
		Resources: res("", "cpus:8;mem:8192")}, Now: now})
	apply(fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Framework: &agorav1.Framework{Id: "f1",
		Info: &agorav1.FrameworkInfo{Name: "n", Roles: []string{"web", "db", "*"}}, StreamToken: "s"}, Now: now})
	launch := func(typ agorav1.OperationType, ids ...string) *agorav1.Operation {
		op := &agorav1.Operation{Type: typ}
		for _, id := range ids {
			op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: id, Resources: res("", "cpus:0.1"), Command: &agorav1.CommandInfo{Value: "x"}})
		}
		return op
	}
	for k, ops := range [][]*agorav1.Operation{
		{launch(agorav1.OperationType_OPERATION_TYPE_LAUNCH, "t1", "t2", "t3")},
		{{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: append(res("web", "cpus:1"), res("db", "mem:100")...)},
			launch(agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP, "g1", "g2"),
			launch(agorav1.OperationType_OPERATION_TYPE_LAUNCH, "t4"),
			launch(agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP, "g3")},
	} {
		oid := fmt.Sprintf("o%d", k)
		apply(fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: now, Offers: []*agorav1.Offer{{Id: oid, FrameworkId: "f1",
			AgentId: "a1", Role: "*", Resources: res("", "cpus:2;mem:200")}}})
		given := map[string]bool{}
		var ids []string
		for i := range acceptIDs(ops) {
			ids = append(ids, fmt.Sprintf("fresh-%d-%d", k, i))
			given[ids[i]] = true
		}
		if k == 0 && len(ids) != 0 {
			t.Errorf("a plain launch is given %d ids, want none", len(ids))
		}
		apply(fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f1", OfferIds: []string{oid}, Operations: ops, Now: now, Ids: ids})
	}
	st := f.State()
	if len(st.Reservations()) != 2 {
		t.Fatalf("%d reservations, want 2", len(st.Reservations()))
	}
	for _, rv := range st.Reservations() {
		if !isFresh(rv.GetId()) {
			t.Errorf("reservation id %q is not one of the given ids", rv.GetId())
		}
	}
	for _, task := range st.Tasks() {
		if g := task.GetGroupId(); g != "" && !isFresh(g) {
			t.Errorf("task %s: group id %q is not one of the given ids", task.GetId(), g)
		}
	}
}

func isFresh(id string) bool { return len(id) > 6 && id[:6] == "fresh-" }
