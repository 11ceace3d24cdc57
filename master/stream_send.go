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

// resendLevels: a status resent waits twice as long before the next
// resend, up to 2^(resendLevels-1) resend intervals (40 s at the default
// 5 s), as Mesos backs off its status update retries: under a load that
// keeps acknowledgements waiting seconds for their commit, fixed-interval
// resends were a tenth of the leader's CPU at 1M tasks (issue 13).
const resendLevels = 4

// resendTracker is what a stream sent that may need sending again: when
// each status (by uuid) last went out and how often it was resent, and the
// same in the order sent, one queue per backoff level (each queue is then
// in due order).
type resendTracker struct {
	at       map[string]sentMark
	levels   [resendLevels]sentQueue
	lastScan time.Time // of the last full scan (resendUnacked)
}

type sentMark struct {
	at    time.Time
	level int
}

type sentStatus struct {
	taskID, uuid string
	at           time.Time
	level        int
}

// sentQueue is a FIFO of sentStatus.
type sentQueue struct {
	items []sentStatus
	head  int // items[:head] are consumed
}

func (q *sentQueue) peek() (sentStatus, bool) {
	if q.head == len(q.items) {
		return sentStatus{}, false
	}
	return q.items[q.head], true
}

func (q *sentQueue) pop() {
	q.items[q.head] = sentStatus{}
	q.head++
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}

func newResendTracker() *resendTracker {
	return &resendTracker{at: map[string]sentMark{}}
}

// note records that st went out (or is to be treated so) at now, at the
// backoff level it has (0 for a status new to the tracker).
func (r *resendTracker) note(st *agorav1.TaskStatus, now time.Time) {
	u := st.GetUuid()
	lv := r.at[u].level
	r.at[u] = sentMark{at: now, level: lv}
	r.levels[lv].items = append(r.levels[lv].items, sentStatus{taskID: st.GetTaskId(), uuid: u, at: now, level: lv})
}

// backOff raises the backoff level of a status about to be resent (its
// next note files it there).
func (r *resendTracker) backOff(uuid string) {
	if m, ok := r.at[uuid]; ok && m.level < resendLevels-1 {
		m.level++
		r.at[uuid] = m
	}
}

// forget drops a status that needs no resend (acknowledged or superseded).
func (r *resendTracker) forget(uuid string) { delete(r.at, uuid) }

// nextDue pops a status last sent at least its level's wait (every <<
// level) before now, if any; entries superseded (sent again since) are
// skipped.
func (r *resendTracker) nextDue(now time.Time, every time.Duration) (sentStatus, bool) {
	for lv := range r.levels {
		q := &r.levels[lv]
		for {
			e, ok := q.peek()
			if !ok || now.Sub(e.at) < every<<lv {
				break
			}
			q.pop()
			if m, ok := r.at[e.uuid]; ok && m.at.Equal(e.at) && m.level == e.level {
				return e, true
			}
		}
	}
	return sentStatus{}, false
}
