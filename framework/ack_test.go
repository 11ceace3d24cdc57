package framework

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/framework/frameworktest"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestAcksInFlightAcrossResubscribe: several acknowledgement calls are in
// flight at once (at most ackSenders); an update delivered again while its
// acknowledgement is in flight is not acknowledged twice; and when the
// stream ends with calls in flight, the new session acknowledges every one
// of them (and those still queued) without the masters resending anything.
func TestAcksInFlightAcrossResubscribe(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=false")
	release := m.BlockCalls("Acknowledge")
	defer release()
	update := func(i int) {
		t.Helper()
		st := &agorav1.TaskStatus{TaskId: fmt.Sprintf("t%d", i), AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: fmt.Sprintf("u%d", i)}
		if err := m.Send(frameworktest.UpdateEvent(st)); err != nil {
			t.Fatal(err)
		}
		rec.waitLine(t, fmt.Sprintf("update t%d RUNNING", i))
	}
	// One call per update while the earlier ones hang: ackSenders in flight.
	for i := 1; i <= ackSenders; i++ {
		update(i)
		if _, err := m.WaitCalls(ctx, "Acknowledge", i); err != nil {
			t.Fatal(err)
		}
	}
	// u1 again (a resend) while its acknowledgement is in flight, and one
	// more that must wait for a free sender.
	update(1)
	last := ackSenders + 1
	update(last)
	m.EndStream(connect.NewError(connect.CodeUnavailable, errors.New("shutting down")))
	if err := m.WaitSubscriptions(ctx, 2); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=true")
	release()
	want := make([]string, 0, last)
	for i := 1; i <= last; i++ {
		want = append(want, fmt.Sprintf("u%d", i))
	}
	acked := func() (first, second []string) {
		for _, c := range m.Calls("Acknowledge") {
			for _, a := range c.Request.(*agorav1.AcknowledgeRequest).GetAcknowledgements() {
				if c.Framework.GetStreamToken() == "fake-token-1" {
					first = append(first, a.GetUuid())
				} else {
					second = append(second, a.GetUuid())
				}
			}
		}
		slices.Sort(first)
		slices.Sort(second)
		return first, second
	}
	if err := frameworktestPoll(ctx, func() error {
		_, second := acked()
		if !slices.Equal(second, want) {
			return fmt.Errorf("acknowledged on the new session %v, want %v", second, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	first, _ := acked()
	if wantFirst := want[:ackSenders]; !slices.Equal(first, wantFirst) {
		t.Fatalf("acknowledged on the first session %v, want %v (one call per sender, u1 once)", first, wantFirst)
	}
}

func TestAckQueueInFlight(t *testing.T) {
	q := newAckQueue()
	st := func(u string) *agorav1.TaskStatus { return &agorav1.TaskStatus{TaskId: "t-" + u, Uuid: u} }
	q.add(st("a"))
	q.add(st("b"))
	q.add(st("a")) // queued already
	batch := q.take(10)
	if len(batch) != 2 {
		t.Fatalf("took %v, want a and b", batch)
	}
	q.add(st("a")) // in flight
	if got := q.take(10); len(got) != 0 {
		t.Fatalf("took %v while a and b are in flight", got)
	}
	q.done(batch[:1], false) // a acknowledged
	q.done(batch[1:], true)  // b's call ended with the session
	q.add(st("c"))
	got := q.take(10)
	var us []string
	for _, a := range got {
		us = append(us, a.GetUuid())
	}
	if !slices.Equal(us, []string{"b", "c"}) {
		t.Fatalf("took %v, want [b c] (b requeued in front)", us)
	}
	q.done(got, false)
	q.add(st("a")) // a later resend of an acknowledged update is acknowledged again
	if got := q.take(10); len(got) != 1 || got[0].GetUuid() != "a" {
		t.Fatalf("took %v, want a", got)
	}
}

// frameworktestPoll polls cond every 2 ms until it returns nil or ctx ends.
func frameworktestPoll(ctx context.Context, cond func() error) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", err, ctx.Err())
		case <-tick.C:
		}
	}
}

// TestBatchedUpdates: the SDK asks for batched updates (and no gzip), delivers each
// status of an UPDATES event to Scheduler.Update in order, and
// acknowledges every one.
func TestBatchedUpdates(t *testing.T) {
	ctx := testCtx(t)
	m, rec := startSubscribed(t)
	if b := m.BatchedUpdates(); len(b) != 1 || !b[0] {
		t.Fatalf("subscriptions asked for batched updates: %v, want [true]", b)
	}
	if e := m.StreamEncodings(); len(e) != 1 || e[0] != "" {
		t.Fatalf("the stream accepts compression %q, want none (Config.Gzip is off)", e)
	}
	var sts []*agorav1.TaskStatus
	var wantLines, wantAcks []string
	for _, i := range []int{3, 1, 2} {
		sts = append(sts, &agorav1.TaskStatus{TaskId: fmt.Sprintf("t%d", i), AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: fmt.Sprintf("u%d", i)})
		wantLines = append(wantLines, fmt.Sprintf("update t%d RUNNING", i))
		wantAcks = append(wantAcks, fmt.Sprintf("u%d", i))
	}
	if err := m.Send(frameworktest.UpdatesEvent(sts...)); err != nil {
		t.Fatal(err)
	}
	slices.Sort(wantAcks)
	if err := frameworktestPoll(ctx, func() error {
		var got []string
		for _, l := range rec.snapshot() {
			if strings.HasPrefix(l, "update ") {
				got = append(got, l)
			}
		}
		if !slices.Equal(got, wantLines) {
			return fmt.Errorf("updates delivered %q, want %q", got, wantLines)
		}
		var acked []string
		for _, c := range m.Calls("Acknowledge") {
			for _, a := range c.Request.(*agorav1.AcknowledgeRequest).GetAcknowledgements() {
				acked = append(acked, a.GetUuid())
			}
		}
		slices.Sort(acked)
		if !slices.Equal(acked, wantAcks) {
			return fmt.Errorf("acknowledged %v, want %v", acked, wantAcks)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestGzipOptIn: with Config.Gzip the stream accepts gzip.
func TestGzipOptIn(t *testing.T) {
	ctx := testCtx(t)
	m := frameworktest.NewMaster()
	defer m.Close()
	_, _ = startRun(t, Config{Masters: []string{m.URL()}, Gzip: true}, &recorder{})
	if err := m.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if e := m.StreamEncodings(); len(e) != 1 || !strings.Contains(e[0], "gzip") {
		t.Fatalf("the stream accepts compression %q, want gzip", e)
	}
}

// TestFailedAcksRetried: acknowledgements of a call that failed in a way
// that may pass are sent again by the SDK, without waiting for the masters
// to resend the updates; a refusal that cannot pass is not retried.
func TestFailedAcksRetried(t *testing.T) {
	ctx := testCtx(t)
	m, _ := startSubscribed(t)
	acked := func(uuid string) int {
		n := 0
		for _, c := range m.Calls("Acknowledge") {
			for _, a := range c.Request.(*agorav1.AcknowledgeRequest).GetAcknowledgements() {
				if a.GetUuid() == uuid {
					n++
				}
			}
		}
		return n
	}
	m.FailCalls("Acknowledge", 1, connect.NewError(connect.CodeResourceExhausted, errors.New("rate limit exceeded")))
	if err := m.Send(frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: "t1", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u1"})); err != nil {
		t.Fatal(err)
	}
	if err := frameworktestPoll(ctx, func() error {
		if n := acked("u1"); n != 2 {
			return fmt.Errorf("u1 acknowledged in %d calls, want 2 (one refused, one retried)", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	m.FailCalls("Acknowledge", 1, connect.NewError(connect.CodeInvalidArgument, errors.New("bad acknowledgement")))
	if err := m.Send(frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: "t2", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u2"})); err != nil {
		t.Fatal(err)
	}
	// A later update's acknowledgement goes out after u2's refusal; u2 is
	// then not sent again.
	if _, err := m.WaitCalls(ctx, "Acknowledge", 3); err != nil {
		t.Fatal(err)
	}
	if err := m.Send(frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: "t3", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: "u3"})); err != nil {
		t.Fatal(err)
	}
	if err := frameworktestPoll(ctx, func() error {
		if n := acked("u3"); n != 1 {
			return fmt.Errorf("u3 acknowledged in %d calls, want 1", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := acked("u2"); n != 1 {
		t.Fatalf("u2 acknowledged in %d calls after an InvalidArgument refusal, want 1", n)
	}
}

// startSubscribed runs the SDK against a fake master until it has
// subscribed (as fw-1); the fake closes with the test.
func startSubscribed(t *testing.T) (*frameworktest.Master, *recorder) {
	t.Helper()
	m := frameworktest.NewMaster()
	t.Cleanup(m.Close)
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{m.URL()}}, rec)
	if err := m.WaitSubscriptions(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=false")
	return m, rec
}
