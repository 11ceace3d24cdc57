package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

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
	bad := append(append([]byte{}, b...), 9<<3|0, 1)
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
	for _, m := range []*agorav1.AcceptRequest{req, {}, {Call: &agorav1.FrameworkCall{}}, {OfferIds: []string{"a", ""}}} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow agorav1.AcceptRequest
		ok := DecodeAcceptRequest(b, &fast)
		err := proto.Unmarshal(b, &slow)
		if !ok {
			if !proto.Equal(&fast, &agorav1.AcceptRequest{}) {
				t.Fatalf("declined but changed the message: %v", &fast)
			}
			return
		}
		if err != nil {
			t.Fatalf("fast path decoded what proto refuses (%v): %v", err, &fast)
		}
		if !proto.Equal(&fast, &slow) {
			t.Fatalf("fast %v, proto %v", &fast, &slow)
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
