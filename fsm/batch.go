package fsm

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Batch commands (types 60-64): many independent commands in one log
// entry, which the leader coalesces from concurrent calls so that a burst
// of acknowledgements or status updates costs one entry and one Apply
// rather than one each.
//
// Each item is judged exactly as the single command would be, on its own
// and in order, against the state left by the items before it: an item
// that is rejected changes nothing (its partial writes are rolled back)
// and does not stop the others. Result.Items holds each item's verdict
// (nil when applied). The entry as a whole is rejected only when it holds
// no item.
const (
	CmdAcknowledgeBatch  CommandType = 60
	CmdStatusUpdateBatch CommandType = 61
)

// applyItems applies items one by one with apply as each one's handler,
// rolling back an item that is rejected, and records the verdicts.
func applyItems[M proto.Message](x *txn, items []M, apply func(*txn, M) *Rejection) *Rejection {
	if len(items) == 0 {
		return reject(CodeInvalidArgument, "batch holds no command")
	}
	verdicts := make([]*Rejection, len(items))
	for i, m := range items {
		saved := x.t.CommitOnly()
		events, ids, seq := len(x.events), len(x.ids), x.seq
		now := x.now
		if n, ok := any(m).(interface{ GetNow() *timestamppb.Timestamp }); ok {
			x.now = n.GetNow()
		}
		if rej := apply(x, m); rej != nil {
			verdicts[i] = rej
			x.t = saved.Txn()
			x.events, x.ids, x.seq = x.events[:events], x.ids[:ids], seq
		}
		x.now = now
	}
	x.items = verdicts
	return nil
}

// acknowledgeBatch applies acknowledgements one by one (see acknowledge).
func (x *txn) acknowledgeBatch(c *agorav1.AcknowledgeBatchCommand) *Rejection {
	return applyItems(x, c.GetAcks(), (*txn).acknowledge)
}

// statusUpdateBatch applies agents' status update calls one by one (see
// statusUpdate).
func (x *txn) statusUpdateBatch(c *agorav1.StatusUpdateBatchCommand) *Rejection {
	return applyItems(x, c.GetUpdates(), (*txn).statusUpdate)
}
