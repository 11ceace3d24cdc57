package master

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// lockedClock is a clock tests move by hand, safe for concurrent readers.
type lockedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *lockedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *lockedClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestResendSkipsQueuedAcks: an unacknowledged update is resent once per
// interval (not at every tick after the first interval), backing off, not
// while an acknowledgement of it waits for its commit, and not while the
// framework acknowledges other updates.
func TestResendSkipsQueuedAcks(t *testing.T) {
	clock := &lockedClock{t: time.Now()}
	h := NewHarness(t, nil, func(c *Config) { c.Now = clock.Now })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := h.Apply(ctx, fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{
		Agent: &agorav1.Agent{Id: "a1", Hostname: "h1", Resources: resourcepb.ToProto("", resources.MustParse("cpus:4;mem:4096"))},
		Now:   timestamppb.New(clock.Now()),
	}); err != nil {
		t.Fatalf("register: %v", err)
	}
	if _, err := h.Apply(ctx, fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{
		Framework: &agorav1.Framework{Id: "fw1", Info: &agorav1.FrameworkInfo{Name: "fw1", Roles: []string{"*"}, FailoverTimeoutSeconds: 3600},
			StreamToken: NewID()},
		Now: timestamppb.New(clock.Now()),
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	var offer *agorav1.Offer
	for offer == nil {
		if offers := h.State().OffersByFramework("fw1"); len(offers) > 0 {
			offer = offers[0]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no offer to fw1")
		case <-h.State().Changed():
		}
	}
	if _, err := h.Apply(ctx, fsm.CmdAccept, &agorav1.AcceptCommand{
		FrameworkId: "fw1", OfferIds: []string{offer.GetId()},
		Operations: []*agorav1.Operation{{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{{
			TaskId: "t1", AgentId: "a1", Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:64")),
			Command: &agorav1.CommandInfo{Value: "sleep 1"}}}}},
		Now: timestamppb.New(clock.Now()), Ids: []string{NewID(), NewID(), NewID()},
	}); err != nil {
		t.Fatalf("accept: %v", err)
	}
	if _, err := h.Apply(ctx, fsm.CmdStatusUpdate, &agorav1.StatusUpdateCommand{
		AgentId: "a1", Now: timestamppb.New(clock.Now()),
		Statuses: []*agorav1.TaskStatus{{TaskId: "t1", FrameworkId: "fw1", AgentId: "a1", Uuid: "u1",
			State: agorav1.TaskState_TASK_STATE_RUNNING, Source: agorav1.StatusSource_STATUS_SOURCE_AGENT}},
	}); err != nil {
		t.Fatalf("status: %v", err)
	}
	if got := h.State().UnacknowledgedStatuses("fw1"); len(got) != 1 || got[0].GetUuid() != "u1" {
		t.Fatalf("unacknowledged statuses %v, want u1", got)
	}

	s := h.sched
	tracker := newResendTracker()
	var sent []string
	send := func(ev *agorav1.SubscribeResponse) error {
		sent = append(sent, ev.GetUpdate().GetStatus().GetUuid())
		tracker.note(ev.GetUpdate().GetStatus(), clock.Now())
		return nil
	}
	step := func(what string, want ...string) {
		t.Helper()
		sent = nil
		if err := s.resendUnacked("fw1", tracker, send); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sent, want) {
			t.Fatalf("%s: resent %v, want %v", what, sent, want)
		}
	}
	step("first sight (its live event is on the way)")
	clock.Advance(s.resendEvery())
	release := s.queuedAcks.hold("fw1", &agorav1.AcknowledgeRequest{
		Acknowledgements: []*agorav1.Acknowledgement{{TaskId: "t1", Uuid: "u1"}}})
	step("due, but its acknowledgement is queued")
	release()
	step("acknowledgement call failed: a full interval is waited again")
	clock.Advance(s.resendEvery())
	step("due", "u1")
	step("just resent")
	clock.Advance(s.resendEvery() / 2)
	step("half an interval later")
	clock.Advance(s.resendEvery() / 2)
	step("an interval after the resend: it backs off")
	clock.Advance(s.resendEvery())
	step("two intervals after the resend", "u1")
	clock.Advance(3 * s.resendEvery())
	step("three intervals after the second resend")
	clock.Advance(s.resendEvery())
	step("four intervals after the second resend", "u1")
	for range 3 {
		clock.Advance(8 * s.resendEvery())
		step("at most eight intervals apart", "u1")
	}
	clock.Advance(8 * s.resendEvery())
	s.queuedAcks.acked("fw1", clock.Now()) // it acknowledges other updates
	step("due, but the framework acknowledges others: behind, not lost")
	clock.Advance(s.resendEvery() / 2)
	step("acknowledged half an interval ago")
	clock.Advance(s.resendEvery() / 2)
	step("no acknowledgement for an interval", "u1")
	if s.queuedAcks.queued("fw1", "u1") || len(s.queuedAcks.n) != 0 {
		t.Fatalf("queued acknowledgements left: %v", s.queuedAcks.n)
	}
}
