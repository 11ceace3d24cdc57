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
//
// The leader judged every item before proposing it, so a rejection here
// is rare: the items are first applied in one go, and only when one of
// them is rejected does the batch start over from the state before it,
// with a savepoint per item (each savepoint resets the radix transaction's
// cache of writable nodes, which costs node copies on every item). Both
// paths reach the same state and verdicts, on every replica.
func applyItems[M proto.Message](x *txn, items []M, apply func(*txn, M) *Rejection) *Rejection {
	if len(items) == 0 {
		return reject(CodeInvalidArgument, "batch holds no command")
	}
	base := x.t.CommitOnly()
	events, ids, seq, now := len(x.events), len(x.ids), x.seq, x.now
	fast := true
	for _, m := range items {
		if applyItem(x, m, apply) != nil {
			fast = false
			break
		}
	}
	if fast {
		x.items = make([]*Rejection, len(items))
		return nil
	}
	x.t = base.Txn()
	x.events, x.ids, x.seq, x.now = x.events[:events], x.ids[:ids], seq, now
	verdicts := make([]*Rejection, len(items))
	for i, m := range items {
		saved := x.t.CommitOnly()
		events, ids, seq := len(x.events), len(x.ids), x.seq
		if rej := applyItem(x, m, apply); rej != nil {
			verdicts[i] = rej
			x.t = saved.Txn()
			x.events, x.ids, x.seq = x.events[:events], x.ids[:ids], seq
		}
	}
	x.items = verdicts
	return nil
}

// applyItem applies one item with its own leader-stamped time.
func applyItem[M proto.Message](x *txn, m M, apply func(*txn, M) *Rejection) *Rejection {
	now := x.now
	defer func() { x.now = now }()
	if n, ok := any(m).(interface{ GetNow() *timestamppb.Timestamp }); ok {
		x.now = n.GetNow()
	}
	return apply(x, m)
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
