package fsm

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// diffTrees compares every key and value of two states' trees: primary
// tables (protos by proto.Equal), index tables, usage sums, task epochs
// (present on the same agents; their counters differ by design: a restore
// starts them at 1) and history tables. It returns the first difference.
func diffTrees(a, b *State) error {
	ia, ib := a.root.Root().Iterator(), b.root.Root().Iterator()
	for {
		ka, va, oka := ia.Next()
		kb, vb, okb := ib.Next()
		if !oka || !okb {
			if oka != okb {
				return fmt.Errorf("one tree ends first: %q vs %q", ka, kb)
			}
			return nil
		}
		if !bytes.Equal(ka, kb) {
			return fmt.Errorf("key %q vs %q", ka, kb)
		}
		if err := diffValues(va, vb); err != nil {
			return fmt.Errorf("key %q: %w", ka, err)
		}
	}
}

func diffValues(va, vb interface{}) error {
	switch x := va.(type) {
	case nil:
		if vb != nil {
			return fmt.Errorf("nil vs %T", vb)
		}
	case proto.Message:
		y, ok := vb.(proto.Message)
		if !ok || !proto.Equal(x, y) {
			return fmt.Errorf("%v vs %v", x, vb)
		}
	case *agentUsage:
		y, ok := vb.(*agentUsage)
		if !ok || !x.total.Equal(y.total) || !x.reserved.Equal(y.reserved) || !x.used.Equal(y.used) || !x.offered.Equal(y.offered) {
			return fmt.Errorf("usage %+v vs %+v", x, vb)
		}
	case *frameworkUsage:
		y, ok := vb.(*frameworkUsage)
		if !ok || !equalByRole(x.byRole, y.byRole) || x.tasks != y.tasks {
			return fmt.Errorf("framework usage %+v vs %+v", x, vb)
		}
	case *taskEpoch:
		if _, ok := vb.(*taskEpoch); !ok {
			return fmt.Errorf("task epoch vs %T", vb)
		}
	default:
		if !reflect.DeepEqual(va, vb) {
			return fmt.Errorf("%#v vs %#v", va, vb)
		}
	}
	return nil
}

// withoutZeroUsage drops the derived entries that hold nothing and that
// only the incrementally kept state has: usage entries that are zero (an
// agent or framework whose last reservation, volume, task and offer went
// away; a restore makes entries only for existing agents and for ids that
// something refers to), task epochs of agents without tasks and
// assignment epochs (feed.go).
func withoutZeroUsage(s *State) *State {
	x := newTxn(s, s.index)
	for _, k := range x.keys(uFramework) {
		if v, _ := x.t.Get(k); len(v.(*frameworkUsage).byRole) == 0 && v.(*frameworkUsage).tasks == 0 {
			x.t.Delete(k)
		}
	}
	for _, k := range x.keys(uAgent) {
		u, _ := x.t.Get(k)
		au := u.(*agentUsage)
		if _, isAgent := x.agent(string(k[len(uAgent):])); !isAgent && au.total.IsEmpty() && au.reserved.Total().IsEmpty() && au.used.Total().IsEmpty() && au.offered.Total().IsEmpty() {
			x.t.Delete(k)
		}
	}
	for _, k := range x.keys(uTaskEpoch) {
		if len(x.tasksOnAgent(string(k[len(uTaskEpoch):]))) == 0 {
			x.t.Delete(k) // kept after the agent's last task went; a restore has none
		}
	}
	for _, k := range x.keys(uAssignEpoch) {
		x.t.Delete(k) // made by Apply only: a restored agent's assignment version is nil
	}
	return &State{index: s.index, root: x.t.CommitOnly()}
}

// TestPropertyRestoreEqualsLive drives random logs through an FSM, restores
// its snapshot (the parallel ReadState) and requires the restored tree to
// equal the live one key by key: primary tables, every index, the per-agent
// and per-framework usage sums, task epochs and history. The live tree is
// built by Apply's incremental writers, independently of the restore code.
func TestPropertyRestoreEqualsLive(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		h.t = rt
		g := &gen{t: rt, now: 100}
		for range rapid.IntRange(1, 120).Draw(rt, "len") {
			typ, m := g.command(h.f.State())
			h.apply(typ, m)
		}
		live := h.f.State()
		restored, err := ReadState(bytes.NewReader(snapshotBytes(rt, live)))
		if err != nil {
			rt.Fatalf("restore: %v", err)
		}
		if err := restored.CheckInvariants(); err != nil {
			rt.Fatalf("restored: %v", err)
		}
		if err := diffTrees(withoutZeroUsage(live), withoutZeroUsage(restored)); err != nil {
			rt.Fatalf("restored tree differs from the live one: %v\n%s", err, dump(live))
		}
	})
}

// TestRestoreAtScale restores a synthetic state spanning many chunks and
// checks it record by record against its snapshot, its sums and indexes.
func TestRestoreAtScale(t *testing.T) {
	const tasks = 20_000 // 10 chunks
	raw := syntheticSnapshot(tasks)
	s, err := ReadState(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBytes(t, s); !bytes.Equal(got, raw) {
		t.Fatal("re-persisted snapshot differs from the one restored")
	}
	if n := len(s.Tasks()); n != tasks {
		t.Fatalf("%d tasks, want %d", n, tasks)
	}
	for a := range tasks / 100 {
		id := SyntheticAgentID(a)
		on := s.TasksByAgent(id)
		if len(on) != 100 {
			t.Fatalf("agent %s has %d tasks, want 100", id, len(on))
		}
		u := s.AgentUsage(id)
		if got, want := u.Used[""], resources.MustParse("cpus:50;mem:51200"); !got.Equal(want) {
			t.Fatalf("agent %s uses %s, want %s", id, got, want)
		}
	}
	if got := s.FrameworkAllocated("fw-1")["web"]; !got.Equal(resources.MustParse("cpus:10000;mem:10240000")) {
		t.Fatalf("fw-1 allocated %s", got)
	}
	var epochs int
	s.EachAgentVersion(func(_ *agorav1.Agent, _, tasks any) {
		if tasks != nil {
			epochs++
		}
	})
	if epochs != tasks/100 {
		t.Fatalf("%d agents with a task epoch, want %d", epochs, tasks/100)
	}
}

// TestRestoreTruncated cuts a multi-chunk snapshot at many points: every
// cut must fail cleanly (no hang, no partial state).
func TestRestoreTruncated(t *testing.T) {
	raw := syntheticSnapshot(5_000)
	for _, cut := range []int{len(raw) - 1, len(raw) - 40, len(raw) / 2, len(raw) / 3, 20} {
		if _, err := ReadState(bytes.NewReader(raw[:cut])); err == nil {
			t.Fatalf("cut at %d of %d: restore succeeded", cut, len(raw))
		}
	}
	// An unknown record type in the middle fails the restore too.
	bad := bytes.Clone(raw)
	hn, hk := uvarint(bad)
	at := hk + int(hn) // the first record after the header
	_, k := uvarint(bad[at:])
	bad[at+k] = 200
	if _, err := ReadState(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "unknown record type 200") {
		t.Fatalf("restore of a record of unknown type: %v", err)
	}
}

// TestMilli pins milli to the resources package's rounding.
func TestMilli(t *testing.T) {
	for _, v := range []float64{0, -1, 0.0004, 0.0005, 0.5, 1, 1.2345, 64, 262144, 1e12, 2e12, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got, want := milli(v), resources.Scalar("x", v).Milli("x"); got != want {
			t.Errorf("milli(%v) = %d, want %d", v, got, want)
		}
	}
}
