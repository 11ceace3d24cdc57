package fsm

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Batch commands (types 60-69): many independent commands in one log
// entry, which the leader coalesces from concurrent calls so that a burst
// of acknowledgements, status updates or operator and scheduler writes
// costs one entry and one Apply rather than one each. AcknowledgeBatch and
// StatusUpdateBatch carry one kind; Batch carries any kinds for which
// Batchable holds.
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
	CmdBatch             CommandType = 62
)

// Batchable reports whether commands of type t may be items of a Batch
// entry. Such a command's outcome must not depend on sharing its entry
// with others: it takes no id, version or uuid from the entry's index
// (Accept derives reservation ids and PutRecord record versions from it,
// the agent-loss commands status uuids), creates no ids the caller needs
// back in Result.IDs (OffersCreated, RescindOffers, Preempt), and its
// times are stamped by the leader in the command. Batch entries
// themselves are not batchable.
func Batchable(t CommandType) bool {
	switch t {
	case CmdSetRole, CmdDeleteRole, CmdKillTask, CmdRevive, CmdSuppress, CmdSetDemand, CmdDecline:
		return true
	}
	return false
}

// NewBatchItem wraps a command as an item of a Batch entry; t must be
// Batchable and m its payload message. The payload is encoded
// deterministically, as Encode does.
func NewBatchItem(t CommandType, m proto.Message) (*agorav1.BatchItem, error) {
	if !Batchable(t) {
		return nil, fmt.Errorf("fsm: %s cannot be batched", t)
	}
	if want := itemNames[t]; m == nil || m.ProtoReflect().Descriptor().FullName() != want {
		return nil, fmt.Errorf("fsm: batch item %s needs %s, got %T", t, want, m)
	}
	a := new(anypb.Any)
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("fsm: batch item %s: %w", t, err)
	}
	return &agorav1.BatchItem{Type: uint32(t), Command: a}, nil
}

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
	x.rollback(base)
	x.events, x.ids, x.seq, x.now = x.events[:events], x.ids[:ids], seq, now
	verdicts := make([]*Rejection, len(items))
	for i, m := range items {
		saved := x.t.CommitOnly()
		events, ids, seq := len(x.events), len(x.ids), x.seq
		if rej := applyItem(x, m, apply); rej != nil {
			verdicts[i] = rej
			x.rollback(saved)
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

// batch applies a Batch entry's items one by one, each as its own entry
// would be applied (see batchItem).
func (x *txn) batch(c *agorav1.BatchCommand) *Rejection {
	return applyItems(x, c.GetItems(), (*txn).batchItem)
}

// batchItem decodes one item of a Batch entry and applies it. An item that
// is not batchable or does not decode is refused (every replica refuses it
// alike); the leader never proposes one.
func (x *txn) batchItem(it *agorav1.BatchItem) *Rejection {
	if it.GetType() > 0xff {
		return reject(CodeInvalidArgument, "batch item of unknown command type %d", it.GetType())
	}
	t := CommandType(it.GetType())
	if !Batchable(t) {
		return reject(CodeInvalidArgument, "command %s cannot be an item of a batch", t)
	}
	a := it.GetCommand()
	if want := itemNames[t]; a.MessageName() != want {
		return reject(CodeInvalidArgument, "batch item %s holds %q, want %s", t, a.GetTypeUrl(), want)
	}
	m := itemMessage(t)
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return reject(CodeInvalidArgument, "batch item %s does not decode: %v", t, err)
	}
	uuids := x.uuids
	x.uuids = nil
	defer func() { x.uuids = uuids }()
	return applyBatched(x, t, m)
}

// itemMessage and applyBatched are newMessage and (*txn).apply, bound in
// init: the command table holds the Batch row, whose items go through the
// table again, and a direct reference would be an initialization cycle.
var (
	itemMessage  func(CommandType) proto.Message
	applyBatched func(*txn, CommandType, proto.Message) *Rejection
	// itemNames holds the payload message name of each batchable type.
	itemNames [256]protoreflect.FullName
)

func init() {
	itemMessage, applyBatched = newMessage, (*txn).apply
	for t := range itemNames {
		if Batchable(CommandType(t)) {
			itemNames[t] = newMessage(CommandType(t)).ProtoReflect().Descriptor().FullName()
		}
	}
}

// statusUpdateBatch applies agents' status update calls one by one (see
// statusUpdate).
func (x *txn) statusUpdateBatch(c *agorav1.StatusUpdateBatchCommand) *Rejection {
	// Each status emits its event: room for them at once, not by doubling
	// (4% of a leader's allocations at 1M tasks, and as much again on
	// every follower while this grew by calls instead of statuses).
	n := 0
	for _, u := range c.GetUpdates() {
		n += len(u.GetStatuses())
	}
	x.events = slices.Grow(x.events, n)
	return applyItems(x, c.GetUpdates(), (*txn).statusUpdate)
}
