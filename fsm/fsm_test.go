package fsm

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

type memSink struct {
	bytes.Buffer
	cancelled, closed bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

// TestRaftInterface drives the FSM through the raft.FSM methods: Apply with
// raft logs, Snapshot/Persist into a sink, Restore into a fresh FSM.
func TestRaftInterface(t *testing.T) {
	var events []Event
	var applied []uint64
	f := New(Config{OnApply: func(i uint64, evs []Event) { applied = append(applied, i); events = append(events, evs...) }})
	changed := f.Changed()
	log := seedLog(t)
	for i, b := range log {
		res, ok := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b}).(Result)
		if !ok || res.Err != nil || res.Index != uint64(i+1) {
			t.Fatalf("entry %d: %+v", i+1, res)
		}
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed channel not closed after Apply")
	}
	before := f.State()
	if res := f.Apply(&raft.Log{Index: 100, Type: raft.LogNoop}).(Result); res.Err != nil || f.State().Index() != 100 {
		t.Fatalf("noop entry: %+v index %d", res, f.State().Index())
	}
	if len(applied) != len(log) {
		t.Fatalf("OnApply called %d times, want %d", len(applied), len(log))
	}
	var kinds []EventKind
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	if len(events) != 5 { // two offers-created, one accept removal, one status, one offers-created
		t.Fatalf("events %v", kinds)
	}
	// An old snapshot does not see later writes.
	b, _ := Encode(CmdTeardownFramework, &agorav1.TeardownFrameworkCommand{FrameworkId: "f1"})
	if res := f.Apply(&raft.Log{Index: 101, Type: raft.LogCommand, Data: b}).(Result); res.Err != nil {
		t.Fatal(res.Err)
	}
	if fw, _ := before.Framework("f1"); fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
		t.Fatalf("old state changed: %v", fw.GetState())
	}
	if len(before.OffersByFramework("f1")) != 1 || len(f.State().OffersByFramework("f1")) != 0 {
		t.Fatal("offers of the old/new state wrong")
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v closed=%v", err, sink.closed)
	}
	snap.Release()
	g := New(Config{})
	gChanged := g.Changed()
	if err := g.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gChanged:
	default:
		t.Fatal("Changed channel not closed after Restore")
	}
	if g.State().Index() != 101 || !bytes.Equal(snapshotBytes(t, g.State()), sink.Bytes()) {
		t.Fatalf("restored index %d or bytes differ", g.State().Index())
	}
	if dump(g.State()) != dump(f.State()) {
		t.Fatal("restored dump differs")
	}
	if got := len(g.State().TasksByAgent("a1")); got != 2 {
		t.Fatalf("TasksByAgent after restore = %d", got)
	}
	if err := g.Restore(nopCloser{bytes.NewReader([]byte("garbage"))}); err == nil {
		t.Fatal("garbage restored")
	}
	if g.State().Index() != 101 {
		t.Fatal("failed restore replaced the state")
	}
}

func TestReadAccessors(t *testing.T) {
	h := newHarness(t)
	for i, b := range seedLog(t) {
		h.f.ApplyCommand(uint64(i+1), b)
	}
	s := h.f.State()
	if r, ok := s.Role("web"); !ok || r.GetWeight() != 2 {
		t.Fatalf("Role: %v %v", r, ok)
	}
	if a, ok := s.Agent("a1"); !ok || a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		t.Fatalf("Agent: %v", a)
	}
	if _, ok := s.Task("f1", "t1"); !ok {
		t.Fatal("Task f1/t1 missing")
	}
	if got := len(s.TasksByFramework("f1")); got != 2 {
		t.Fatalf("TasksByFramework = %d", got)
	}
	if got := len(s.VolumesByAgent("a1")); got != 1 {
		t.Fatalf("VolumesByAgent = %d", got)
	}
	if got := len(s.ReservationsByAgent("a1")); got != 1 {
		t.Fatalf("ReservationsByAgent = %d", got)
	}
	if got := len(s.OffersByAgent("a1")); got != 1 {
		t.Fatalf("OffersByAgent = %d", got)
	}
	if o, ok := s.Offer("o3"); !ok || o.GetHostname() != "h" {
		t.Fatalf("Offer o3: %v", o)
	}
	u := s.AgentUsage("a1")
	if u.Free[""].Milli("cpus") != 2000 || u.Used[""].Milli("cpus") != 1500 || u.Offered[""].Milli("cpus") != 500 {
		t.Fatalf("usage: %+v", u)
	}
	if u.Reserved["web"].Milli("disk") != 500000 || u.Used["web"].Milli("disk") != 100000 {
		t.Fatalf("reserved/used web: %+v", u)
	}
	alloc := s.FrameworkAllocated("f1")
	if alloc["web"].Milli("cpus") != 2000 {
		t.Fatalf("FrameworkAllocated: %v", alloc)
	}
	if got := s.UnacknowledgedStatuses("f1"); len(got) != 1 || got[0].GetUuid() != "u1" {
		t.Fatalf("UnacknowledgedStatuses: %v", got)
	}
	if len(s.Masters()) != 0 || len(s.Roles()) != 1 || len(s.Agents()) != 2 || len(s.Frameworks()) != 2 || len(s.Offers()) != 2 || len(s.Tasks()) != 2 || len(s.Reservations()) != 1 || len(s.Volumes()) != 1 {
		t.Fatal("list sizes wrong")
	}
	if u := s.AgentUsage("nope"); !u.Total.IsEmpty() || u.Free != nil {
		t.Fatal("usage of unknown agent not zero")
	}
}

func TestRecordSizeLimit(t *testing.T) {
	h := newHarness(t)
	sub := &agorav1.SubscribeFrameworkCommand{Framework: &agorav1.Framework{Id: "f1", Info: &agorav1.FrameworkInfo{Name: "svc"}, StreamToken: "tok"}}
	if res := h.apply(CmdSubscribeFramework, sub); res.Err != nil {
		t.Fatal(res.Err)
	}
	put := func(n int) *Rejection {
		return h.apply(CmdPutRecord, &agorav1.PutRecordCommand{FrameworkId: "f1", StreamToken: "tok", Key: "k", Value: make([]byte, n)}).Err
	}
	if rej := put(MaxRecordBytes + 1); rej == nil || rej.Code != CodeResourceExhausted {
		t.Fatalf("put of MaxRecordBytes+1 = %v, want resource_exhausted", rej)
	}
	if rej := put(MaxRecordBytes); rej != nil {
		t.Fatalf("put of MaxRecordBytes = %v", rej)
	}
}
