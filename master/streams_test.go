package master

import (
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestBrokerRoutesAndReplaces(t *testing.T) {
	b := newBroker()
	a1 := newStream("fa")
	other := newStream("fb")
	b.add(a1)
	b.add(other)
	if !b.promote(a1, a1.token) || !b.promote(other, other.token) {
		t.Fatal("promote with the state's token failed")
	}
	b.publish(5, []fsm.Event{
		{Kind: fsm.EventOffersCreated, FrameworkID: "fa", Offers: []*agorav1.Offer{{Id: "o1"}}},
		{Kind: fsm.EventOfferRemoved, FrameworkID: "fa", OfferID: "o0", Reason: "accepted"},
		{Kind: fsm.EventOfferRemoved, FrameworkID: "fa", OfferID: "o2", Reason: "expired", Rescind: true},
		{Kind: fsm.EventAgentLost, AgentID: "ag"},
	})
	items, end := a1.take()
	if end != nil || len(items) != 3 {
		t.Fatalf("fa got %d items (end %v), want offers, rescind, failure", len(items), end)
	}
	if items[0].ev.GetOffers() == nil || items[1].ev.GetRescind().GetOfferId() != "o2" || items[2].ev.GetFailure().GetAgentId() != "ag" || items[0].index != 5 {
		t.Fatalf("fa items = %v", items)
	}
	if items, _ := other.take(); len(items) != 1 || items[0].ev.GetFailure() == nil {
		t.Fatalf("fb got %v, want only the broadcast failure", items)
	}

	// A second subscription of fa: pending streams receive events too; once
	// it wins, the first is told it was replaced.
	a2 := newStream("fa")
	b.add(a2)
	if !b.promote(a2, a2.token) {
		t.Fatal("promote a2")
	}
	_, end = a1.take()
	if end == nil || end.final.GetError().GetMessage() != "replaced by a new subscription" {
		t.Fatalf("a1 end = %+v", end)
	}
	if b.isCurrent(a1) || !b.isCurrent(a2) {
		t.Fatal("a2 should be current")
	}
	// A promotion that lost the race (state holds another token) ends itself.
	a3 := newStream("fa")
	b.add(a3)
	if b.promote(a3, a2.token) {
		t.Fatal("a3 promoted although the state's token is t2")
	}
	if _, end := a3.take(); end == nil {
		t.Fatal("a3 not ended")
	}

	// Teardown flushes what is queued, then ends with ERROR.
	b.publish(6, []fsm.Event{
		{Kind: fsm.EventTaskStatus, FrameworkID: "fa", Status: &agorav1.TaskStatus{TaskId: "t", Uuid: "u"}},
		{Kind: fsm.EventFrameworkTornDown, FrameworkID: "fa", Reason: "bye"},
	})
	items, end = a2.take()
	if len(items) != 1 || items[0].ev.GetUpdate().GetStatus().GetUuid() != "u" {
		t.Fatalf("a2 items = %v", items)
	}
	if end == nil || !end.flush || end.final.GetError().GetMessage() != "framework torn down: bye" {
		t.Fatalf("a2 end = %+v", end)
	}
}

func TestBrokerOverflowClosesStream(t *testing.T) {
	b := newBroker()
	st := newStream("f")
	b.add(st)
	b.promote(st, st.token)
	ev := []fsm.Event{{Kind: fsm.EventTaskStatus, FrameworkID: "f", Status: &agorav1.TaskStatus{TaskId: "x"}}}
	for i := range maxStreamQueue + 1 {
		b.publish(uint64(i+1), ev)
	}
	items, end := st.take()
	if end == nil || connect.CodeOf(end.err) != connect.CodeUnavailable {
		t.Fatalf("end = %+v, want Unavailable", end)
	}
	if len(items) != 0 {
		t.Fatalf("%d items kept after overflow", len(items))
	}
	// Closed streams drop further events without growing.
	b.publish(1<<40, ev)
	if items, _ := st.take(); len(items) != 0 {
		t.Fatal("closed stream queued an event")
	}
}

func TestRefuseDuration(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	if d, err := refuseDuration(nil); err != nil || d != DefaultRefuse {
		t.Fatalf("nil: %v %v", d, err)
	}
	if d, err := refuseDuration(f(2.5)); err != nil || d.Seconds() != 2.5 {
		t.Fatalf("2.5: %v %v", d, err)
	}
	for _, bad := range []float64{-1, MaxRefuse.Seconds() + 1, nanValue()} {
		if _, err := refuseDuration(f(bad)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("%g: err %v, want InvalidArgument", bad, err)
		}
	}
}

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}

// TestReconcileBatchDoesNotOverflow: a reconciliation's answers, more than
// a stream may queue events, are one light item (its events in order), not
// an overflow; single events still overflow as before.
func TestReconcileBatchDoesNotOverflow(t *testing.T) {
	b := newBroker()
	st := newStream("f")
	b.add(st)
	b.promote(st, st.token)
	batch := make([]*agorav1.SubscribeResponse, 3*maxStreamQueue)
	for i := range batch {
		batch[i] = updateEvent(&agorav1.TaskStatus{TaskId: fmt.Sprintf("t%d", i)})
	}
	b.sendCurrent("f", st.token, queued{index: deliverAlways, batch: batch})
	ev := []fsm.Event{{Kind: fsm.EventTaskStatus, FrameworkID: "f", Status: &agorav1.TaskStatus{TaskId: "live"}}}
	b.publish(7, ev)
	items, end := st.take()
	if end != nil {
		t.Fatalf("stream ended: %+v", end.err)
	}
	if len(items) != 2 || len(items[0].events()) != len(batch) || items[1].events()[0].GetUpdate().GetStatus().GetTaskId() != "live" {
		t.Fatalf("queued %d items, want the batch then the live event", len(items))
	}
	for i, e := range items[0].events() {
		if e != batch[i] {
			t.Fatalf("batch event %d out of order", i)
		}
	}
	// The batch's weight counts until taken: it and enough single events
	// overflow.
	b.sendCurrent("f", st.token, queued{index: deliverAlways, batch: batch})
	room := maxStreamQueue - (queued{batch: batch}).weight()
	for i := range room + 1 {
		b.publish(uint64(100+i), ev)
	}
	if _, end := st.take(); end == nil || connect.CodeOf(end.err) != connect.CodeUnavailable {
		t.Fatalf("end = %+v, want Unavailable", end)
	}
}
