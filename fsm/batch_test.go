package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// TestBatchReplayIdentical applies a log holding generic Batch entries
// (with refused items) to two FSMs: both reach byte-identical snapshots
// and the same per-item verdicts, and a refused item left no trace.
func TestBatchReplayIdentical(t *testing.T) {
	item := func(typ CommandType, m proto.Message) *agorav1.BatchItem {
		it, err := NewBatchItem(typ, m)
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	type entry struct {
		typ CommandType
		m   proto.Message
	}
	log := []entry{
		{CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Framework: &agorav1.Framework{Id: "f1", Info: &agorav1.FrameworkInfo{Name: "x", Principal: "p"}, StreamToken: "s"}, Now: &timestamppb.Timestamp{Seconds: 1}}},
		{CmdBatch, &agorav1.BatchCommand{Items: []*agorav1.BatchItem{
			item(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "a", Weight: 1}}),
			item(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "b", Weight: -1}}),
			item(CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: "zz"}),
			item(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "c", Weight: 3}}),
			item(CmdSuppress, &agorav1.SuppressCommand{FrameworkId: "f1"}),
			item(CmdRevive, &agorav1.ReviveCommand{FrameworkId: "f9"}),
		}}},
		{CmdBatch, &agorav1.BatchCommand{Items: []*agorav1.BatchItem{
			item(CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: "a"}),
			item(CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: "a"}),
		}}},
	}
	wantCodes := [][]Code{nil, {0, CodeInvalidArgument, CodeNotFound, 0, 0, CodeNotFound}, {0, CodeNotFound}}
	var snaps [][]byte
	for range 2 {
		f := New(Config{})
		for i, e := range log {
			res, err := f.ApplyMessage(uint64(i+1), e.typ, e.m)
			if err != nil {
				t.Fatal(err)
			}
			if res.Err != nil {
				t.Fatalf("entry %d (%s) rejected: %v", i, e.typ, res.Err)
			}
			var codes []Code
			for _, rej := range res.Items {
				var c Code
				if rej != nil {
					c = rej.Code
				}
				codes = append(codes, c)
			}
			if !slices.Equal(codes, wantCodes[i]) {
				t.Fatalf("entry %d verdicts %v, want %v", i, codes, wantCodes[i])
			}
		}
		if _, ok := f.State().Role("b"); ok {
			t.Fatal("refused item's role b was applied")
		}
		if _, ok := f.State().Role("c"); !ok {
			t.Fatal("role c, after a refused item, is missing")
		}
		var b bytes.Buffer
		if err := f.State().Persist(&b); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, b.Bytes())
	}
	if !bytes.Equal(snaps[0], snaps[1]) {
		t.Fatal("two replicas of the same log differ")
	}
}

// TestNewBatchItemRefusesUnbatchable: commands whose outcome depends on
// their entry's index, or that hand ids back, cannot be batched.
func TestNewBatchItemRefusesUnbatchable(t *testing.T) {
	for _, c := range []struct {
		typ CommandType
		m   proto.Message
	}{
		{CmdAccept, &agorav1.AcceptCommand{}},
		{CmdPutRecord, &agorav1.PutRecordCommand{}},
		{CmdOffersCreated, &agorav1.OffersCreatedCommand{}},
		{CmdBatch, &agorav1.BatchCommand{}},
		{CmdSetRole, &agorav1.DeleteRoleCommand{}},
	} {
		if _, err := NewBatchItem(c.typ, c.m); err == nil {
			t.Errorf("NewBatchItem(%s, %T) = nil error", c.typ, c.m)
		}
	}
}

// BenchmarkApplySetRoleBatch is BenchmarkApplySetRole with the roles in
// Batch entries of 64 items: ns/op is per write (b.N counts items), to
// compare with the single-entry path.
func BenchmarkApplySetRoleBatch(b *testing.B) {
	const per = 64
	var entries [][]byte
	for e := range 16 {
		c := &agorav1.BatchCommand{}
		for i := range per {
			it, err := NewBatchItem(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: fmt.Sprintf("role-%d", e*per+i), Weight: 2,
				Guarantee: resourcepb.ToProto("", resources.MustParse("cpus:2;mem:1024"))}})
			if err != nil {
				b.Fatal(err)
			}
			c.Items = append(c.Items, it)
		}
		data, err := Encode(CmdBatch, c)
		if err != nil {
			b.Fatal(err)
		}
		entries = append(entries, data)
	}
	f := New(Config{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += per {
		if res := f.ApplyCommand(uint64(i/per+1), entries[(i/per)%len(entries)]); res.Err != nil || res.Items[0] != nil {
			b.Fatal(res.Err, res.Items)
		}
	}
}
