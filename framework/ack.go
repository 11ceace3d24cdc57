package framework

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// maxAcksPerCall is how many acknowledgements one Acknowledge call carries
// at most (the masters refuse more than 10,000).
const maxAcksPerCall = 5000

// ackTimeout bounds one batched Acknowledge call.
const ackTimeout = 10 * time.Second

// ackSenders is how many Acknowledge calls of one session may be in
// flight at once: while one waits for its commit, the next batch is sent.
const ackSenders = 4

// ackQueue holds the automatic acknowledgements not sent yet. Updates are
// delivered to the Scheduler in order without waiting for their
// acknowledgement: the event loop queues it, and up to ackSenders senders
// per session send all that queued up, a batch per call. An update resent
// by the masters while its acknowledgement is queued or in flight is not
// acknowledged twice. Delivery stays at least once: an update whose
// acknowledgement is lost (the call failed) is resent by the masters, a
// batch in flight when the session ends is queued again, and the queue
// survives a resubscription.
type ackQueue struct {
	mu       sync.Mutex
	pending  []*agorav1.Acknowledgement
	queued   map[string]bool // uuids in pending
	inflight map[string]bool // uuids taken by a call not finished yet
	wake     chan struct{}   // capacity 1
}

func newAckQueue() *ackQueue {
	return &ackQueue{queued: map[string]bool{}, inflight: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// add queues the acknowledgement of st (once per uuid).
func (q *ackQueue) add(st *agorav1.TaskStatus) {
	q.mu.Lock()
	if u := st.GetUuid(); !q.queued[u] && !q.inflight[u] {
		q.queued[u] = true
		q.pending = append(q.pending, &agorav1.Acknowledgement{AgentId: st.GetAgentId(), TaskId: st.GetTaskId(), Uuid: u})
	}
	q.mu.Unlock()
	q.kick()
}

func (q *ackQueue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take removes up to n queued acknowledgements, marking them in flight
// until done.
func (q *ackQueue) take(n int) []*agorav1.Acknowledgement {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.pending))
	out := q.pending[:n:n]
	q.pending = q.pending[n:]
	for _, a := range out {
		delete(q.queued, a.GetUuid())
		q.inflight[a.GetUuid()] = true
	}
	if len(q.pending) == 0 {
		q.pending = nil
	} else {
		q.kick() // more for another sender
	}
	return out
}

// done ends the flight of batch; requeue puts it back in front of the
// queue (those not queued again meanwhile).
func (q *ackQueue) done(batch []*agorav1.Acknowledgement, requeue bool) {
	q.mu.Lock()
	var back []*agorav1.Acknowledgement
	for _, a := range batch {
		delete(q.inflight, a.GetUuid())
		if requeue && !q.queued[a.GetUuid()] {
			q.queued[a.GetUuid()] = true
			back = append(back, a)
		}
	}
	if len(back) > 0 {
		q.pending = append(back, q.pending...)
	}
	q.mu.Unlock()
	if len(back) > 0 {
		q.kick()
	}
}

// sendAcks runs ackSenders senders of queued acknowledgements until ctx
// (the session) ends.
func (r *runner) sendAcks(ctx context.Context) {
	var wg sync.WaitGroup
	for range ackSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sendAckBatches(ctx)
		}()
	}
	wg.Wait()
}

// sendAckBatches sends queued acknowledgements in batches until ctx ends.
func (r *runner) sendAckBatches(ctx context.Context) {
	for {
		batch := r.acks.take(maxAcksPerCall)
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.acks.wake:
				continue
			}
		}
		actx, cancel := context.WithTimeout(ctx, ackTimeout)
		failures, err := r.drv.acknowledgeAll(actx, batch)
		cancel()
		if ctx.Err() != nil {
			// The session ended mid-flight: the next one sends them.
			r.acks.done(batch, err != nil)
			return
		}
		retry := err != nil && retryableAck(err)
		r.acks.done(batch, retry)
		if err != nil {
			// Retried at once when the failure may pass (the masters also
			// resend unacknowledged updates, but with backoff: waiting for
			// that drew out the end of a 1M-task run by 20 s).
			r.log.Warn("acknowledgements failed", "count", len(batch), "err", err, "retry", retry)
			if retry && !client.Sleep(ctx, ackRetryPause) {
				return
			}
		}
		for _, f := range failures {
			if f.GetCode() == connect.CodeNotFound.String() {
				// The task is already gone (its terminal update was acknowledged).
				r.log.Debug("acknowledgement not needed", "task_id", f.GetTaskId(), "uuid", f.GetUuid(), "err", f.GetMessage())
				continue
			}
			r.log.Warn("acknowledgement refused", "task_id", f.GetTaskId(), "uuid", f.GetUuid(), "code", f.GetCode(), "err", f.GetMessage())
		}
	}
}

// ackRetryPause is how long a sender waits after a failed call whose
// acknowledgements it queued again, so that an overloaded leader is not
// sent the same batch back to back.
const ackRetryPause = 100 * time.Millisecond

// retryableAck reports whether an Acknowledge call that failed with err may
// succeed if sent again: the leader was busy, changing or out of reach.
// Acknowledging is idempotent, so a call that committed after all is
// harmless to repeat.
func retryableAck(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeResourceExhausted,
		connect.CodeCanceled, connect.CodeUnknown, connect.CodeAborted, connect.CodeInternal:
		return true
	}
	return false
}

// acknowledgeAll acknowledges many updates in one call and returns those
// the masters refused.
func (d *driver) acknowledgeAll(ctx context.Context, acks []*agorav1.Acknowledgement) ([]*agorav1.AcknowledgementFailure, error) {
	var failures []*agorav1.AcknowledgementFailure
	err := d.r.call(ctx, "acknowledge", func(ctx context.Context, c agorav1connect.SchedulerServiceClient, fc *agorav1.FrameworkCall) error {
		res, err := c.Acknowledge(ctx, connect.NewRequest(&agorav1.AcknowledgeRequest{Call: fc, Acknowledgements: acks}))
		if err != nil {
			return err
		}
		failures = res.Msg.GetFailures()
		return nil
	})
	return failures, err
}
