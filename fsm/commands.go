package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// CommandType is the one-byte type prefix of a Raft log entry.
type CommandType uint8

// IgnoreUnknown is the high bit of a CommandType: replicas that do not know
// the type skip the entry instead of panicking (rolling upgrades).
const IgnoreUnknown CommandType = 0x80

// Command types. The values are the wire format of the log: never renumber
// one, only add. Each has one row in commandTable.
const (
	CmdSetRole               CommandType = 1
	CmdDeleteRole            CommandType = 2
	CmdUpsertMaster          CommandType = 3
	CmdRemoveMaster          CommandType = 4
	CmdRegisterAgent         CommandType = 5
	CmdAgentUnreachable      CommandType = 6
	CmdAgentGone             CommandType = 7
	CmdStatusUpdate          CommandType = 8
	CmdSubscribeFramework    CommandType = 9
	CmdFrameworkDisconnected CommandType = 10
	CmdUpdateFramework       CommandType = 11
	CmdTeardownFramework     CommandType = 12
	CmdOffersCreated         CommandType = 13
	CmdAccept                CommandType = 14
	CmdDecline               CommandType = 15
	CmdRescindOffers         CommandType = 16
	CmdExpire                CommandType = 17
	CmdRevive                CommandType = 18
	CmdSuppress              CommandType = 19
	CmdKillTask              CommandType = 20
	CmdAcknowledge           CommandType = 21
	CmdPutRecord             CommandType = 22
	CmdDeleteRecord          CommandType = 23
	CmdAgentStopped          CommandType = 24
	CmdSetDemand             CommandType = 25
	CmdPreempt               CommandType = 26

	// Drain and maintenance (drain.go), from 40.
	CmdDrainAgent         CommandType = 40
	CmdUndrainAgent       CommandType = 41
	CmdDrainDeadline      CommandType = 42
	CmdAnswerInverseOffer CommandType = 43
)

// command is one row of the command table: everything Encode, Decode and
// Apply need to know about a type, declared once.
type command struct {
	name  string
	new   func() proto.Message
	apply func(x *txn, m proto.Message) *Rejection
}

// row builds a table row from a typed apply function: the payload message
// type is inferred from it, so the constructor and the dispatch cannot
// disagree.
func row[M proto.Message](name string, apply func(*txn, M) *Rejection) command {
	return command{
		name: name,
		new: func() proto.Message {
			var zero M
			return zero.ProtoReflect().Type().New().Interface()
		},
		apply: func(x *txn, m proto.Message) *Rejection { return apply(x, m.(M)) },
	}
}

// commandTable is the one dispatch table of the log, indexed by type (the
// IgnoreUnknown bit cleared). The apply functions are documented where
// they are defined (apply.go, accept.go, records.go).
var commandTable = [...]command{
	CmdSetRole:               row("SetRole", (*txn).setRole),
	CmdDeleteRole:            row("DeleteRole", (*txn).deleteRole),
	CmdUpsertMaster:          row("UpsertMaster", (*txn).upsertMaster),
	CmdRemoveMaster:          row("RemoveMaster", (*txn).removeMaster),
	CmdRegisterAgent:         row("RegisterAgent", (*txn).registerAgent),
	CmdAgentUnreachable:      row("AgentUnreachable", (*txn).agentUnreachable),
	CmdAgentGone:             row("AgentGone", (*txn).agentGone),
	CmdStatusUpdate:          row("StatusUpdate", (*txn).statusUpdate),
	CmdSubscribeFramework:    row("SubscribeFramework", (*txn).subscribeFramework),
	CmdFrameworkDisconnected: row("FrameworkDisconnected", (*txn).frameworkDisconnected),
	CmdUpdateFramework:       row("UpdateFramework", (*txn).updateFramework),
	CmdTeardownFramework:     row("TeardownFramework", (*txn).teardownFramework),
	CmdOffersCreated:         row("OffersCreated", (*txn).offersCreated),
	CmdAccept:                row("Accept", (*txn).accept),
	CmdDecline:               row("Decline", (*txn).decline),
	CmdRescindOffers:         row("RescindOffers", (*txn).rescindOffers),
	CmdExpire:                row("Expire", (*txn).expire),
	CmdRevive:                row("Revive", (*txn).revive),
	CmdSuppress:              row("Suppress", (*txn).suppress),
	CmdKillTask:              row("KillTask", (*txn).killTask),
	CmdAcknowledge:           row("Acknowledge", (*txn).acknowledge),
	CmdPutRecord:             row("PutRecord", (*txn).putRecord),
	CmdDeleteRecord:          row("DeleteRecord", (*txn).deleteRecord),
	CmdAgentStopped:          row("AgentStopped", (*txn).agentStopped),
	CmdSetDemand:             row("SetDemand", (*txn).setDemand),
	CmdPreempt:               row("Preempt", (*txn).preempt),

	CmdDrainAgent:         row("DrainAgent", (*txn).drainAgent),
	CmdUndrainAgent:       row("UndrainAgent", (*txn).undrainAgent),
	CmdDrainDeadline:      row("DrainDeadline", (*txn).drainDeadline),
	CmdAnswerInverseOffer: row("AnswerInverseOffer", (*txn).answerInverseOffer),

	CmdAcknowledgeBatch:  row("AcknowledgeBatch", (*txn).acknowledgeBatch),
	CmdStatusUpdateBatch: row("StatusUpdateBatch", (*txn).statusUpdateBatch),
	CmdBatch:             row("Batch", (*txn).batch),
}

