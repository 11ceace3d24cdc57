package fsm

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// hotTypes are the command types cmdDecoder decodes.
var hotTypes = []CommandType{CmdAccept, CmdStatusUpdateBatch, CmdAcknowledgeBatch}

// checkCmdDecode: where the command decoder accepts the payload body of
// type t, proto.Unmarshal accepts it too and yields an equal message;
// where proto.Unmarshal rejects it, the decoder declines. It reports
// whether the decoder accepted body.
func checkCmdDecode(t interface {
	Helper()
	Fatalf(string, ...any)
}, typ CommandType, body []byte) (accepted bool) {
	t.Helper()
	want := newMessage(typ)
	perr := proto.Unmarshal(body, want)
	got, ok := decodeFast(typ, body)
	if !ok {
		return false
	}
	if perr != nil {
		t.Fatalf("%s: decoder accepted what proto.Unmarshal rejects (%v): %x", typ, perr, body)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s: decoded %v, proto.Unmarshal %v", typ, got, want)
	}
	return true
}

// e2eAccept is an Accept as `agora bench e2e` makes them: one LAUNCH of n
// tasks named by their ids, of cpus and mem, running "true", with the
// leader's times and limits.
func e2eAccept(k, n int) *agorav1.AcceptCommand {
	op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
	agent := fmt.Sprintf("agent-%05d", k%1000)
	for j := range n {
		id := fmt.Sprintf("task-%d-%07d", k, j)
		op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: id, Name: id, AgentId: agent,
			Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 0.01}, {Name: "mem", Scalar: 1}},
			Command:   &agorav1.CommandInfo{Value: "true"}})
	}
	return &agorav1.AcceptCommand{FrameworkId: "fw-0001", OfferIds: []string{fmt.Sprintf("offer-%d", k)},
		Operations: []*agorav1.Operation{op}, Now: &timestamppb.Timestamp{Seconds: 1700000000 + int64(k), Nanos: 12345},
		RefuseUntil: &timestamppb.Timestamp{Seconds: 1700000060 + int64(k), Nanos: 12345},
		Limits:      &agorav1.AcceptLimits{MaxOperations: 100, MaxLaunches: 1000, MaxFrameworkTasks: 100000}}
}

// e2eStatusBatch is a StatusUpdateBatch of agents' RUNNING updates (as
// simulated agents send them) of the tasks of acc, split over agents.
func e2eStatusBatch(acc *agorav1.AcceptCommand, agents int) *agorav1.StatusUpdateBatchCommand {
	c := &agorav1.StatusUpdateBatchCommand{}
	tasks := acc.GetOperations()[0].GetTasks()
	for a := range agents {
		u := &agorav1.StatusUpdateCommand{AgentId: fmt.Sprintf("agent-%05d", a), Now: acc.GetNow()}
		for j := a; j < len(tasks); j += agents {
			u.Statuses = append(u.Statuses, &agorav1.TaskStatus{TaskId: tasks[j].GetTaskId(), FrameworkId: acc.GetFrameworkId(),
				AgentId: u.AgentId, State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: fmt.Sprintf("%08x-aaaa-4bbb-8ccc-%012d", j, j),
				Source: agorav1.StatusSource_STATUS_SOURCE_AGENT})
		}
		c.Updates = append(c.Updates, u)
	}
	return c
}

// e2eAckBatch acknowledges the updates of s.
func e2eAckBatch(s *agorav1.StatusUpdateBatchCommand) *agorav1.AcknowledgeBatchCommand {
	c := &agorav1.AcknowledgeBatchCommand{}
	for _, u := range s.GetUpdates() {
		for _, st := range u.GetStatuses() {
			c.Acks = append(c.Acks, &agorav1.AcknowledgeCommand{FrameworkId: st.GetFrameworkId(), TaskId: st.GetTaskId(), Uuid: st.GetUuid()})
		}
	}
	return c
}

func encodePayload(t testing.TB, typ CommandType, m proto.Message) []byte {
	t.Helper()
	e, err := Encode(typ, m)
	if err != nil {
		t.Fatal(err)
	}
	return e[1:]
}

