package master_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// TestVolumesAPI drives reservations and persistent volumes through the
// scheduler API over the harness: a framework that fails over re-finds its
// reservation (with its labels) and its idle volume from offers alone, and
// every bad volume operation answers with its code and changes nothing.
func TestVolumesAPI(t *testing.T) {
	sc := startSchedHarness(t, nil)
	sc.registerAgent("ag-vol", "cpus:4;mem:2048;disk:4000")
	sc.registerAgent("ag-vol2", "cpus:2;mem:1024;disk:1000")
	url := sc.leader().HTTPURL()
	info := schedInfo("kv", "db")
	info.Principal = "kvp"
	info.FailoverTimeoutSeconds = 3600
	kv := schedSubscribe(t, url, info)
	ctx := context.Background()
	cl := sc.client()
	accept := func(f *fwStream, offer string, ops ...*agorav1.Operation) error {
		_, err := cl.Accept(ctx, connect.NewRequest(&agorav1.AcceptRequest{Call: f.call(), OfferIds: []string{offer}, Operations: ops, RefuseSeconds: schedPtr(0)}))
		return err
	}
	reserve := func(spec string) *agorav1.Operation {
		return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: resourcepb.ToProto("db", resources.MustParse(spec)),
			Labels: map[string]string{"pod": "kv-0"}}
	}
	create := func(id string, mib float64) *agorav1.Operation {
		return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: []*agorav1.VolumeInfo{{Id: id, SizeMib: mib, ContainerPath: "data", Role: "db"}}}
	}
	destroy := func(id string) *agorav1.Operation {
		return &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_DESTROY, Volumes: []*agorav1.VolumeInfo{{Id: id}}}
	}
	podTask := func(id string, vols ...string) *agorav1.TaskInfo {
		ti := schedTask(id, "cpus:0.5")
		ti.Resources = resourcepb.ToProto("db", resources.MustParse("cpus:0.5;mem:128"))
		ti.VolumeIds = vols
		return ti
	}

	// Reserve, create and launch in one accept.
	o := kv.offerOn(t, "ag-vol")
	if err := accept(kv, o.GetId(), reserve("cpus:2;mem:1024;disk:2000"), create("v1", 1000), schedLaunchOp("", podTask("t1", "v1"))); err != nil {
		t.Fatalf("reserve+create+launch: %v", err)
	}
	sc.taskStatus("ag-vol", kv.fid, "t1", agorav1.TaskState_TASK_STATE_FAILED)

	// The scheduler fails over: its new stream's offers carry the
	// reservation (id, principal, labels) and the idle volume.
	kv.cancel()
	info.Id = kv.fid
	kv = schedSubscribe(t, url, info)
	var resv, vol *agorav1.Resource
	kv.next(t, "offers with the reservation and the volume", func(ev *agorav1.SubscribeResponse) bool {
		for _, off := range ev.GetOffers().GetOffers() {
			for _, r := range off.GetResources() {
				switch {
				case r.GetVolume() != nil:
					vol, o = r, off
				case r.GetRole() == "db" && r.GetReservation().GetLabels()["pod"] == "kv-0":
					resv = r
				}
			}
		}
		return resv != nil && vol != nil
	})
	if resv.GetReservation().GetPrincipal() != "kvp" || resv.GetReservation().GetId() == "" {
		t.Fatalf("reserved resource %v: want principal kvp and a reservation id", resv)
	}
	if v := vol.GetVolume(); v.GetId() != "v1" || v.GetContainerPath() != "data" || vol.GetScalar() != 1000 || vol.GetRole() != "db" ||
		vol.GetReservation().GetLabels()["pod"] != "kv-0" {
		t.Fatalf("volume resource %v: want v1 at data, 1000 MiB of db's kv-0 reservation", vol)
	}
	// Relaunch in place by copying the volume resource into the task.
	relaunch := podTask("t2")
	relaunch.Resources = append(relaunch.Resources, vol)
	if err := accept(kv, o.GetId(), schedLaunchOp("", relaunch)); err != nil {
		t.Fatalf("relaunch on the offered volume: %v", err)
	}
	if tk, _ := sc.leader().State().Task(kv.fid, "t2"); len(tk.GetVolumeIds()) != 1 || tk.GetVolumeIds()[0] != "v1" {
		t.Fatalf("relaunched task %v does not use v1", tk)
	}

	// Bad input: each refused with its code, the index unchanged.
	refused := func(name string, code connect.Code, msg string, call func() error) {
		t.Helper()
		before := sc.quiesce()
		err := call()
		schedWantCode(t, name, err, code)
		if !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: message %q does not mention %q", name, err.Error(), msg)
		}
		if idx := sc.leader().State().Index(); idx != before {
			t.Fatalf("%s: the applied index moved from %d to %d", name, before, idx)
		}
	}
	// An outstanding offer of the framework on an agent (it was sent on
	// the stream; the state says which is still open).
	offerOn := func(f *fwStream, agentID string) *agorav1.Offer {
		t.Helper()
		var got *agorav1.Offer
		sc.waitFor("offer on "+agentID, func(st *fsm.State) error {
			for _, off := range st.OffersByFramework(f.fid) {
				if off.GetAgentId() == agentID {
					got = off
					return nil
				}
			}
			return context.DeadlineExceeded
		})
		return got
	}
	o = offerOn(kv, "ag-vol")
	refused("reserve more than the agent has", connect.CodeFailedPrecondition, "reserve needs", func() error {
		return accept(kv, o.GetId(), reserve("disk:100000"))
	})
	refused("reserve for a role not the framework's", connect.CodePermissionDenied, "not a role of this framework", func() error {
		return accept(kv, o.GetId(), &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: resourcepb.ToProto("web", resources.MustParse("cpus:1"))})
	})
	refused("create larger than the reservation", connect.CodeFailedPrecondition, "needs disk:1500 reserved for db", func() error {
		return accept(kv, o.GetId(), create("v2", 1500))
	})
	refused("destroy a volume in use", connect.CodeFailedPrecondition, "volume v1 in use by task t2", func() error {
		return accept(kv, o.GetId(), destroy("v1"))
	})
	refused("launch on a volume in use", connect.CodeFailedPrecondition, "volume v1 in use by task", func() error {
		return accept(kv, o.GetId(), schedLaunchOp("", podTask("t3", "v1")))
	})
	o2 := offerOn(kv, "ag-vol2")
	refused("create on unreserved disk", connect.CodeFailedPrecondition, "needs disk:100 reserved for db but offers have nothing", func() error {
		return accept(kv, o2.GetId(), create("v3", 100))
	})
	refused("launch with a volume on another agent", connect.CodeInvalidArgument, "volume v1 is on agent ag-vol", func() error {
		ti := schedTask("t4", "cpus:0.5")
		ti.VolumeIds = []string{"v1"}
		return accept(kv, o2.GetId(), schedLaunchOp("", ti))
	})
	if _, err := cl.Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{Call: kv.call(), OfferIds: []string{o2.GetId()}, RefuseSeconds: schedPtr(3600)})); err != nil {
		t.Fatalf("decline: %v", err)
	}
	web := schedSubscribe(t, url, schedInfo("web", "web"))
	ow := offerOn(web, "ag-vol2")
	refused("launch with another role's volume", connect.CodePermissionDenied, "volume v1 belongs to role db", func() error {
		ti := schedTask("w1", "cpus:0.5")
		ti.VolumeIds = []string{"v1"}
		return accept(web, ow.GetId(), schedLaunchOp("", ti))
	})

	// Once t2 ends, DESTROY succeeds and the volume's disk returns to the
	// reservation.
	sc.taskStatus("ag-vol", kv.fid, "t2", agorav1.TaskState_TASK_STATE_FINISHED)
	sc.waitFor("destroy", func(st *fsm.State) error {
		for _, off := range st.OffersByFramework(kv.fid) {
			if off.GetAgentId() == "ag-vol" {
				return accept(kv, off.GetId(), destroy("v1"))
			}
		}
		return context.DeadlineExceeded
	})
	if _, ok := sc.leader().State().Volume("v1"); ok {
		t.Fatal("v1 still exists after DESTROY")
	}
	if u := sc.leader().State().AgentUsage("ag-vol"); u.Used["db"].Scalar("disk") != 0 {
		t.Fatalf("db disk still used after destroy: %v", u.Used)
	}
}
