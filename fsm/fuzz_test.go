package fsm

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// seedLog is a small valid history: two agents, two frameworks, offers, a
// reservation, a volume and tasks in several states.
func seedLog(t tb) [][]byte {
	cmds := []struct {
		typ CommandType
		m   proto.Message
	}{
		{CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "web", Weight: 2}}},
		{CmdRegisterAgent, mustParse[*agorav1.RegisterAgentCommand](t, `agent: {id: "a1" hostname: "h" address: "x:1" @resources(cpus:4;mem:4096;disk:1000;ports:[1-10])} now: {seconds: 1}`)},
		{CmdRegisterAgent, mustParse[*agorav1.RegisterAgentCommand](t, `agent: {id: "a2" hostname: "h" address: "x:2" @resources(cpus:4;mem:4096)} now: {seconds: 1}`)},
		{CmdSubscribeFramework, mustParse[*agorav1.SubscribeFrameworkCommand](t, `framework: {id: "f1" info: {name: "n" roles: ["web"] capabilities: [CAPABILITY_PARTITION_AWARE]} stream_token: "s"} now: {seconds: 1}`)},
		{CmdSubscribeFramework, mustParse[*agorav1.SubscribeFrameworkCommand](t, `framework: {id: "f2" info: {name: "n" roles: ["web", "*"] failover_timeout_seconds: 5} stream_token: "s"} now: {seconds: 1}`)},
		{CmdOffersCreated, mustParse[*agorav1.OffersCreatedCommand](t, `now: {seconds: 2} offers: {id: "o1" framework_id: "f1" agent_id: "a1" role: "web" @resources(cpus:2;mem:2048;disk:1000;ports:[1-5]) expires_at: {seconds: 100}} offers: {id: "o2" framework_id: "f2" agent_id: "a2" role: "*" @resources(cpus:2) expires_at: {seconds: 100}}`)},
		{CmdAccept, mustParse[*agorav1.AcceptCommand](t, `framework_id: "f1" offer_ids: ["o1"] now: {seconds: 3}
			operations: {type: OPERATION_TYPE_RESERVE @resources[web](disk:500)}
			operations: {type: OPERATION_TYPE_CREATE volumes: {id: "v1" size_mib: 100 container_path: "d"}}
			operations: {type: OPERATION_TYPE_LAUNCH tasks: {task_id: "t1" @resources(cpus:1;ports:[1-1]) command: {value: "x"} volume_ids: ["v1"]}}
			operations: {type: OPERATION_TYPE_LAUNCH_GROUP tasks: {task_id: "t2" @resources(cpus:0.5) command: {value: "x"}}}`)},
		{CmdStatusUpdate, mustParse[*agorav1.StatusUpdateCommand](t, `agent_id: "a1" now: {seconds: 4} statuses: {task_id: "t1" framework_id: "f1" state: TASK_STATE_RUNNING uuid: "u1"}`)},
		{CmdOffersCreated, mustParse[*agorav1.OffersCreatedCommand](t, `now: {seconds: 5} offers: {id: "o3" framework_id: "f1" agent_id: "a1" role: "web" @resources(cpus:0.5) expires_at: {seconds: 100}}`)},
	}
	var log [][]byte
	for _, c := range cmds {
		b, err := Encode(c.typ, c.m)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		log = append(log, b)
	}
	return log
}

func mustParse[T proto.Message](t tb, text string) T {
	var zero T
	m := zero.ProtoReflect().New().Interface().(T)
	if err := unmarshalText(expand(t, text), m); err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	return m
}

// FuzzDecode: Decode never panics, and whatever it accepts re-encodes to an
// entry that decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, b := range seedLog(f) {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x80 | 0x7f, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, m, err := Decode(b)
		if err != nil || m == nil {
			return
		}
		again, err := Encode(typ, m)
		if err != nil {
			t.Fatalf("re-encode %s: %v", typ, err)
		}
		_, m2, err := Decode(again)
		if err != nil || !proto.Equal(m, m2) {
			t.Fatalf("round trip of %s: %v", typ, err)
		}
	})
}

