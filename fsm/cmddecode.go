package fsm

import (
	"math"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// The log entries every master applies most often are an Accept launching
// a hundred tasks, a StatusUpdateBatch and an AcknowledgeBatch of as many
// updates. proto.Unmarshal allocates each message and each string on its
// own, and was a fifth of a follower's CPU at a million tasks, plus the
// garbage collection of what it made. cmdDecoder decodes those three
// payloads with protowire instead, as taskDecoder does Task records at
// restore:
//
//   - messages of one kind are allocated together, in one slab per entry
//     (the TaskInfos of an operation, their resources, the
//     acknowledgements of a batch);
//   - strings that repeat within an entry (framework and agent ids,
//     resource names and roles, the command) are allocated once per entry
//     and shared;
//   - the other strings of one message (a task's id and name, a status's
//     task id and uuid) are cut from one allocation per message, so that
//     what Apply keeps of a message (the strings of the task or status it
//     stores) keeps nothing of its neighbours alive; the strings of an
//     acknowledgement batch, of which Apply keeps none, are cut from one
//     allocation per entry.
//
// It handles the fields those commands have in practice and declines
// anything else: an unknown field, a wire type that does not match the
// field, a singular message field given twice (proto merges them), a
// string that is not UTF-8, malformed input, and the fields it does not
// decode (resources with ranges, sets, reservations or volumes, volume ids,
// an environment, operation resources, volumes or labels). Decode then
// uses proto.Unmarshal, so what Decode returns equals what proto.Unmarshal
// returns, and every replica gets the same message whichever path decoded
// it.
//
// Sharing is safe because Apply never modifies a decoded command and keeps
// no pointer into it: launch stores the task id and name (strings) and
// copies of the command and resources; statusUpdate stores copyStatus's
// copy, with ts's clone of the time; acknowledge keeps nothing (see
// TestDecodedCommandNotRetained). Slab messages hold pointer slices whose
// capacity is capped, so an append to one message's list cannot write
// into its neighbour's.
type cmdDecoder struct {
	// shared are strings allocated for this entry, newest at
	// shared[next-1]: a string that repeats is found here.
	shared [16]string
	next   int
	// pending are the strings of the current message (or entry) not yet
	// cut from their one allocation; those of the current message start
	// at mark.
	pending []pendingString
	mark    int
	arena   []byte
	// resPtrs collects one task's resources before their list is cut
	// from the operation's slab; resRaw holds their encodings.
	resPtrs []*agorav1.Resource
	resRaw  [][]byte
	// stamps is the status batch's slab of timestamps; statusesLeft
	// counts the statuses left, the current one included.
	stamps       []timestamppb.Timestamp
	statusesLeft int
}

var cmdDecoders = sync.Pool{New: func() any { return &cmdDecoder{} }}

// borrowDecoder takes a decoder from the pool; done resets it (dropping
// its references to the entry) and puts it back.
func borrowDecoder() (d *cmdDecoder, done func()) {
	d = cmdDecoders.Get().(*cmdDecoder)
	return d, func() {
		d.reset()
		cmdDecoders.Put(d)
	}
}

// decodeFast decodes the payload of a hot command type; ok false means it
// declined and the caller must use proto.Unmarshal.
func decodeFast(t CommandType, b []byte) (m proto.Message, ok bool) {
	t &^= IgnoreUnknown
	if t != CmdAccept && t != CmdStatusUpdateBatch && t != CmdAcknowledgeBatch {
		return nil, false
	}
	d, done := borrowDecoder()
	defer done()
	switch t {
	case CmdAccept:
		return d.accept(b)
	case CmdStatusUpdateBatch:
		return d.statusBatch(b)
	default:
		return d.ackBatch(b)
	}
}

// reset drops the decoder's references to the entry (its strings, its
// bytes, its messages) before the decoder goes back to the pool.
func (d *cmdDecoder) reset() {
	clear(d.shared[:])
	d.next = 0
	clear(d.pending)
	d.pending, d.mark = d.pending[:0], 0
	d.arena = d.arena[:0]
	clear(d.resPtrs)
	d.resPtrs = d.resPtrs[:0]
	clear(d.resRaw)
	d.resRaw = d.resRaw[:0]
	d.stamps, d.statusesLeft = nil, 0
}

// share returns the entry's copy of the string b, allocating it the first
// time; false if b is not UTF-8.
func (d *cmdDecoder) share(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", true
	}
	for i := range d.shared {
		// Newest first: consecutive messages repeat the same values.
		if s := d.shared[(d.next-1-i)&(len(d.shared)-1)]; s == string(b) {
			return s, true
		}
	}
	if !utf8.Valid(b) {
		return "", false
	}
	s := string(b)
	d.shared[d.next&(len(d.shared)-1)] = s
	d.next++
	return s, true
}

