package master

import (
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// maxUpdatesPerEvent bounds the statuses of one UPDATES event (a few
// hundred bytes each: well under any message limit).
const maxUpdatesPerEvent = 512

// eventSender sends one stream's events. For a subscriber that asked for
// batched updates (SubscribeRequest.batched_updates) it holds consecutive
// status updates back and sends them as one UPDATES event: before any
// other event, when maxUpdatesPerEvent are held, and on flush, which the
// stream calls before it waits for more. Order is kept: nothing overtakes
// a held update. One event per update costs the leader a message, an
// HTTP/2 frame and a write system call each; at 1M tasks that was most of
// the stream's cost (issue 13).
type eventSender struct {
	out     *connect.ServerStream[agorav1.SubscribeResponse]
	batched bool
	now     func() time.Time
	// sent tracks the statuses sent, for resends (resendUnacked).
	sent *resendTracker
	held []*agorav1.TaskStatus
}

func newEventSender(out *connect.ServerStream[agorav1.SubscribeResponse], batched bool, now func() time.Time) *eventSender {
	return &eventSender{out: out, batched: batched, now: now, sent: newResendTracker()}
}

// send sends ev, or holds it when it is an update that may be batched.
func (e *eventSender) send(ev *agorav1.SubscribeResponse) error {
	if st := ev.GetUpdate().GetStatus(); st != nil && e.batched {
		e.held = append(e.held, st)
		if len(e.held) >= maxUpdatesPerEvent {
			return e.flush()
		}
		return nil
	}
	if err := e.flush(); err != nil {
		return err
	}
	if st := ev.GetUpdate().GetStatus(); st.GetUuid() != "" {
		e.sent.note(st, e.now())
	}
	return e.out.Send(ev)
}

// flush sends the held updates: one UPDATE event for one, an UPDATES
// event for more.
func (e *eventSender) flush() error {
	if len(e.held) == 0 {
		return nil
	}
	held := e.held
	e.held = nil
	now := e.now()
	for _, st := range held {
		if st.GetUuid() != "" {
			e.sent.note(st, now)
		}
	}
	if len(held) == 1 {
		return e.out.Send(updateEvent(held[0]))
	}
	return e.out.Send(&agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Updates{
		Updates: &agorav1.Updates{Statuses: held}}})
}

// fullScanEvery: resendUnacked scans every unacknowledged status once per
// this many resend intervals.
const fullScanEvery = 4

// resendTracker is what a stream sent that may need sending again: when
// each status (by uuid) last went out, and the same in the order sent.
type resendTracker struct {
	at       map[string]time.Time
	order    []sentStatus // by time sent; entries superseded in at are stale
	head     int          // order[:head] are consumed
	lastScan time.Time    // of the last full scan (resendUnacked)
}

type sentStatus struct {
	taskID, uuid string
	at           time.Time
}

func newResendTracker() *resendTracker {
	return &resendTracker{at: map[string]time.Time{}}
}

// note records that st went out (or is to be treated so) at now.
func (r *resendTracker) note(st *agorav1.TaskStatus, now time.Time) {
	r.at[st.GetUuid()] = now
	r.order = append(r.order, sentStatus{taskID: st.GetTaskId(), uuid: st.GetUuid(), at: now})
}

// forget drops a status that needs no resend (acknowledged or superseded).
func (r *resendTracker) forget(uuid string) { delete(r.at, uuid) }

// nextDue pops the oldest status last sent at least every before now, if
// any; superseded entries (sent again since) are skipped.
func (r *resendTracker) nextDue(now time.Time, every time.Duration) (sentStatus, bool) {
	for r.head < len(r.order) {
		e := r.order[r.head]
		if now.Sub(e.at) < every {
			return sentStatus{}, false
		}
		r.order[r.head] = sentStatus{}
		r.head++
		if r.head > 1024 && r.head*2 > len(r.order) {
			r.order = append(r.order[:0], r.order[r.head:]...)
			r.head = 0
		}
		if at, ok := r.at[e.uuid]; ok && at.Equal(e.at) {
			return e, true
		}
	}
	return sentStatus{}, false
}
