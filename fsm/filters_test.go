package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestPropertyAddFilters holds addFilters to a naive reference (agent ->
// latest until) and checks that the framework versions it replaced are
// unchanged: their filters are shared, never modified.
func TestPropertyAddFilters(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := emptyState()
		x := newTxn(s, 1)
		x.putFramework(&agorav1.Framework{Id: "f", Info: &agorav1.FrameworkInfo{Name: "n", Roles: []string{"r"}}, StreamToken: "s"})
		want := map[string]int64{}
		var versions []*agorav1.Framework
		var frozen []*agorav1.Framework
		for range rapid.IntRange(1, 30).Draw(rt, "calls") {
			ids := rapid.SliceOf(rapid.SampledFrom([]string{"a0", "a1", "a2", "a3", "a4", "a5"})).Draw(rt, "agents")
			until := int64(rapid.IntRange(0, 9).Draw(rt, "until"))
			x.addFilters("f", ids, &timestamppb.Timestamp{Seconds: until})
			for _, id := range ids {
				if u, ok := want[id]; !ok || until > u {
					want[id] = until
				}
			}
			f, _ := x.framework("f")
			versions = append(versions, f)
			frozen = append(frozen, proto.Clone(f).(*agorav1.Framework))
			got := map[string]int64{}
			for _, flt := range f.GetFilters() {
				got[flt.GetAgentId()] = flt.GetUntil().GetSeconds()
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(f.GetFilters()) {
				rt.Fatalf("filters %v, want %v", f.GetFilters(), want)
			}
			if !slices.IsSortedFunc(f.GetFilters(), compareFilter) {
				rt.Fatalf("filters not sorted: %v", f.GetFilters())
			}
			if f.GetInfo().GetName() != "n" || f.GetStreamToken() != "s" {
				rt.Fatalf("framework fields lost: %v", f)
			}
			for id, u := range want {
				if flt, ok := filterOf(f, id); !ok || flt.GetUntil().GetSeconds() != u {
					rt.Fatalf("filterOf(%s) = %v, %v", id, flt, ok)
				}
			}
			if _, ok := filterOf(f, "zz"); ok {
				rt.Fatal("filterOf finds an agent without a filter")
			}
		}
		for i, v := range versions {
			if !proto.Equal(v, frozen[i]) {
				rt.Fatalf("version %d changed after later writes:\n%v\nwas\n%v", i, v, frozen[i])
			}
		}
	})
}

// TestRestoreSortsFilters: a snapshot written before filters were kept
// sorted restores with them sorted, so that addFilters' binary search and
// filterOf find every one.
func TestRestoreSortsFilters(t *testing.T) {
	s := emptyState()
	x := newTxn(s, 1)
	x.putFramework(&agorav1.Framework{Id: "f", Info: &agorav1.FrameworkInfo{Name: "n", Roles: []string{"r"}}, StreamToken: "s",
		Filters: []*agorav1.OfferFilter{
			{AgentId: "a3", Until: &timestamppb.Timestamp{Seconds: 3}},
			{AgentId: "a1", Until: &timestamppb.Timestamp{Seconds: 1}},
			{AgentId: "a2", Until: &timestamppb.Timestamp{Seconds: 2}},
		}})
	live := &State{index: 1, root: x.t.CommitOnly(), changed: make(chan struct{})}
	restored, err := ReadState(bytes.NewReader(snapshotBytes(t, live)))
	if err != nil {
		t.Fatal(err)
	}
	f, ok := restored.Framework("f")
	if !ok || !slices.IsSortedFunc(f.GetFilters(), compareFilter) || len(f.GetFilters()) != 3 {
		t.Fatalf("restored filters %v, want 3 sorted by agent", f.GetFilters())
	}
	for i, id := range []string{"a1", "a2", "a3"} {
		if flt, ok := filterOf(f, id); !ok || flt.GetUntil().GetSeconds() != int64(i+1) {
			t.Fatalf("filterOf(%s) = %v, %v", id, flt, ok)
		}
	}
}