// own returns a string of its own for b (a repeated field's element);
// false if b is not UTF-8.
func own(b []byte) (string, bool) {
	if !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// later sets *dst to b when the message is cut (cut); false if b is not
// UTF-8. A field given twice keeps its last value, as in proto.
func (d *cmdDecoder) later(dst *string, b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for i := d.mark; i < len(d.pending); i++ {
		if d.pending[i].dst == dst {
			d.pending[i].b = b
			return true
		}
	}
	d.pending = append(d.pending, pendingString{dst, b})
	return true
}

// begin starts a message whose strings are cut together.
func (d *cmdDecoder) begin() { d.mark = len(d.pending) }

// cut sets the pending strings from one allocation. With dedup, a string
// equal to an earlier one of the same message shares it (a task named by
// its id, as most are).
func (d *cmdDecoder) cut(dedup bool) {
	ps := d.pending[d.mark:]
	d.arena = d.arena[:0]
	for i, p := range ps {
		if dedup && dupOf(ps[:i], p.b) >= 0 {
			continue
		}
		d.arena = append(d.arena, p.b...)
	}
	arena := string(d.arena)
	off := 0
	for i, p := range ps {
		if dedup {
			if j := dupOf(ps[:i], p.b); j >= 0 {
				*p.dst = *ps[j].dst // set in an earlier turn
				continue
			}
		}
		*p.dst = arena[off : off+len(p.b)]
		off += len(p.b)
	}
	clear(ps)
	d.pending = d.pending[:d.mark]
}

// dupOf returns the index of the first of ps whose bytes equal b, or -1.
func dupOf(ps []pendingString, b []byte) int {
	for i, p := range ps {
		if string(p.b) == string(b) {
			return i
		}
	}
	return -1
}

// field reads the next field of body: its number and wire type, the bytes
// of a length-delimited value, the value of a varint or fixed64 one, and
// the rest of body; ok false on a malformed field or another wire type.
func field(body []byte) (num protowire.Number, typ protowire.Type, b []byte, v uint64, rest []byte, ok bool) {
	// Most fields are strings or messages shorter than 128 bytes, of a
	// number below 16: one byte of tag, one of length.
	if len(body) >= 2 && body[0] < 0x80 && body[0]>>3 != 0 && body[0]&7 == byte(protowire.BytesType) && body[1] < 0x80 {
		if end := 2 + int(body[1]); end <= len(body) {
			return protowire.Number(body[0] >> 3), protowire.BytesType, body[2:end], 0, body[end:], true
		}
	}
	num, typ, n := protowire.ConsumeTag(body)
	if n < 0 {
		return 0, 0, nil, 0, nil, false
	}
	body = body[n:]
	switch typ {
	case protowire.BytesType:
		b, n = protowire.ConsumeBytes(body)
	case protowire.VarintType:
		v, n = protowire.ConsumeVarint(body)
	case protowire.Fixed64Type:
		v, n = protowire.ConsumeFixed64(body)
	default:
		return 0, 0, nil, 0, nil, false
	}
	if n < 0 {
		return 0, 0, nil, 0, nil, false
	}
	return num, typ, b, v, body[n:], true
}

// count returns how many times field outer occurs in body as a
// length-delimited value and, when inner is not 0, how many times field
// inner occurs in those values: the sizes of the slabs to allocate.
func count(body []byte, outer, inner protowire.Number) (n, m int, ok bool) {
	for len(body) > 0 {
		num, typ, k := protowire.ConsumeTag(body)
		if k < 0 {
			return 0, 0, false
		}
		body = body[k:]
		if num == outer && typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(body)
			if k < 0 {
				return 0, 0, false
			}
			n++
			if inner != 0 {
				c, _, ok := count(v, inner, 0)
				if !ok {
					return 0, 0, false
				}
				m += c
			}
			body = body[k:]
			continue
		}
		if k = protowire.ConsumeFieldValue(num, typ, body); k < 0 {
			return 0, 0, false
		}
		body = body[k:]
	}
	return n, m, true
}

