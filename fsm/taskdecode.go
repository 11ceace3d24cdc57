package fsm

import (
	"bytes"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// taskBlock holds a restored task and the messages under it that are its
// own in one allocation: they are written together (a task is replaced
// whole, never changed in place) and die together. Its resources and
// command are shared with the task before it when they are encoded alike
// (taskDecoder.shared), as a launch shares them (launchMemo): 536 bytes in
// the 576-byte size class, where the block with its own command and two
// resources took 896.
type taskBlock struct {
	task             agorav1.Task
	status           agorav1.TaskStatus
	created, stamped timestamppb.Timestamp
}

// taskDecoder decodes the Task records of a snapshot without reflection,
// the bulk of a restore: a million tasks. It handles the fields tasks
// usually have (ids, names, scalar resources, a command without
// environment, a status, timestamps) and declines anything else (ranges,
// sets, reservations or volumes in resources, an environment, a message
// field given twice, which proto merges, unknown fields, a wire type that
// does not match the field, a string that is not UTF-8), for which the
// caller uses proto.Unmarshal: what it returns equals what proto.Unmarshal
// returns. One per decoding goroutine.
type taskDecoder struct {
	in interner
	// hints are the strings the previous task interned, field by field:
	// consecutive tasks mostly share their framework, role and resource
	// names, so a comparison saves a map lookup.
	hints taskHints
	// pending are the string fields to cut from the task's one string.
	pending []pendingString
	arena   []byte
	// shared are the previous task's resources and command with their
	// encodings, for the next task encoded alike.
	shared sharedParts
	// resRaw holds the encodings of the task's resources being decoded.
	resRaw [][]byte
}

// sharedParts are the resources and command of the last task decoded, and
// their encodings (copies: the record buffer is reused).
type sharedParts struct {
	resRaw []byte // the resources' encodings, each after its length
	res    []*agorav1.Resource
	cmdRaw []byte
	cmd    *agorav1.CommandInfo
}

// taskHints holds the previous task's interned strings.
type taskHints struct {
	fid, aid, role string
	resName        [2]string
	resRole        [2]string
}

type pendingString struct {
	dst *string
	b   []byte
}

// decode returns the task encoded in body, or ok false when it declines.
func (d *taskDecoder) decode(body []byte) (t *agorav1.Task, ok bool) {
	blk := &taskBlock{}
	t = &blk.task
	d.pending = d.pending[:0]
	var idBytes, statusIDBytes, cmdRaw []byte
	var haveCommand, haveStatus, haveCreated, haveStatusID bool
	d.resRaw = d.resRaw[:0]
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, false
		}
		body = body[n:]
		switch {
		case typ == protowire.BytesType:
			b, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return nil, false
			}
			body = body[n:]
			switch num {
			case 1:
				idBytes = b
				if !d.later(&t.Id, b) {
					return nil, false
				}
			case 2:
				if !d.intern(&t.FrameworkId, b, d.hints.fid) {
					return nil, false
				}
			case 3:
				if !d.intern(&t.AgentId, b, d.hints.aid) {
					return nil, false
				}
			case 4:
				if !d.later(&t.Name, b) {
					return nil, false
				}
			case 5:
				if !d.intern(&t.Role, b, d.hints.role) {
					return nil, false
				}
			case 6:
				d.resRaw = append(d.resRaw, b) // decoded below
			case 7:
				if haveCommand {
					return nil, false
				}
				haveCommand, cmdRaw = true, b // decoded below
			case 8:
				if !utf8.Valid(b) {
					return nil, false
				}
				t.VolumeIds = append(t.VolumeIds, string(b))
			case 9:
				if !d.later(&t.GroupId, b) {
					return nil, false
				}
			case 11:
				if haveStatus {
					return nil, false
				}
				haveStatus, t.Status = true, &blk.status
				var ok bool
				if statusIDBytes, haveStatusID, ok = d.status(blk, b); !ok {
					return nil, false
				}
			case 15:
				if haveCreated || !timestamp(&blk.created, b) {
					return nil, false
				}
				haveCreated, t.CreatedAt = true, &blk.created
			case 17:
				if !d.later(&t.KillReason, b) {
					return nil, false
				}
			default:
				return nil, false
			}
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(body)
			if n < 0 {
				return nil, false
			}
			body = body[n:]
			switch num {
			case 10:
				t.State = agorav1.TaskState(int32(v))
			case 12:
				t.Acknowledged = v != 0
			case 13:
				t.KillRequested = v != 0
			case 16:
				t.Revocable = v != 0
			default:
				return nil, false
			}
		case typ == protowire.Fixed64Type && num == 14:
			v, n := protowire.ConsumeFixed64(body)
			if n < 0 {
				return nil, false
			}
			body = body[n:]
			t.KillGraceSeconds = math.Float64frombits(v)
		default:
			return nil, false
		}
	}
	if len(d.resRaw) > 0 && !d.resources(t) {
		return nil, false
	}
	if haveCommand && !d.commandOf(t, cmdRaw) {
		return nil, false
	}
	d.hints.fid, d.hints.aid, d.hints.role = t.FrameworkId, t.AgentId, t.Role
	shareID := haveStatusID && bytes.Equal(statusIDBytes, idBytes)
	// Cut the strings that are not interned from one allocation.
	d.arena = d.arena[:0]
	for _, p := range d.pending {
		if shareID && p.dst == &blk.status.TaskId {
			continue
		}
		d.arena = append(d.arena, p.b...)
	}
	arena := string(d.arena)
	off := 0
	for _, p := range d.pending {
		if shareID && p.dst == &blk.status.TaskId {
			continue
		}
		*p.dst = arena[off : off+len(p.b)]
		off += len(p.b)
	}
	if shareID {
		blk.status.TaskId = t.Id
	}
	return t, true
}