// sameString reports whether a and b are one string in memory.
func sameString(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

// TestCmdDecoderRealistic: the commands of `agora bench e2e` decode
// without proto.Unmarshal, equal to what it gives, with their repeated
// strings held once per entry.
func TestCmdDecoderRealistic(t *testing.T) {
	acc := e2eAccept(7, 100)
	st := e2eStatusBatch(acc, 3)
	ack := e2eAckBatch(st)
	// Real agents stamp their updates, with reasons and messages.
	stamped := proto.Clone(st).(*agorav1.StatusUpdateBatchCommand)
	for _, u := range stamped.GetUpdates() {
		for i, s := range u.GetStatuses() {
			s.Timestamp = &timestamppb.Timestamp{Seconds: 1700000000 + int64(i), Nanos: int32(i)}
			s.State, s.Reason, s.Message, s.ExitCode = agorav1.TaskState_TASK_STATE_FINISHED, "REASON_COMMAND_EXITED", "exited with status 0", 0
		}
	}
	for _, c := range []struct {
		typ CommandType
		m   proto.Message
	}{{CmdAccept, acc}, {CmdStatusUpdateBatch, st}, {CmdStatusUpdateBatch, stamped}, {CmdAcknowledgeBatch, ack}} {
		if !checkCmdDecode(t, c.typ, encodePayload(t, c.typ, c.m)) {
			t.Fatalf("%s: the decoder declined the common shape", c.typ)
		}
	}

	m, _ := decodeFast(CmdAccept, encodePayload(t, CmdAccept, acc))
	tasks := m.(*agorav1.AcceptCommand).GetOperations()[0].GetTasks()
	first := tasks[0]
	for _, ti := range tasks {
		if !sameString(ti.GetName(), ti.GetTaskId()) {
			t.Fatalf("task %s: name and id are two strings", ti.GetTaskId())
		}
		if !sameString(ti.GetAgentId(), first.GetAgentId()) || !sameString(ti.GetCommand().GetValue(), first.GetCommand().GetValue()) ||
			!sameString(ti.GetResources()[0].GetName(), first.GetResources()[0].GetName()) ||
			!sameString(ti.GetResources()[1].GetName(), first.GetResources()[1].GetName()) {
			t.Fatalf("task %s: agent id, command or resource names not shared with task %s", ti.GetTaskId(), first.GetTaskId())
		}
	}

	m, _ = decodeFast(CmdStatusUpdateBatch, encodePayload(t, CmdStatusUpdateBatch, st))
	for _, u := range m.(*agorav1.StatusUpdateBatchCommand).GetUpdates() {
		for _, s := range u.GetStatuses() {
			if !sameString(s.GetAgentId(), u.GetAgentId()) || !sameString(s.GetFrameworkId(), tasksFid(m)) {
				t.Fatalf("status of %s: agent or framework id not shared", s.GetTaskId())
			}
		}
	}

	m, _ = decodeFast(CmdAcknowledgeBatch, encodePayload(t, CmdAcknowledgeBatch, ack))
	acks := m.(*agorav1.AcknowledgeBatchCommand).GetAcks()
	for _, a := range acks {
		if !sameString(a.GetFrameworkId(), acks[0].GetFrameworkId()) {
			t.Fatalf("ack of %s: framework id not shared", a.GetTaskId())
		}
	}
}

// tasksFid is the framework id of the first status of a status batch.
func tasksFid(m proto.Message) string {
	return m.(*agorav1.StatusUpdateBatchCommand).GetUpdates()[0].GetStatuses()[0].GetFrameworkId()
}

// TestCmdDecoderSlabsIndependent: the messages cut from one slab do not
// share their lists: appending to one leaves its neighbour as it was.
func TestCmdDecoderSlabsIndependent(t *testing.T) {
	m, ok := decodeFast(CmdAccept, encodePayload(t, CmdAccept, e2eAccept(1, 3)))
	if !ok {
		t.Fatal("declined")
	}
	tasks := m.(*agorav1.AcceptCommand).GetOperations()[0].GetTasks()
	want := proto.Clone(tasks[1])
	tasks[0].Resources = append(tasks[0].Resources, &agorav1.Resource{Name: "disk", Scalar: 9})
	if !proto.Equal(tasks[1], want) {
		t.Fatalf("appending to task 0 changed task 1: %v, want %v", tasks[1], want)
	}

	m, ok = decodeFast(CmdStatusUpdateBatch, encodePayload(t, CmdStatusUpdateBatch, e2eStatusBatch(e2eAccept(1, 4), 2)))
	if !ok {
		t.Fatal("declined")
	}
	ups := m.(*agorav1.StatusUpdateBatchCommand).GetUpdates()
	wantU := proto.Clone(ups[1])
	ups[0].Statuses = append(ups[0].Statuses, &agorav1.TaskStatus{TaskId: "intruder"})
	if !proto.Equal(ups[1], wantU) {
		t.Fatalf("appending to update 0 changed update 1: %v, want %v", ups[1], wantU)
	}
}

// placeholder is replaced, in an encoded command, by invalidUTF8 (of the
// same length): proto.Marshal refuses to write invalid UTF-8 itself.
const placeholder, invalidUTF8 = "ZQZQ", "\xffQ\xfeQ"

// TestCmdDecoderInvalidUTF8: a string that is not UTF-8, in any string
// field the decoder handles (those it shares and those it cuts), fails
// Decode as proto.Unmarshal fails, and the decoder declines it.
func TestCmdDecoderInvalidUTF8(t *testing.T) {
	type mutation struct {
		name string
		typ  CommandType
		set  func(m proto.Message)
	}
	acc := func(m proto.Message) *agorav1.AcceptCommand { return m.(*agorav1.AcceptCommand) }
	task := func(m proto.Message, i int) *agorav1.TaskInfo { return acc(m).GetOperations()[0].GetTasks()[i] }
	status := func(m proto.Message) *agorav1.TaskStatus {
		return m.(*agorav1.StatusUpdateBatchCommand).GetUpdates()[1].GetStatuses()[1]
	}
	ack := func(m proto.Message) *agorav1.AcknowledgeCommand {
		return m.(*agorav1.AcknowledgeBatchCommand).GetAcks()[2]
	}
	muts := []mutation{
		{"framework id", CmdAccept, func(m proto.Message) { acc(m).FrameworkId = placeholder }},
		{"offer id", CmdAccept, func(m proto.Message) { acc(m).OfferIds[0] = placeholder }},
		{"id", CmdAccept, func(m proto.Message) { acc(m).Ids = []string{"a", placeholder} }},
		{"task id", CmdAccept, func(m proto.Message) { task(m, 1).TaskId = placeholder }},
		{"task name", CmdAccept, func(m proto.Message) { task(m, 1).Name = placeholder }},
		{"task agent", CmdAccept, func(m proto.Message) { task(m, 1).AgentId = placeholder }},
		{"resource name", CmdAccept, func(m proto.Message) { task(m, 2).Resources[1].Name = placeholder }},
		{"resource role", CmdAccept, func(m proto.Message) { task(m, 2).Resources[0].Role = placeholder }},
		{"command", CmdAccept, func(m proto.Message) { task(m, 0).Command.Value = placeholder }},
		{"update agent", CmdStatusUpdateBatch, func(m proto.Message) {
			m.(*agorav1.StatusUpdateBatchCommand).GetUpdates()[0].AgentId = placeholder
		}},
		{"status task id", CmdStatusUpdateBatch, func(m proto.Message) { status(m).TaskId = placeholder }},
		{"status framework", CmdStatusUpdateBatch, func(m proto.Message) { status(m).FrameworkId = placeholder }},
		{"status agent", CmdStatusUpdateBatch, func(m proto.Message) { status(m).AgentId = placeholder }},
		{"status uuid", CmdStatusUpdateBatch, func(m proto.Message) { status(m).Uuid = placeholder }},
		{"status reason", CmdStatusUpdateBatch, func(m proto.Message) { status(m).Reason = placeholder }},
		{"status message", CmdStatusUpdateBatch, func(m proto.Message) { status(m).Message = placeholder }},
		{"ack framework", CmdAcknowledgeBatch, func(m proto.Message) { ack(m).FrameworkId = placeholder }},
		{"ack task", CmdAcknowledgeBatch, func(m proto.Message) { ack(m).TaskId = placeholder }},
		{"ack uuid", CmdAcknowledgeBatch, func(m proto.Message) { ack(m).Uuid = placeholder }},
	}
	for _, mu := range muts {
		t.Run(mu.name, func(t *testing.T) {
			a := e2eAccept(3, 4)
			var m proto.Message
			switch mu.typ {
			case CmdAccept:
				m = a
			case CmdStatusUpdateBatch:
				m = e2eStatusBatch(a, 2)
			default:
				m = e2eAckBatch(e2eStatusBatch(a, 2))
			}
			mu.set(m)
			good := encodePayload(t, mu.typ, m)
			if !checkCmdDecode(t, mu.typ, good) {
				t.Fatal("the decoder declined the valid command")
			}
			if bytes.Count(good, []byte(placeholder)) != 1 {
				t.Fatalf("placeholder not found once in %x", good)
			}
			bad := bytes.Replace(good, []byte(placeholder), []byte(invalidUTF8), 1)
			if _, ok := decodeFast(mu.typ, bad); ok {
				t.Fatal("the decoder accepted invalid UTF-8")
			}
			if _, _, err := Decode(append([]byte{byte(mu.typ)}, bad...)); err == nil {
				t.Fatal("Decode accepted invalid UTF-8")
			}
		})
	}
}

var sampleStrings = []string{"", "a", "fw-1", "agent-00001", "task-0000001", "cpus", "mem", "*", "true", "é", "x\x00y"}

func genStr(t *rapid.T, label string) string { return rapid.SampledFrom(sampleStrings).Draw(t, label) }

func genTS(t *rapid.T, label string) *timestamppb.Timestamp {
	if !rapid.Bool().Draw(t, label+"?") {
		return nil
	}
	return &timestamppb.Timestamp{Seconds: rapid.Int64().Draw(t, label+"s"), Nanos: rapid.Int32().Draw(t, label+"n")}
}

// genAccept returns a random Accept and whether it has the shape the
// decoder must accept (plain scalar resources, commands without
// environment, no volume ids, operations of tasks only).
func genAccept(t *rapid.T) (*agorav1.AcceptCommand, bool) {
	common := true
	c := &agorav1.AcceptCommand{FrameworkId: genStr(t, "fid"), Now: genTS(t, "now"), RefuseUntil: genTS(t, "until")}
	for range rapid.IntRange(0, 2).Draw(t, "offers") {
		c.OfferIds = append(c.OfferIds, genStr(t, "oid"))
	}
	for range rapid.IntRange(0, 2).Draw(t, "ids") {
		c.Ids = append(c.Ids, genStr(t, "id"))
	}
	if rapid.Bool().Draw(t, "limits?") {
		c.Limits = &agorav1.AcceptLimits{MaxOperations: rapid.Uint32().Draw(t, "maxops"), MaxLaunches: rapid.Uint32().Draw(t, "maxl"),
			MaxFrameworkTasks: rapid.Uint32().Draw(t, "maxft")}
	}
	for range rapid.IntRange(0, 2).Draw(t, "ops") {
		op := &agorav1.Operation{Type: agorav1.OperationType(rapid.Int32Range(-1, 7).Draw(t, "optype"))}
		switch rapid.IntRange(0, 5).Draw(t, "opextra") {
		case 0:
			op.Resources = []*agorav1.Resource{{Name: "disk", Scalar: 1, Role: "r"}}
			common = false
		case 1:
			op.Labels = map[string]string{"k": "v"}
			common = false
		case 2:
			op.Volumes = []*agorav1.VolumeInfo{{Id: "v"}}
			common = false
		}
		for range rapid.IntRange(0, 4).Draw(t, "tasks") {
			ti := &agorav1.TaskInfo{TaskId: genStr(t, "tid"), AgentId: genStr(t, "aid"), KillGraceSeconds: rapid.Float64().Draw(t, "grace")}
			ti.Name = ti.TaskId
			if rapid.Bool().Draw(t, "othername") {
				ti.Name = genStr(t, "name")
			}
			for i := range rapid.IntRange(0, 3).Draw(t, "resources") {
				r := &agorav1.Resource{Name: genStr(t, "rname"), Scalar: rapid.Float64().Draw(t, "scalar"), Role: genStr(t, "rrole")}
				switch rapid.IntRange(0, 8).Draw(t, "rkind") {
				case 0:
					r.Ranges = []*agorav1.Range{{Begin: uint64(i), End: uint64(i + 10)}}
					common = false
				case 1:
					r.Set = []string{genStr(t, "set")}
					common = false
				case 2:
					r.Volume = &agorav1.ResourceVolume{Id: "v"}
					common = false
				case 3:
					r.Reservation = &agorav1.ResourceReservation{Id: "res"}
					common = false
				}
				ti.Resources = append(ti.Resources, r)
			}
			if rapid.Bool().Draw(t, "command?") {
				ti.Command = &agorav1.CommandInfo{Value: genStr(t, "cmd")}
				if rapid.IntRange(0, 4).Draw(t, "env?") == 0 {
					ti.Command.Environment = map[string]string{"K": "V"}
					common = false
				}
			}
			if rapid.IntRange(0, 4).Draw(t, "volumes?") == 0 {
				ti.VolumeIds = []string{genStr(t, "vid")}
				common = false
			}
			op.Tasks = append(op.Tasks, ti)
		}
		c.Operations = append(c.Operations, op)
	}
	return c, common
}

func genStatusBatch(t *rapid.T) *agorav1.StatusUpdateBatchCommand {
	c := &agorav1.StatusUpdateBatchCommand{}
	for range rapid.IntRange(0, 3).Draw(t, "updates") {
		u := &agorav1.StatusUpdateCommand{AgentId: genStr(t, "aid"), Now: genTS(t, "now")}
		for range rapid.IntRange(0, 3).Draw(t, "statuses") {
			u.Statuses = append(u.Statuses, &agorav1.TaskStatus{TaskId: genStr(t, "tid"), FrameworkId: genStr(t, "fid"), AgentId: genStr(t, "said"),
				State: agorav1.TaskState(rapid.Int32Range(-1, 15).Draw(t, "state")), Uuid: genStr(t, "uuid"), Reason: genStr(t, "reason"),
				Message: genStr(t, "msg"), Source: agorav1.StatusSource(rapid.Int32Range(-1, 4).Draw(t, "src")), Timestamp: genTS(t, "stamp"),
				ExitCode: rapid.Int32().Draw(t, "exit"), Healthy: rapid.Bool().Draw(t, "healthy")})
		}
		c.Updates = append(c.Updates, u)
	}
	return c
}

func genAckBatch(t *rapid.T) *agorav1.AcknowledgeBatchCommand {
	c := &agorav1.AcknowledgeBatchCommand{}
	for range rapid.IntRange(0, 4).Draw(t, "acks") {
		c.Acks = append(c.Acks, &agorav1.AcknowledgeCommand{FrameworkId: genStr(t, "fid"), TaskId: genStr(t, "tid"), Uuid: genStr(t, "uuid")})
	}
	return c
}

// genHot returns a random command of a hot type and whether the decoder
// must accept it.
func genHot(t *rapid.T, typ CommandType) (proto.Message, bool) {
	switch typ {
	case CmdAccept:
		return genAccept(t)
	case CmdStatusUpdateBatch:
		return genStatusBatch(t), true
	default:
		return genAckBatch(t), true
	}
}

// TestCmdDecoderMatchesProto: on random commands of the hot types, on two
// encodings concatenated (which proto merges: repeated fields append,
// scalars and strings take the last value, messages merge) and on
// truncated or corrupted encodings, the decoder either declines or yields
// what proto.Unmarshal yields; and it accepts the common shape.
func TestCmdDecoderMatchesProto(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		typ := rapid.SampledFrom(hotTypes).Draw(rt, "type")
		m, common := genHot(rt, typ)
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			rt.Fatal(err)
		}
		if accepted := checkCmdDecode(rt, typ, body); common && !accepted {
			rt.Fatalf("%s: the decoder declined a command of the common shape: %v", typ, m)
		}
		other, _ := genHot(rt, typ)
		more, _ := proto.Marshal(other)
		checkCmdDecode(rt, typ, append(append([]byte{}, body...), more...))
		if len(body) > 0 {
			cut := rapid.IntRange(0, len(body)-1).Draw(rt, "cut")
			checkCmdDecode(rt, typ, body[:cut])
			flipped := append([]byte{}, body...)
			flipped[cut] ^= byte(rapid.IntRange(1, 255).Draw(rt, "flip"))
			checkCmdDecode(rt, typ, flipped)
		}
	})
}