// lookup returns the row of a known type (the IgnoreUnknown bit ignored).
func lookup(t CommandType) (command, bool) {
	i := int(t &^ IgnoreUnknown)
	if i >= len(commandTable) || commandTable[i].new == nil {
		return command{}, false
	}
	return commandTable[i], true
}

// String names the command type ("SetRole"); unknown types print as numbers.
func (t CommandType) String() string {
	if c, ok := lookup(t); ok {
		return c.name
	}
	return fmt.Sprintf("CommandType(%d)", uint8(t))
}

// newMessage returns an empty payload message for a known type, or nil.
func newMessage(t CommandType) proto.Message {
	if c, ok := lookup(t); ok {
		return c.new()
	}
	return nil
}

// apply runs one decoded command against the txn.
func (x *txn) apply(t CommandType, m proto.Message) *Rejection {
	c, ok := lookup(t)
	if !ok {
		panic(fmt.Sprintf("fsm: no handler for command %s (%T)", t, m))
	}
	if n, ok := m.(interface{ GetNow() *timestamppb.Timestamp }); ok {
		x.now = n.GetNow()
	}
	return c.apply(x, m)
}

// Encode returns the log entry for a command: the type byte followed by the
// deterministic protobuf encoding of m. m must be the type's payload message.
func Encode(t CommandType, m proto.Message) ([]byte, error) {
	want := newMessage(t)
	if want == nil {
		if t&IgnoreUnknown == 0 {
			return nil, fmt.Errorf("fsm: encode: unknown command type %d", uint8(t))
		}
	} else if m == nil || want.ProtoReflect().Descriptor().FullName() != m.ProtoReflect().Descriptor().FullName() {
		return nil, fmt.Errorf("fsm: encode: %s needs %s, got %T", t, want.ProtoReflect().Descriptor().FullName(), m)
	}
	b := []byte{byte(t)}
	if m == nil {
		return b, nil
	}
	out, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(b, m)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	return out, nil
}

// Decode splits a log entry into its type and payload. An unknown type with
// the IgnoreUnknown bit gives (t, nil, nil); an unknown type without it, an
// empty entry or a payload that does not parse give an error.
func Decode(b []byte) (CommandType, proto.Message, error) {
	return decode(b, true)
}

// decode is Decode; with fast false it decodes every payload with
// proto.Unmarshal, not the hot types with cmdDecoder (the tests and
// benchmarks compare the two).
func decode(b []byte, fast bool) (CommandType, proto.Message, error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("fsm: decode: empty entry")
	}
	t := CommandType(b[0])
	if fast {
		if m, ok := decodeFast(t, b[1:]); ok {
			return t, m, nil
		}
	}
	m := newMessage(t)
	if m == nil {
		if t&IgnoreUnknown != 0 {
			return t, nil, nil
		}
		return t, nil, fmt.Errorf("fsm: decode: unknown command type %d", uint8(t))
	}
	if err := proto.Unmarshal(b[1:], m); err != nil {
		return t, nil, fmt.Errorf("fsm: decode %s: %w", t, err)
	}
	return t, m, nil
}
