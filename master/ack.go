package master

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// maxAcksPerCall bounds the acknowledgements of one Acknowledge call.
const maxAcksPerCall = 10_000

// newAckCoalescer groups concurrent acknowledgements (of one call's list
// and of concurrent calls) into AcknowledgeBatch entries.
func newAckCoalescer(b backend) *coalescer[*agorav1.AcknowledgeCommand] {
	return newCoalescer(b, fsm.CmdAcknowledge, fsm.CmdAcknowledgeBatch, func(as []*agorav1.AcknowledgeCommand) proto.Message {
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