// FuzzDecodeCommand: on any entry of a hot type (the first byte picks the
// type and the ignore-unknown bit), Decode with the command decoder and
// Decode with proto.Unmarshal alone both fail, or give equal messages.
func FuzzDecodeCommand(f *testing.F) {
	acc := e2eAccept(1, 3)
	acc.Ids = []string{"id-1"}
	acc.Operations[0].Tasks[1].KillGraceSeconds = 2.5
	acc.Operations[0].Tasks[2].Resources[0].Role = "web"
	st := e2eStatusBatch(acc, 2)
	st.Updates[0].Statuses[0].Timestamp = &timestamppb.Timestamp{Seconds: 5}
	st.Updates[0].Statuses[0].Reason, st.Updates[0].Statuses[0].Message = "REASON_COMMAND_EXITED", "exited 0"
	st.Updates[1].Statuses[0].ExitCode, st.Updates[1].Statuses[0].Healthy = -1, true
	for i, m := range []proto.Message{acc, st, e2eAckBatch(st)} {
		e := encodePayload(f, hotTypes[i], m)
		f.Add(append([]byte{byte(i)}, e...))
		f.Add(append([]byte{byte(i) | 0x80}, e...))
	}
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		e := append([]byte{byte(hotTypes[int(b[0]&^0x80)%len(hotTypes)]) | b[0]&0x80}, b[1:]...)
		ft, fm, ferr := decode(e, true)
		pt, pm, perr := decode(e, false)
		if ft != pt || (ferr == nil) != (perr == nil) {
			t.Fatalf("fast: %v %v, proto: %v %v", ft, ferr, pt, perr)
		}
		if perr == nil && !proto.Equal(fm, pm) {
			t.Fatalf("fast decoded %v, proto %v", fm, pm)
		}
	})
}

