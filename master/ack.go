package master

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// maxAcksPerCall bounds the acknowledgements of one Acknowledge call.
const maxAcksPerCall = 10_000

// ackBatchesInFlight bounds the AcknowledgeBatch entries being committed at
// once. Acknowledgements commute (of different updates they touch
// different tasks; of one update, the second changes nothing), so even
// without ordered proposals entries may commit in any order. With one at a
// time the acknowledgements of a 1M-task run fell behind the updates by
// 100,000s, and their backlog drew out the end of the run by seconds
// (issue 13).
const ackBatchesInFlight = 4

// newAckCoalescer groups concurrent acknowledgements (of one call's list
// and of concurrent calls) into AcknowledgeBatch entries, up to
// ackBatchesInFlight at once.
func newAckCoalescer(b backend) *coalescer[*agorav1.AcknowledgeCommand] {
	return newCoalescer(b, fsm.CmdAcknowledge, fsm.CmdAcknowledgeBatch, ackBatchesInFlight, true, func(as []*agorav1.AcknowledgeCommand) proto.Message {
		return &agorav1.AcknowledgeBatchCommand{Acks: as}
	})
}

// Acknowledge acknowledges status updates: the single one named by the
// request's own fields, and the list in acknowledgements. Acknowledging
// one that a newer update superseded, or one already acknowledged,
// succeeds and changes nothing.
//
// A call naming exactly one update answers with its verdict as the call's
// error (as before batches). A call with a list answers OK, listing the
// refused ones in failures; the others are committed, many per entry.
func (s *schedulerServer) Acknowledge(ctx context.Context, req *connect.Request[agorav1.AcknowledgeRequest]) (*connect.Response[agorav1.AcknowledgeResponse], error) {
	r := req.Msg
	if n := len(r.GetAcknowledgements()); n > maxAcksPerCall {
		return nil, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%d acknowledgements in one call, at most %d allowed", n, maxAcksPerCall))
	}
	_, fw, err := s.caller(ctx, r.GetCall())
	if err != nil {
		return nil, err
	}
	var acks []*agorav1.AcknowledgeCommand
	s.queuedAcks.acked(fw.GetId(), s.m.Now())
	defer s.queuedAcks.hold(fw.GetId(), r)()
	if r.GetTaskId() != "" || r.GetUuid() != "" || len(r.GetAcknowledgements()) == 0 {
		acks = append(acks, &agorav1.AcknowledgeCommand{FrameworkId: fw.GetId(), TaskId: r.GetTaskId(), Uuid: r.GetUuid()})
	}
	for _, a := range r.GetAcknowledgements() {
		acks = append(acks, &agorav1.AcknowledgeCommand{FrameworkId: fw.GetId(), TaskId: a.GetTaskId(), Uuid: a.GetUuid()})
	}
	if len(acks) == 1 && len(r.GetAcknowledgements()) <= 1 {
		if _, err := s.acks.submit(ctx, acks[0]); err != nil {
			return nil, err
		}
		return connect.NewResponse(&agorav1.AcknowledgeResponse{}), nil
	}
	_, errs, err := s.acks.submitAll(ctx, acks)
	if err != nil {
		return nil, err
	}
	out := &agorav1.AcknowledgeResponse{}
	for i, err := range errs {
		if err == nil {
			continue
		}
		code := connect.CodeOf(err)
		if code == connect.CodeUnavailable || code == connect.CodeCanceled || code == connect.CodeDeadlineExceeded {
			// Not a verdict on the acknowledgement: the whole call failed.
			return nil, err
		}
		out.Failures = append(out.Failures, &agorav1.AcknowledgementFailure{
			TaskId: acks[i].GetTaskId(), Uuid: acks[i].GetUuid(),
			Code: code.String(), Message: strings.TrimPrefix(err.Error(), code.String()+": "),
		})
	}
	return connect.NewResponse(out), nil
}

// queuedAcks counts the acknowledgements of calls in progress on this
// master (queued for a commit), per framework and uuid: the resend of an
// unacknowledged update skips those (resendUnacked), so a framework whose
// acknowledgement is merely waiting for its commit is not sent the update
// again.
type queuedAcks struct {
	mu sync.Mutex
	n  map[string]int // framework \0 uuid -> calls holding it
	// last is when each framework's last acknowledgement call came.
	last map[string]time.Time
}

// acked records that an acknowledgement call of framework fid came at at.
func (q *queuedAcks) acked(fid string, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.last == nil {
		q.last = map[string]time.Time{}
	}
	q.last[fid] = at
}

// lastAck is when framework fid's last acknowledgement call came (zero:
// none since this master started).
func (q *queuedAcks) lastAck(fid string) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.last[fid]
}

func queuedKey(fid, uuid string) string { return fid + "\x00" + uuid }

// hold marks the uuids of r queued until the returned func is called.
func (q *queuedAcks) hold(fid string, r *agorav1.AcknowledgeRequest) (release func()) {
	keys := make([]string, 0, 1+len(r.GetAcknowledgements()))
	if u := r.GetUuid(); u != "" {
		keys = append(keys, queuedKey(fid, u))
	}
	for _, a := range r.GetAcknowledgements() {
		if u := a.GetUuid(); u != "" {
			keys = append(keys, queuedKey(fid, u))
		}
	}
	q.mu.Lock()
	if q.n == nil {
		q.n = map[string]int{}
	}
	for _, k := range keys {
		q.n[k]++
	}
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		for _, k := range keys {
			if q.n[k]--; q.n[k] <= 0 {
				delete(q.n, k)
			}
		}
		q.mu.Unlock()
	}
}

// queued reports whether an acknowledgement of the framework's uuid is
// in a call in progress.
func (q *queuedAcks) queued(fid, uuid string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n[queuedKey(fid, uuid)] > 0
}
