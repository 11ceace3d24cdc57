package fsm

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// A framework's offer filters (one per agent it declined, sorted by agent
// id) number up to one per agent: 10,000 on a large cluster. A framework
// write that deep-copied them at every Decline and Accept cost O(agents)
// allocations each, the larger part of an e2e run's CPU at 10,000 agents.
// Filters are immutable once stored, like every stored proto: the copies
// below share them, and a filter that changes is replaced.

var frameworkFilters = (&agorav1.Framework{}).ProtoReflect().Descriptor().Fields().ByName("filters")

// cloneSharingFilters returns a deep copy of f but for its filters: the
// copy's Filters is a new slice of f's (shared) filters.
func cloneSharingFilters(f *agorav1.Framework) *agorav1.Framework {
	view := &agorav1.Framework{} // f's fields but filters, aliased: only cloned
	src, dst := f.ProtoReflect(), view.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd != frameworkFilters {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	n := proto.Clone(view).(*agorav1.Framework)
	n.Filters = slices.Clone(f.GetFilters())
	return n
}

func compareFilter(a, b *agorav1.OfferFilter) int {
	return strings.Compare(a.GetAgentId(), b.GetAgentId())
}

// filterOf returns f's filter of agentID (filters are sorted by agent id).
func filterOf(f *agorav1.Framework, agentID string) (*agorav1.OfferFilter, bool) {
	fs := f.GetFilters()
	i, ok := slices.BinarySearchFunc(fs, agentID, func(flt *agorav1.OfferFilter, id string) int {
		return strings.Compare(flt.GetAgentId(), id)
	})
	if !ok {
		return nil, false
	}
	return fs[i], true
}

// addFilters stops offers of each of agentIDs to framework fid until until
// (keeping a later one), writing the framework once.
func (x *txn) addFilters(fid string, agentIDs []string, until *timestamppb.Timestamp) {
	f, ok := x.framework(fid)
	if !ok || len(agentIDs) == 0 {
		return
	}
	n := cloneSharingFilters(f)
	if !slices.IsSortedFunc(n.Filters, compareFilter) {
		slices.SortFunc(n.Filters, compareFilter)
	}
	var added []*agorav1.OfferFilter
	for _, id := range agentIDs {
		i, found := slices.BinarySearchFunc(n.Filters, id, func(flt *agorav1.OfferFilter, id string) int {
			return strings.Compare(flt.GetAgentId(), id)
		})
		switch {
		case !found:
			added = append(added, &agorav1.OfferFilter{AgentId: id, Until: clone(until)})
		case cmpTS(until, n.Filters[i].GetUntil()) > 0:
			n.Filters[i] = &agorav1.OfferFilter{AgentId: id, Until: clone(until)}
		}
	}
	if len(added) > 0 {
		slices.SortStableFunc(added, compareFilter)
		added = slices.CompactFunc(added, func(a, b *agorav1.OfferFilter) bool { return a.GetAgentId() == b.GetAgentId() })
		merged := make([]*agorav1.OfferFilter, 0, len(n.Filters)+len(added))
		i, j := 0, 0
		for i < len(n.Filters) && j < len(added) {
			if compareFilter(n.Filters[i], added[j]) < 0 {
				merged = append(merged, n.Filters[i])
				i++
			} else {
				merged = append(merged, added[j])
				j++
			}
		}
		merged = append(merged, n.Filters[i:]...)
		n.Filters = append(merged, added[j:]...)
	}
	x.putFramework(n)
}