// TestDecodedCommandNotRetained: Apply keeps no pointer into the decoded
// hot commands, which the decoder allocates in slabs: overwriting every
// field of a command after it was applied leaves the state unchanged.
func TestDecodedCommandNotRetained(t *testing.T) {
	f := New(Config{})
	index := uint64(0)
	must := func(typ CommandType, m proto.Message) {
		t.Helper()
		index++
		res, err := f.ApplyMessage(index, typ, m)
		if err != nil || res.Err != nil {
			t.Fatalf("%s: %v %v", typ, err, res.Err)
		}
	}
	acc := e2eAccept(0, 20)
	agent := acc.GetOperations()[0].GetTasks()[0].GetAgentId()
	now := &timestamppb.Timestamp{Seconds: 1}
	must(CmdRegisterAgent, &agorav1.RegisterAgentCommand{Agent: &agorav1.Agent{Id: agent, Hostname: "h", Address: "x:1",
		Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 8}, {Name: "mem", Scalar: 8192}}}, Now: now})
	must(CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Framework: &agorav1.Framework{Id: acc.GetFrameworkId(),
		Info: &agorav1.FrameworkInfo{Name: "fw", Principal: "p"}, StreamToken: "s"}, Now: now})
	must(CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: now, Offers: []*agorav1.Offer{{Id: acc.GetOfferIds()[0],
		FrameworkId: acc.GetFrameworkId(), AgentId: agent, Role: "*",
		Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 8}, {Name: "mem", Scalar: 8192}}}}})
	st := e2eStatusBatch(acc, 1)
	for _, c := range []struct {
		typ CommandType
		m   proto.Message
	}{{CmdAccept, acc}, {CmdStatusUpdateBatch, st}, {CmdAcknowledgeBatch, e2eAckBatch(st)}} {
		e, err := Encode(c.typ, c.m)
		if err != nil {
			t.Fatal(err)
		}
		typ, m, err := Decode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := decodeFast(typ, e[1:]); !ok {
			t.Fatalf("%s: the decoder declined", typ)
		}
		index++
		x := newTxn(f.State(), index)
		if rej := x.apply(typ, m); rej != nil {
			t.Fatalf("%s: %v", typ, rej)
		}
		for i, rej := range x.items {
			if rej != nil {
				t.Fatalf("%s: item %d: %v", typ, i, rej)
			}
		}
		next := &State{index: index, root: x.t.CommitOnly(), changed: make(chan struct{})}
		before := body(t, next)
		scribble(m.ProtoReflect())
		if proto.Equal(m, c.m) {
			t.Fatalf("%s: scribble changed nothing", typ)
		}
		if after := body(t, next); !bytes.Equal(before, after) {
			t.Fatalf("%s: overwriting the decoded command changed the state", typ)
		}
		// The next command applies to the state this one made.
		f.swap(next)
	}
	if n := len(f.State().Tasks()); n != 20 {
		t.Fatalf("%d tasks, want 20", n)
	}
}