// FuzzApply: applying any decodable entry to a populated state never
// panics, keeps the invariants, changes nothing when rejected, and leaves a
// state whose snapshot restores byte for byte.
func FuzzApply(f *testing.F) {
	log := seedLog(f)
	for _, b := range log {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, m, err := Decode(b)
		if err != nil || m == nil {
			return
		}
		h := newHarness(t)
		for i, e := range log {
			h.f.ApplyCommand(uint64(i+1), e)
		}
		h.index = uint64(len(log))
		h.apply(typ, m) // checks invariants and no-change on rejection
		snap := snapshotBytes(t, h.f.State())
		g := New(Config{})
		if err := g.Restore(nopCloser{bytes.NewReader(snap)}); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(t, g.State()), snap) {
			t.Fatalf("restore round trip differs")
		}
	})
}

func TestDecodeErrors(t *testing.T) {
	if _, _, err := Decode(nil); err == nil {
		t.Fatal("empty entry decoded")
	}
	if _, _, err := Decode([]byte{0x7f}); err == nil {
		t.Fatal("unknown type without IgnoreUnknown decoded")
	}
	typ, m, err := Decode([]byte{0xff, 1, 2, 3})
	if err != nil || m != nil || typ != 0xff {
		t.Fatalf("unknown type with IgnoreUnknown: %v %v %v", typ, m, err)
	}
	if _, _, err := Decode([]byte{byte(CmdSetRole), 0xff}); err == nil {
		t.Fatal("garbage payload decoded")
	}
	// Known type with the IgnoreUnknown bit decodes as that type.
	b, _ := Encode(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "x"}})
	b[0] |= byte(IgnoreUnknown)
	if _, m, err := Decode(b); err != nil || m.(*agorav1.SetRoleCommand).GetRole().GetName() != "x" {
		t.Fatalf("known type with IgnoreUnknown bit: %v %v", m, err)
	}
	if _, err := Encode(CmdSetRole, &agorav1.DeleteRoleCommand{}); err == nil {
		t.Fatal("encode accepted the wrong message type")
	}
}

func TestApplyUnknown(t *testing.T) {
	f := New(Config{})
	res := f.ApplyCommand(7, []byte{0xfe, 1, 2})
	if res.Err != nil || res.Index != 7 || f.State().Index() != 7 {
		t.Fatalf("skip unknown: %+v index %d", res, f.State().Index())
	}
	for _, bad := range [][]byte{{0x7e}, {byte(CmdSetRole), 0xff}, nil} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("entry %x did not panic", bad)
				}
			}()
			f.ApplyCommand(8, bad)
		}()
	}
}

// TestCommandTable: every row has a name, a payload and an apply function,
// the names are unique, and a known type with the IgnoreUnknown bit set
// decodes as the type itself. Numbers may be left unused between blocks
// (drain and maintenance starts at 40), but not inside the first block.
func TestCommandTable(t *testing.T) {
	seen := map[string]bool{}
	for i, c := range commandTable {
		if c.new == nil {
			if i != 0 && i <= int(CmdAgentStopped) {
				t.Errorf("type %d has no row", i)
			}
			continue
		}
		ct := CommandType(i)
		if c.name == "" || c.apply == nil || seen[c.name] {
			t.Errorf("type %d: row %+v", i, c)
		}
		seen[c.name] = true
		if got := ct.String(); got != c.name {
			t.Errorf("type %d String() = %q, want %q", i, got, c.name)
		}
		if want := c.name + "Command"; string(c.new().ProtoReflect().Descriptor().Name()) != want {
			t.Errorf("type %s payload %s, want %s", ct, c.new().ProtoReflect().Descriptor().Name(), want)
		}
		b, err := Encode(ct, c.new())
		if err != nil {
			t.Fatalf("encode %s: %v", ct, err)
		}
		b[0] |= byte(IgnoreUnknown)
		if got, m, err := Decode(b); err != nil || m == nil || got&^IgnoreUnknown != ct {
			t.Errorf("decode %s with the IgnoreUnknown bit: %v %v %v", ct, got, m, err)
		}
	}
	if got := CommandType(0x7e).String(); got != "CommandType(126)" {
		t.Errorf("unknown type prints %q", got)
	}
}
