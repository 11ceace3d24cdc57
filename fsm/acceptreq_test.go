package fsm

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// e2eAcceptRequest is the Accept call a framework of the e2e bench makes:
// n tasks on one offer.
func e2eAcceptRequest(k, n int) *agorav1.AcceptRequest {
	acc := e2eAccept(k, n)
	refuse := 5.0
	return &agorav1.AcceptRequest{Call: &agorav1.FrameworkCall{FrameworkId: acc.GetFrameworkId(), StreamToken: "tok"},
		OfferIds: acc.GetOfferIds(), Operations: acc.GetOperations(), RefuseSeconds: &refuse}
}

func TestDecodeAcceptRequest(t *testing.T) {
	req := e2eAcceptRequest(7, 100)
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got agorav1.AcceptRequest
	if !DecodeAcceptRequest(b, &got) {
		t.Fatal("the fast path declined a plain 100-task launch")
	}
	if !proto.Equal(&got, req) {
		t.Fatalf("decoded %v, want %v", &got, req)
	}
	// What it declines it leaves alone: an unknown field (here 9).
	bad := protowire.AppendVarint(protowire.AppendTag(append([]byte{}, b...), 9, protowire.VarintType), 1)
	var m agorav1.AcceptRequest
	if DecodeAcceptRequest(bad, &m) {
		t.Fatal("an unknown field was decoded")
	}
	if !proto.Equal(&m, &agorav1.AcceptRequest{}) {
		t.Fatalf("a declined decode changed the message: %v", &m)
	}
}

// FuzzDecodeAcceptRequest: whenever the fast path decodes a body, it
// decodes it as proto.Unmarshal does (and it never decodes one
// proto.Unmarshal refuses).
func FuzzDecodeAcceptRequest(f *testing.F) {
	req := e2eAcceptRequest(1, 3)
	req.Operations[0].Tasks[1].KillGraceSeconds = 2.5
	req.Operations[0].Tasks[2].Resources[0].Role = "web"
	fuzzRequestDecoder(f, DecodeAcceptRequest, req, &agorav1.AcceptRequest{},
		&agorav1.AcceptRequest{Call: &agorav1.FrameworkCall{}}, &agorav1.AcceptRequest{OfferIds: []string{"a", ""}})
}

// fuzzRequestDecoder checks a request decoder against proto.Unmarshal on
// the seeds and whatever the fuzzer makes of them: a body it decodes, it
// decodes as proto.Unmarshal does; one it declines leaves the message
// empty.
func fuzzRequestDecoder[M any, PM interface {
	*M
	proto.Message
}](f *testing.F, decode func([]byte, PM) bool, seeds ...PM) {
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, slow := PM(new(M)), PM(new(M))
		ok := decode(b, fast)
		err := proto.Unmarshal(b, slow)
		if !ok {
			if !proto.Equal(fast, PM(new(M))) {
				t.Fatalf("declined but changed the message: %v", fast)
			}
			return
		}
		if err != nil {
			t.Fatalf("fast path decoded what proto refuses (%v): %v", err, fast)
		}
		if !proto.Equal(fast, slow) {
			t.Fatalf("fast %v, proto %v", fast, slow)
		}
	})
}

func BenchmarkDecodeAcceptRequest100Tasks(b *testing.B) {
	body, err := proto.Marshal(e2eAcceptRequest(7, 100))
	if err != nil {
		b.Fatal(err)
	}
	for _, which := range []string{"fast", "proto"} {
		b.Run(which, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m agorav1.AcceptRequest
				if which == "fast" {
					if !DecodeAcceptRequest(body, &m) {
						b.Fatal("declined")
					}
				} else if err := proto.Unmarshal(body, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// e2eUpdateStatusRequest is a simulated agent's UpdateStatus call: the
// RUNNING updates of the tasks of acc.
func e2eUpdateStatusRequest(acc *agorav1.AcceptCommand) *agorav1.UpdateStatusRequest {
	u := e2eStatusBatch(acc, 1).GetUpdates()[0]
	return &agorav1.UpdateStatusRequest{AgentId: u.GetAgentId(), Statuses: u.GetStatuses()}
}

func TestDecodeUpdateStatusRequest(t *testing.T) {
	req := e2eUpdateStatusRequest(e2eAccept(3, 100))
	req.Statuses[5].Timestamp = &timestamppb.Timestamp{Seconds: 9, Nanos: 1}
	req.Statuses[6].Reason, req.Statuses[6].Message, req.Statuses[6].ExitCode = "REASON_COMMAND_EXITED", "exited 1", 1
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got agorav1.UpdateStatusRequest
	if !DecodeUpdateStatusRequest(b, &got) {
		t.Fatal("the fast path declined 100 RUNNING updates")
	}
	if !proto.Equal(&got, req) {
		t.Fatalf("decoded %v, want %v", &got, req)
	}
	// A command's time (field 3) is no field of the request: declined.
	withNow := protowire.AppendTag(append([]byte{}, b...), 3, protowire.BytesType)
	withNow = protowire.AppendBytes(withNow, nil)
	var m agorav1.UpdateStatusRequest
	if DecodeUpdateStatusRequest(withNow, &m) || !proto.Equal(&m, &agorav1.UpdateStatusRequest{}) {
		t.Fatalf("field 3 was decoded, or the declined message changed: %v", &m)
	}
}

// FuzzDecodeUpdateStatusRequest is FuzzDecodeAcceptRequest for
// UpdateStatus calls.
func FuzzDecodeUpdateStatusRequest(f *testing.F) {
	req := e2eUpdateStatusRequest(e2eAccept(1, 3))
	req.Statuses[0].Timestamp = &timestamppb.Timestamp{Seconds: 5}
	req.Statuses[1].Healthy, req.Statuses[1].ExitCode = true, -1
	fuzzRequestDecoder(f, DecodeUpdateStatusRequest, req, &agorav1.UpdateStatusRequest{},
		&agorav1.UpdateStatusRequest{AgentId: "a"}, &agorav1.UpdateStatusRequest{Statuses: []*agorav1.TaskStatus{{}}})
}

// TestDecodeSharesEqualResources: tasks whose resources encode alike share
// one decoded list; a task asking for other resources gets its own, and
// the whole decodes as proto.Unmarshal decodes it.
func TestDecodeSharesEqualResources(t *testing.T) {
	acc := e2eAccept(2, 6)
	tasks := acc.GetOperations()[0].GetTasks()
	tasks[3].Resources = []*agorav1.Resource{{Name: "cpus", Scalar: 2}, {Name: "mem", Scalar: 1}}
	tasks[4].Resources = []*agorav1.Resource{{Name: "cpus", Scalar: 2}, {Name: "mem", Scalar: 1}, {Name: "disk", Scalar: 5, Role: "web"}}
	b := encodePayload(t, CmdAccept, acc)
	m, ok := decodeFast(CmdAccept, b)
	if !ok {
		t.Fatal("declined")
	}
	if !proto.Equal(m, acc) {
		t.Fatalf("decoded %v, want %v", m, acc)
	}
	got := m.(*agorav1.AcceptCommand).GetOperations()[0].GetTasks()
	same := func(i, j int) bool { return &got[i].Resources[0] == &got[j].Resources[0] }
	if !same(0, 1) || !same(1, 2) {
		t.Error("tasks 0-2 ask for the same resources but do not share their list")
	}
	if same(2, 3) || same(3, 4) || same(4, 5) {
		t.Error("tasks with other resources than their predecessor share its list")
	}
}