// scribble overwrites every populated field of m, in place, with another
// value: what aliases m's messages sees the change.
func scribble(m protoreflect.Message) {
	var fields []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fields = append(fields, fd)
		return true
	})
	for _, fd := range fields {
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			v.Map().Set(protoreflect.ValueOfString("scribbled").MapKey(), protoreflect.ValueOfString("scribbled"))
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if fd.Message() != nil {
					scribble(l.Get(i).Message())
				} else {
					l.Set(i, other(fd, l.Get(i)))
				}
			}
		case fd.Message() != nil:
			scribble(v.Message())
		default:
			m.Set(fd, other(fd, v))
		}
	}
}

// other returns a value of fd's kind different from v.
func other(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(v.String() + "~scribbled")
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(!v.Bool())
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(v.Enum() + 1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(v.Int()) + 1)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(v.Int() + 1)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(v.Uint()) + 1)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(v.Uint() + 1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(v.Float() + 1)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(v.Float()) + 1)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(append(append([]byte{}, v.Bytes()...), '~'))
	}
	panic(fmt.Sprintf("scribble: kind %v", fd.Kind()))
}

// The decode benchmarks time Decode of the hot entries of `agora bench
// e2e` with the command decoder (fast) and with proto.Unmarshal alone
// (proto), as before it:
//
//	go test ./fsm -run '^$' -bench 'BenchmarkDecode(Accept100Tasks|StatusBatch|AckBatch)' -benchmem
func benchDecode(b *testing.B, typ CommandType, m proto.Message) {
	e, err := Encode(typ, m)
	if err != nil {
		b.Fatal(err)
	}
	for _, fast := range []bool{false, true} {
		name := "proto"
		if fast {
			name = "fast"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(e)))
			for range b.N {
				if _, _, err := decode(e, fast); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeAccept100Tasks: an Accept launching 100 tasks.
func BenchmarkDecodeAccept100Tasks(b *testing.B) {
	benchDecode(b, CmdAccept, e2eAccept(42, 100))
}

// BenchmarkDecodeStatusBatch: the RUNNING updates of 100 tasks from 10
// agents in one StatusUpdateBatch.
func BenchmarkDecodeStatusBatch(b *testing.B) {
	benchDecode(b, CmdStatusUpdateBatch, e2eStatusBatch(e2eAccept(42, 100), 10))
}

// BenchmarkDecodeAckBatch: the acknowledgements of 100 updates in one
// AcknowledgeBatch.
func BenchmarkDecodeAckBatch(b *testing.B) {
	benchDecode(b, CmdAcknowledgeBatch, e2eAckBatch(e2eStatusBatch(e2eAccept(42, 100), 10)))
}