// acceptBlock holds an AcceptCommand and its small messages in one
// allocation.
type acceptBlock struct {
	cmd        agorav1.AcceptCommand
	now, until timestamppb.Timestamp
	limits     agorav1.AcceptLimits
	op         agorav1.Operation // the first operation
}

func (d *cmdDecoder) accept(body []byte) (*agorav1.AcceptCommand, bool) {
	blk := &acceptBlock{}
	c := &blk.cmd
	for len(body) > 0 {
		num, typ, b, _, rest, ok := field(body)
		if !ok || typ != protowire.BytesType {
			return nil, false
		}
		body = rest
		switch num {
		case 1:
			c.FrameworkId, ok = d.share(b)
		case 2:
			var s string
			s, ok = own(b)
			c.OfferIds = append(c.OfferIds, s)
		case 3:
			op := &blk.op
			if len(c.Operations) > 0 {
				op = &agorav1.Operation{}
			}
			c.Operations = append(c.Operations, op)
			ok = d.operation(op, b)
		case 4:
			ok = c.Now == nil && timestamp(&blk.now, b)
			c.Now = &blk.now
		case 5:
			ok = c.RefuseUntil == nil && timestamp(&blk.until, b)
			c.RefuseUntil = &blk.until
		case 6:
			var s string
			s, ok = own(b)
			c.Ids = append(c.Ids, s)
		case 120:
			ok = c.Limits == nil && acceptLimits(&blk.limits, b)
			c.Limits = &blk.limits
		default:
			ok = false
		}
		if !ok {
			return nil, false
		}
	}
	return c, true
}

func acceptLimits(l *agorav1.AcceptLimits, body []byte) bool {
	for len(body) > 0 {
		num, typ, _, v, rest, ok := field(body)
		if !ok || typ != protowire.VarintType {
			return false
		}
		body = rest
		switch num {
		case 1:
			l.MaxOperations = uint32(v)
		case 2:
			l.MaxLaunches = uint32(v)
		case 3:
			l.MaxFrameworkTasks = uint32(v)
		default:
			return false
		}
	}
	return true
}

// taskInfoBlock is one element of an operation's slab of tasks.
type taskInfoBlock struct {
	task    agorav1.TaskInfo
	command agorav1.CommandInfo
}

