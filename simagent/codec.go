package simagent

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// answerCodec is the simulator's protobuf codec: it decodes GetAssignments
// answers keeping only what a simulated agent reads (the index, known, unchanged and
// each task's id, framework, agent, state and kill request), skipping the
// rest (resources, commands, statuses, volumes). The answer lists all of
// an agent's live tasks each time; decoding them in full was the larger
// part of the simulator's CPU at 10,000 agents and 100 tasks each, CPU
// the masters beside it on the same machine need. Every other message is
// decoded in full.
type answerCodec struct{}

func (answerCodec) Name() string { return "proto" }

func (answerCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("simagent: cannot encode %T", m)
	}
	return proto.MarshalOptions{}.Marshal(pm)
}

func (answerCodec) Unmarshal(b []byte, m any) error {
	if r, ok := m.(*agorav1.GetAssignmentsResponse); ok {
		return decodeAnswer(b, r)
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("simagent: cannot decode %T", m)
	}
	return proto.Unmarshal(b, pm)
}

// Field numbers of agora.v1.GetAssignmentsResponse and agora.v1.Task
// (agent.proto, types.proto).
const (
	answerIndex = 1
	answerTasks = 2
	answerKnown = 4
	answerSame  = 5 // unchanged

	taskID            = 1
	taskFrameworkID   = 2
	taskAgentID       = 3
	taskState         = 10
	taskKillRequested = 13
	taskKillGrace     = 14
)

var errBadAnswer = errors.New("simagent: malformed GetAssignments answer")

// fields calls fn for each field of a message; fn consumes a field it
// wants and returns how many bytes it took, or 0 to skip it.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, b []byte) int) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadAnswer
		}
		b = b[n:]
		if used := fn(num, typ, b); used > 0 {
			b = b[used:]
			continue
		} else if used < 0 {
			return errBadAnswer
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errBadAnswer
		}
		b = b[n:]
	}
	return nil
}

func decodeAnswer(b []byte, r *agorav1.GetAssignmentsResponse) error {
	r.Reset()
	var taskErr error
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch {
		case num == answerIndex && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			r.Index = v
			return n
		case num == answerKnown && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			r.Known = v != 0
			return n
		case num == answerSame && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			r.Unchanged = v != 0
			return n
		case num == answerTasks && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return n
			}
			t := &agorav1.Task{}
			if err := decodeTask(v, t); err != nil {
				taskErr = err
				return -1
			}
			r.Tasks = append(r.Tasks, t)
			return n
		}
		return 0
	})
	if taskErr != nil {
		return taskErr
	}
	return err
}

func decodeTask(b []byte, t *agorav1.Task) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch {
		case typ == protowire.BytesType && (num == taskID || num == taskFrameworkID || num == taskAgentID):
			v, n := protowire.ConsumeString(b)
			switch num {
			case taskID:
				t.Id = v
			case taskFrameworkID:
				t.FrameworkId = v
			default:
				t.AgentId = v
			}
			return n
		case num == taskState && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			t.State = agorav1.TaskState(v)
			return n
		case num == taskKillRequested && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			t.KillRequested = v != 0
			return n
		case num == taskKillGrace && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			t.KillGraceSeconds = math.Float64frombits(v)
			return n
		}
		return 0
	})
}
