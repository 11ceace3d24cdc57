package master

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/allocator"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// fsmDriver applies commands to a bare FSM at increasing indexes.
type fsmDriver struct {
	t     *testing.T
	f     *fsm.FSM
	index uint64
}

func (d *fsmDriver) apply(ct fsm.CommandType, m proto.Message) fsm.Result {
	d.t.Helper()
	d.index++
	res, err := d.f.ApplyMessage(d.index, ct, m)
	if err != nil {
		d.t.Fatalf("apply %v: %v", ct, err)
	}
	if res.Err != nil {
		d.t.Fatalf("apply %v rejected: %v", ct, res.Err)
	}
	return res
}

func unreserved(spec string) []*agorav1.Resource {
	return resourcepb.ToProto("", resources.MustParse(spec))
}

func TestBuildSnapshotAndOffersRoundTrip(t *testing.T) {
	d := &fsmDriver{t: t, f: fsm.New(fsm.Config{})}
	now := time.Unix(1_700_000_000, 0)
	d.apply(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{
		Agent: &agorav1.Agent{Id: "a1", Hostname: "h1", Resources: unreserved("cpus:4;mem:1024"),
			Attributes: map[string]string{"rack": "r1"}},
		Now: timestamppb.New(now),
	})
	d.apply(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{
		Agent: &agorav1.Agent{Id: "a2", Hostname: "h2", Resources: unreserved("cpus:2;mem:512")},
		Now:   timestamppb.New(now),
	})
	d.apply(fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework: &agorav1.Framework{Id: "f1", StreamToken: "tok",
			Info: &agorav1.FrameworkInfo{Name: "one", Roles: []string{"web"}, FailoverTimeoutSeconds: 60}},
		Now: timestamppb.New(now),
	})
	d.apply(fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework: &agorav1.Framework{Id: "f2", StreamToken: "tok2",
			Info: &agorav1.FrameworkInfo{Name: "two", Roles: []string{"web"}, FailoverTimeoutSeconds: 60}},
		Now: timestamppb.New(now),
	})
	d.apply(fsm.CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{
		FrameworkId: "f2", StreamToken: "tok2", Now: timestamppb.New(now),
	})

	snap, next := buildSnapshot(d.f.State(), now)
	if !next.IsZero() {
		t.Fatalf("next filter expiry = %v, want none", next)
	}
	if len(snap.Agents) != 2 || snap.Agents[0].ID != "a1" || !snap.Agents[0].Unreserved.Equal(resources.MustParse("cpus:4;mem:1024")) {
		t.Fatalf("agents = %+v", snap.Agents)
	}
	if len(snap.Frameworks) != 1 || snap.Frameworks[0].ID != "f1" {
		t.Fatalf("frameworks = %+v, want only the connected f1", snap.Frameworks)
	}

	// The allocator's offers, stamped as allocateOnce does, are kept by the FSM.
	offers := allocator.Allocate(snap, now, d.f.State().Index())
	if len(offers) != 2 {
		t.Fatalf("allocator made %d offers, want one per agent", len(offers))
	}
	cmd := &agorav1.OffersCreatedCommand{Now: timestamppb.New(now)}
	for i, o := range offers {
		cmd.Offers = append(cmd.Offers, &agorav1.Offer{
			Id: string(rune('x' + i)), FrameworkId: o.FrameworkID, AgentId: o.AgentID, Role: o.Role,
			Resources: resourcepb.Pools{"": o.Unreserved}.ToProto(),
			CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(time.Minute)),
		})
	}
	res := d.apply(fsm.CmdOffersCreated, cmd)
	if len(res.IDs) != 2 {
		t.Fatalf("FSM kept %d offers, want 2", len(res.IDs))
	}
	snap, _ = buildSnapshot(d.f.State(), now)
	for _, a := range snap.Agents {
		if !a.Unreserved.IsEmpty() {
			t.Fatalf("agent %s still has %s free after everything was offered", a.ID, a.Unreserved)
		}
	}
	if got := snap.Frameworks[0].Allocated["web"]; !got.Equal(resources.MustParse("cpus:6;mem:1536")) {
		t.Fatalf("f1 allocated = %s", got)
	}

	// Decline with a filter: the snapshot carries it and reports its expiry.
	until := now.Add(3 * time.Second)
	d.apply(fsm.CmdDecline, &agorav1.DeclineCommand{FrameworkId: "f1", OfferIds: []string{"x"}, RefuseUntil: timestamppb.New(until)})
	snap, next = buildSnapshot(d.f.State(), now)
	if !next.Equal(until) {
		t.Fatalf("next = %v, want %v", next, until)
	}
	if f := snap.Frameworks[0]; len(f.Filters) != 1 || !f.Filters[0].Until.Equal(until) {
		t.Fatalf("filters = %+v", f.Filters)
	}
	if again := allocator.Allocate(snap, now, 1); len(again) != 0 {
		t.Fatalf("filtered agent offered again: %+v", again)
	}
	// Past the filter, it is ignored (not passed) and the agent is offered.
	snap, next = buildSnapshot(d.f.State(), until)
	if !next.IsZero() || len(snap.Frameworks[0].Filters) != 0 {
		t.Fatalf("expired filter still passed: next %v, filters %+v", next, snap.Frameworks[0].Filters)
	}
	if again := allocator.Allocate(snap, until, 1); len(again) != 1 {
		t.Fatalf("after the filter: %d offers, want 1", len(again))
	}
}