// later sets *dst to b once the task is decoded; false if b is not UTF-8.
// A field given twice keeps its last value, as in proto.
func (d *taskDecoder) later(dst *string, b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for i := range d.pending {
		if d.pending[i].dst == dst {
			d.pending[i].b = b
			return true
		}
	}
	d.pending = append(d.pending, pendingString{dst, b})
	return true
}

// intern sets *dst to the shared copy of b; false if b is not UTF-8. hint
// is a string interned before that b likely equals.
func (d *taskDecoder) intern(dst *string, b []byte, hint string) bool {
	if string(b) == hint {
		*dst = hint
		return true
	}
	if !utf8.Valid(b) {
		return false
	}
	if s, ok := d.in[string(b)]; ok {
		*dst = s
		return true
	}
	*dst = d.in.str(string(b))
	return true
}

// resources sets t's resources from their encodings in d.resRaw: the
// previous task's when they are encoded alike, else decoded anew (and then
// remembered for the next task).
func (d *taskDecoder) resources(t *agorav1.Task) bool {
	sh := &d.shared
	if sh.res != nil && sameEncodings(sh.resRaw, d.resRaw) {
		t.Resources = sh.res
		return true
	}
	vals := make([]agorav1.Resource, len(d.resRaw))
	res := make([]*agorav1.Resource, len(d.resRaw))
	for i, b := range d.resRaw {
		if !d.resource(&vals[i], b, i) {
			return false
		}
		res[i] = &vals[i]
	}
	t.Resources = res
	sh.res, sh.resRaw = res, sh.resRaw[:0]
	for _, b := range d.resRaw {
		sh.resRaw = protowire.AppendBytes(sh.resRaw, b)
	}
	return true
}

// sameEncodings reports whether flat, encodings each after its length (as
// sharedParts.resRaw holds them), holds exactly raw.
func sameEncodings(flat []byte, raw [][]byte) bool {
	for _, b := range raw {
		v, n := protowire.ConsumeBytes(flat)
		if n < 0 || !bytes.Equal(v, b) {
			return false
		}
		flat = flat[n:]
	}
	return len(flat) == 0
}