// operation decodes a LAUNCH-like operation: its type and tasks.
func (d *cmdDecoder) operation(op *agorav1.Operation, body []byte) bool {
	ntasks, _, ok := count(body, 2, 0)
	if !ok {
		return false
	}
	var tasks []taskInfoBlock
	if ntasks > 0 {
		tasks = make([]taskInfoBlock, ntasks)
		op.Tasks = make([]*agorav1.TaskInfo, 0, ntasks)
	}
	var res resourceSlab
	for len(body) > 0 {
		num, typ, b, v, rest, ok := field(body)
		if !ok {
			return false
		}
		body = rest
		switch {
		case num == 1 && typ == protowire.VarintType:
			op.Type = agorav1.OperationType(int32(v))
		case num == 2 && typ == protowire.BytesType:
			blk := &tasks[len(op.Tasks)]
			op.Tasks = append(op.Tasks, &blk.task)
			res.tasksLeft = ntasks - len(op.Tasks) + 1
			if !d.taskInfo(blk, b, &res) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// resourceSlab hands out the resources of an operation's tasks, and the
// lists that point to them, from a few allocations. A task whose resources
// are byte for byte the previous task's shares that task's list (the tasks
// of a launch usually ask for the same: at a million tasks, a list per
// task was 6% of what a follower allocated, all of it garbage once the
// launch had stored its canonical copy). When a task's differ, the slab is
// sized for this task alone the first time and, once two tasks in a row
// differed, for the tasks left if each has as many resources as this one.
type resourceSlab struct {
	res       []agorav1.Resource
	ptrs      []*agorav1.Resource
	tasksLeft int // the current task and those after it
	// prevRaw are the encoded resources of the previous task, prev its
	// decoded list; misses counts the tasks in a row whose resources
	// differed from their predecessor's.
	prevRaw [][]byte
	prev    []*agorav1.Resource
	misses  int
}

// tasksToSize is how many tasks a new slab is for: the current one, or
// once two tasks in a row differed from their predecessor, the tasks left.
func (s *resourceSlab) tasksToSize() int {
	if s.misses > 1 {
		return max(s.tasksLeft, 1)
	}
	return 1
}

func (s *resourceSlab) next(n int) *agorav1.Resource {
	if len(s.res) == 0 {
		s.res = make([]agorav1.Resource, max(n, 1)*s.tasksToSize())
	}
	r := &s.res[0]
	s.res = s.res[1:]
	return r
}

// list returns a list of rs of its own (its capacity capped, so that an
// append to it cannot write into the next task's).
func (s *resourceSlab) list(rs []*agorav1.Resource) []*agorav1.Resource {
	if len(s.ptrs) < len(rs) {
		s.ptrs = make([]*agorav1.Resource, len(rs)*s.tasksToSize())
	}
	out := s.ptrs[:len(rs):len(rs)]
	s.ptrs = s.ptrs[len(rs):]
	copy(out, rs)
	return out
}

// same reports whether raw are the previous task's encoded resources.
func (s *resourceSlab) same(raw [][]byte) bool {
	if s.prev == nil || len(raw) != len(s.prevRaw) {
		return false
	}
	for i := range raw {
		if string(raw[i]) != string(s.prevRaw[i]) {
			return false
		}
	}
	return true
}

// taskInfo decodes a TaskInfo into blk, its resources from res.
func (d *cmdDecoder) taskInfo(blk *taskInfoBlock, body []byte, res *resourceSlab) bool {
	t := &blk.task
	d.begin()
	d.resRaw = d.resRaw[:0]
	for len(body) > 0 {
		num, typ, b, v, rest, ok := field(body)
		if !ok {
			return false
		}
		body = rest
		if typ == protowire.Fixed64Type && num == 7 {
			t.KillGraceSeconds = math.Float64frombits(v)
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		switch num {
		case 1:
			ok = d.later(&t.TaskId, b)
		case 2:
			ok = d.later(&t.Name, b)
		case 3:
			t.AgentId, ok = d.share(b)
		case 4:
			d.resRaw = append(d.resRaw, b)
		case 5:
			ok = t.Command == nil && d.command(&blk.command, b)
			t.Command = &blk.command
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	if len(d.resRaw) > 0 {
		if res.same(d.resRaw) {
			t.Resources = res.prev
			res.misses = 0
		} else {
			res.misses++
			d.resPtrs = d.resPtrs[:0]
			for _, b := range d.resRaw {
				r := res.next(len(d.resRaw))
				d.resPtrs = append(d.resPtrs, r)
				if !d.resource(r, b) {
					return false
				}
			}
			t.Resources = res.list(d.resPtrs)
			res.prev = t.Resources
			// The encoded bytes stay valid while the entry is decoded.
			res.prevRaw = append(res.prevRaw[:0], d.resRaw...)
		}
	}
	d.cut(true)
	return true
}

// resource decodes a plain scalar resource.
func (d *cmdDecoder) resource(r *agorav1.Resource, body []byte) bool {
	for len(body) > 0 {
		num, typ, b, v, rest, ok := field(body)
		if !ok {
			return false
		}
		body = rest
		switch {
		case num == 1 && typ == protowire.BytesType:
			r.Name, ok = d.share(b)
		case num == 2 && typ == protowire.Fixed64Type:
			r.Scalar = math.Float64frombits(v)
		case num == 5 && typ == protowire.BytesType:
			r.Role, ok = d.share(b)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

// command decodes a command without environment.
func (d *cmdDecoder) command(c *agorav1.CommandInfo, body []byte) bool {
	for len(body) > 0 {
		num, typ, b, _, rest, ok := field(body)
		if !ok || num != 1 || typ != protowire.BytesType {
			return false
		}
		body = rest
		if c.Value, ok = d.share(b); !ok {
			return false
		}
	}
	return true
}

// statusUpdateBlock is one element of a batch's slab of updates.
type statusUpdateBlock struct {
	update agorav1.StatusUpdateCommand
	now    timestamppb.Timestamp
}

func (d *cmdDecoder) statusBatch(body []byte) (*agorav1.StatusUpdateBatchCommand, bool) {
	nupdates, nstatuses, ok := count(body, 1, 2)
	if !ok {
		return nil, false
	}
	c := &agorav1.StatusUpdateBatchCommand{}
	var (
		updates  []statusUpdateBlock
		statuses []agorav1.TaskStatus
		ptrs     []*agorav1.TaskStatus
	)
	if nupdates > 0 {
		updates = make([]statusUpdateBlock, nupdates)
		c.Updates = make([]*agorav1.StatusUpdateCommand, 0, nupdates)
	}
	if nstatuses > 0 {
		statuses = make([]agorav1.TaskStatus, nstatuses)
		ptrs = make([]*agorav1.TaskStatus, nstatuses)
	}
	for len(body) > 0 {
		num, typ, b, _, rest, ok := field(body)
		if !ok || num != 1 || typ != protowire.BytesType {
			return nil, false
		}
		body = rest
		blk := &updates[len(c.Updates)]
		c.Updates = append(c.Updates, &blk.update)
		used, ok := d.statusUpdate(blk, b, statuses, ptrs)
		if !ok {
			return nil, false
		}
		statuses, ptrs = statuses[used:], ptrs[used:]
	}
	return c, true
}

// statusUpdate decodes one agent's update into blk, its statuses into the
// first of statuses and their pointers into the first of ptrs; it returns
// how many statuses it used.
func (d *cmdDecoder) statusUpdate(blk *statusUpdateBlock, body []byte, statuses []agorav1.TaskStatus, ptrs []*agorav1.TaskStatus) (used int, ok bool) {
	u := &blk.update
	for len(body) > 0 {
		num, typ, b, _, rest, ok := field(body)
		if !ok || typ != protowire.BytesType {
			return 0, false
		}
		body = rest
		switch num {
		case 1:
			u.AgentId, ok = d.share(b)
		case 2:
			st := &statuses[used]
			ptrs[used] = st
			used++
			d.statusesLeft = len(statuses) - used + 1
			ok = d.taskStatus(st, b)
		case 3:
			ok = u.Now == nil && timestamp(&blk.now, b)
			u.Now = &blk.now
		default:
			ok = false
		}
		if !ok {
			return 0, false
		}
	}
	if used > 0 {
		u.Statuses = ptrs[:used:used]
	}
	return used, true
}

// stamp returns a timestamp for a status of the batch. Simulated agents
// do not stamp their updates, real ones stamp them all: the slab is
// allocated at the first stamp, for the statuses left.
func (d *cmdDecoder) stamp() *timestamppb.Timestamp {
	if len(d.stamps) == 0 {
		d.stamps = make([]timestamppb.Timestamp, max(d.statusesLeft, 1))
	}
	ts := &d.stamps[0]
	d.stamps = d.stamps[1:]
	return ts
}

func (d *cmdDecoder) taskStatus(st *agorav1.TaskStatus, body []byte) bool {
	d.begin()
	for len(body) > 0 {
		num, typ, b, v, rest, ok := field(body)
		if !ok {
			return false
		}
		body = rest
		switch typ {
		case protowire.BytesType:
			switch num {
			case 1:
				ok = d.later(&st.TaskId, b)
			case 2:
				st.FrameworkId, ok = d.share(b)
			case 3:
				st.AgentId, ok = d.share(b)
			case 5:
				ok = d.later(&st.Uuid, b)
			case 6:
				st.Reason, ok = d.share(b)
			case 7:
				st.Message, ok = d.share(b)
			case 9:
				ok = st.Timestamp == nil
				st.Timestamp = d.stamp()
				ok = ok && timestamp(st.Timestamp, b)
			default:
				ok = false
			}
		case protowire.VarintType:
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
				ok = false
			}
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	d.cut(false)
	return true
}

func (d *cmdDecoder) ackBatch(body []byte) (*agorav1.AcknowledgeBatchCommand, bool) {
	n, _, ok := count(body, 1, 0)
	if !ok {
		return nil, false
	}
	c := &agorav1.AcknowledgeBatchCommand{}
	var acks []agorav1.AcknowledgeCommand
	if n > 0 {
		acks = make([]agorav1.AcknowledgeCommand, n)
		c.Acks = make([]*agorav1.AcknowledgeCommand, 0, n)
	}
	for len(body) > 0 {
		num, typ, b, _, rest, ok := field(body)
		if !ok || num != 1 || typ != protowire.BytesType {
			return nil, false
		}
		body = rest
		a := &acks[len(c.Acks)]
		c.Acks = append(c.Acks, a)
		if !d.ack(a, b) {
			return nil, false
		}
	}
	// Apply keeps none of an acknowledgement's strings: they are cut
	// from one allocation for the whole batch.
	d.mark = 0
	d.cut(false)
	return c, true
}

func (d *cmdDecoder) ack(a *agorav1.AcknowledgeCommand, body []byte) bool {
	d.begin()
	for len(body) > 0 {
		num, typ, b, _, rest, ok := field(body)
		if !ok || typ != protowire.BytesType {
			return false
		}
		body = rest
		switch num {
		case 1:
			a.FrameworkId, ok = d.share(b)
		case 2:
			ok = d.later(&a.TaskId, b)
		case 3:
			ok = d.later(&a.Uuid, b)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

// DecodeAcceptRequest decodes the body of a SchedulerService Accept call
// into m as the leader's hot path: its operations share field numbers and
// messages with AcceptCommand's, and are decoded as an Accept entry's are
// (one slab per operation for its tasks and their resources, the strings
// of a task cut from one allocation), instead of one heap object per
// field. It returns false, leaving m as it was, when it declines (any
// field or shape the entry decoder declines, an unknown field, malformed
// input); the caller then uses proto.Unmarshal, so m always ends equal to
// what proto.Unmarshal makes of b (FuzzDecodeAcceptRequest). m must be
// empty.
func DecodeAcceptRequest(b []byte, m *agorav1.AcceptRequest) bool {
	d, done := borrowDecoder()
	defer done()
	var (
		call   *agorav1.FrameworkCall
		offers []string
		ops    []*agorav1.Operation
		refuse *float64
	)
	for len(b) > 0 {
		num, typ, v, x, rest, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.BytesType && call == nil:
			call = &agorav1.FrameworkCall{}
			ok = frameworkCall(call, v)
		case num == 2 && typ == protowire.BytesType:
			var s string
			s, ok = own(v)
			offers = append(offers, s)
		case num == 3 && typ == protowire.BytesType:
			op := &agorav1.Operation{}
			ops = append(ops, op)
			ok = d.operation(op, v)
		case num == 4 && typ == protowire.Fixed64Type:
			f := math.Float64frombits(x)
			refuse = &f
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	m.Call, m.OfferIds, m.Operations, m.RefuseSeconds = call, offers, ops, refuse
	return true
}

// frameworkCall decodes a FrameworkCall (its two strings).
func frameworkCall(c *agorav1.FrameworkCall, body []byte) bool {
	for len(body) > 0 {
		num, typ, b, _, rest, ok := field(body)
		if !ok || typ != protowire.BytesType {
			return false
		}
		body = rest
		switch num {
		case 1:
			c.FrameworkId, ok = own(b)
		case 2:
			c.StreamToken, ok = own(b)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

// DecodeUpdateStatusRequest decodes the body of an AgentService
// UpdateStatus call into m as DecodeAcceptRequest does an Accept: the call
// is a StatusUpdateCommand without its time (the same field numbers), and
// is decoded as one agent's update of a StatusUpdateBatch entry, its
// statuses from one slab. It returns false, leaving m as it was, when it
// declines (a time, field 3, is no field of the call); m must be empty
// (FuzzDecodeUpdateStatusRequest).
func DecodeUpdateStatusRequest(b []byte, m *agorav1.UpdateStatusRequest) bool {
	n, _, ok := count(b, 2, 0)
	if !ok {
		return false
	}
	d, done := borrowDecoder()
	defer done()
	var statuses []agorav1.TaskStatus
	var ptrs []*agorav1.TaskStatus
	if n > 0 {
		statuses = make([]agorav1.TaskStatus, n)
		ptrs = make([]*agorav1.TaskStatus, n)
	}
	var blk statusUpdateBlock
	if _, ok := d.statusUpdate(&blk, b, statuses, ptrs); !ok || blk.update.Now != nil {
		return false
	}
	m.AgentId, m.Statuses = blk.update.AgentId, blk.update.Statuses
	return true
}