func TestExpiryDue(t *testing.T) {
	d := &fsmDriver{t: t, f: fsm.New(fsm.Config{})}
	now := time.Unix(1_700_000_000, 0)
	d.apply(fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{
		Agent: &agorav1.Agent{Id: "a1", Hostname: "h1", Resources: unreserved("cpus:4;mem:1024")},
		Now:   timestamppb.New(now),
	})
	d.apply(fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework: &agorav1.Framework{Id: "f1", StreamToken: "tok",
			Info: &agorav1.FrameworkInfo{Name: "one", Roles: []string{"web"}, FailoverTimeoutSeconds: 30}},
		Now: timestamppb.New(now),
	})
	if due, next := expiryDue(d.f.State(), now); !due.IsZero() || !next.IsZero() {
		t.Fatalf("empty state: due %v next %v", due, next)
	}
	d.apply(fsm.CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: timestamppb.New(now), Offers: []*agorav1.Offer{{
		Id: "o1", FrameworkId: "f1", AgentId: "a1", Role: "web", Resources: unreserved("cpus:1"),
		CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(10 * time.Second)),
	}}})
	if due, next := expiryDue(d.f.State(), now); !due.IsZero() || !next.Equal(now.Add(10*time.Second)) {
		t.Fatalf("offer: due %v next %v", due, next)
	}
	if due, _ := expiryDue(d.f.State(), now.Add(10*time.Second)); !due.Equal(now.Add(10 * time.Second)) {
		t.Fatalf("offer at its expiry: due %v", due)
	}
	d.apply(fsm.CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{FrameworkId: "f1", StreamToken: "tok", Now: timestamppb.New(now)})
	// The disconnection removed the offer; the failover deadline remains.
	if due, next := expiryDue(d.f.State(), now); !due.IsZero() || !next.Equal(now.Add(30*time.Second)) {
		t.Fatalf("disconnected: due %v next %v", due, next)
	}
	later := now.Add(31 * time.Second)
	if due, _ := expiryDue(d.f.State(), later); due.IsZero() {
		t.Fatal("failover timeout passed but nothing due")
	}
	d.apply(fsm.CmdExpire, &agorav1.ExpireCommand{Now: timestamppb.New(later)})
	if due, next := expiryDue(d.f.State(), later); !due.IsZero() || !next.IsZero() {
		t.Fatalf("after Expire: due %v next %v (the FSM and the loop disagree)", due, next)
	}
}