// commandOf sets t's command from its encoding b: the previous task's when
// encoded alike, else decoded anew (and then remembered).
func (d *taskDecoder) commandOf(t *agorav1.Task, b []byte) bool {
	sh := &d.shared
	if sh.cmd != nil && bytes.Equal(sh.cmdRaw, b) {
		t.Command = sh.cmd
		return true
	}
	c := new(agorav1.CommandInfo)
	if !d.command(c, b) {
		return false
	}
	t.Command = c
	sh.cmd, sh.cmdRaw = c, append(sh.cmdRaw[:0], b...)
	return true
}

// resource decodes the task's i-th resource into r.
func (d *taskDecoder) resource(r *agorav1.Resource, body []byte, i int) bool {
	var name, role string // hints for a resource beyond those kept
	nameHint, roleHint := &name, &role
	if i < len(d.hints.resName) {
		nameHint, roleHint = &d.hints.resName[i], &d.hints.resRole[i]
	}
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return false
		}
		body = body[n:]
		switch {
		case typ == protowire.BytesType && (num == 1 || num == 5):
			b, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return false
			}
			body = body[n:]
			dst, hint := &r.Name, nameHint
			if num == 5 {
				dst, hint = &r.Role, roleHint
			}
			if !d.intern(dst, b, *hint) {
				return false
			}
			*hint = *dst
		case typ == protowire.Fixed64Type && num == 2:
			v, n := protowire.ConsumeFixed64(body)
			if n < 0 {
				return false
			}
			body = body[n:]
			r.Scalar = math.Float64frombits(v)
		default:
			return false
		}
	}
	return true
}

func (d *taskDecoder) command(c *agorav1.CommandInfo, body []byte) bool {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return false
		}
		body = body[n:]
		b, n := protowire.ConsumeBytes(body)
		if n < 0 || !d.later(&c.Value, b) {
			return false
		}
		body = body[n:]
	}
	return true
}

// status decodes the task's status into blk.status; it returns the bytes
// of its task id (and whether it has one) so that the caller can share the
// task's string when they are equal.
func (d *taskDecoder) status(blk *taskBlock, body []byte) (id []byte, haveID, ok bool) {
	st := &blk.status
	haveStamp := false
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, false, false
		}
		body = body[n:]
		switch {
		case typ == protowire.BytesType:
			b, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return nil, false, false
			}
			body = body[n:]
			var good bool
			switch num {
			case 1:
				id, haveID = b, true
				good = d.later(&st.TaskId, b)
			case 2:
				good = d.intern(&st.FrameworkId, b, blk.task.FrameworkId)
			case 3:
				good = d.intern(&st.AgentId, b, blk.task.AgentId)
			case 5:
				good = d.later(&st.Uuid, b)
			case 6:
				good = d.later(&st.Reason, b)
			case 7:
				good = d.later(&st.Message, b)
			case 9:
				good = !haveStamp && timestamp(&blk.stamped, b)
				haveStamp, st.Timestamp = true, &blk.stamped
			}
			if !good {
				return nil, false, false
			}
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(body)
			if n < 0 {
				return nil, false, false
			}
			body = body[n:]
			switch num {
			case 4:
				st.State = agorav1.TaskState(int32(v))
			case 8:
				st.Source = agorav1.StatusSource(int32(v))
			case 10:
				st.ExitCode = int32(v)
			case 11:
				st.Healthy = v != 0
			default:
				return nil, false, false
			}
		default:
			return nil, false, false
		}
	}
	return id, haveID, true
}

func timestamp(ts *timestamppb.Timestamp, body []byte) bool {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || typ != protowire.VarintType {
			return false
		}
		body = body[n:]
		v, n := protowire.ConsumeVarint(body)
		if n < 0 {
			return false
		}
		body = body[n:]
		switch num {
		case 1:
			ts.Seconds = int64(v)
		case 2:
			ts.Nanos = int32(v)
		default:
			return false
		}
	}
	return true
}
