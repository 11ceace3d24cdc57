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
	n := cloneWithoutFilters(f)
	n.Filters = slices.Clone(f.GetFilters())
	return n
}

// cloneWithoutFilters returns a deep copy of f but for its filters, which
// it leaves nil.
func cloneWithoutFilters(f *agorav1.Framework) *agorav1.Framework {
	view := &agorav1.Framework{} // f's fields but filters, aliased: only cloned
	src, dst := f.ProtoReflect(), view.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd != frameworkFilters {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return proto.Clone(view).(*agorav1.Framework)
}

func compareFilter(a, b *agorav1.OfferFilter) int {
	return strings.Compare(a.GetAgentId(), b.GetAgentId())
}

// filterOf returns f's filter of agentID (filters are sorted by agent id).
func filterOf(f *agorav1.Framework, agentID string) (*agorav1.OfferFilter, bool) {
	fs := f.GetFilters()
	i, ok := filterIndex(fs, agentID)
	if !ok {
		return nil, false
	}
	return fs[i], true
}

// filterIndex is where agentID's filter is in fs (sorted by agent id), or
// where it would go.
func filterIndex(fs []*agorav1.OfferFilter, agentID string) (int, bool) {
	return slices.BinarySearchFunc(fs, agentID, func(flt *agorav1.OfferFilter, id string) int {
		return strings.Compare(flt.GetAgentId(), id)
	})
}

// addFilters stops offers of each of agentIDs to framework fid until until
// (keeping a later one), writing the framework once, and not at all when
// every filter was already as late. It builds the new filter list in one
// allocation: an Accept adds one filter to a list of up to one per agent.
//
// A dry run (State.Judge) skips it: a filter never refuses a command, and
// the Accept or Decline that sets it has changed the state already by
// taking its offers.
func (x *txn) addFilters(fid string, agentIDs []string, until *timestamppb.Timestamp) {
	if x.judging {
		return
	}
	f, ok := x.framework(fid)
	if !ok || len(agentIDs) == 0 {
		return
	}
	old := f.GetFilters() // sorted by agent id, one per agent (restore sorts an old snapshot's)
	if len(agentIDs) == 1 {
		// An Accept's one filter: a binary search and one copy, not a
		// pass over every filter (up to one per agent).
		id := agentIDs[0]
		i, found := filterIndex(old, id)
		if found && cmpTS(until, old[i].GetUntil()) <= 0 {
			return
		}
		merged := make([]*agorav1.OfferFilter, len(old), len(old)+1)
		copy(merged, old)
		flt := &agorav1.OfferFilter{AgentId: id, Until: clone(until)}
		if found {
			merged[i] = flt
		} else {
			merged = slices.Insert(merged, i, flt)
		}
		n := cloneWithoutFilters(f)
		n.Filters = merged
		x.putFramework(n)
		return
	}
	ids := slices.Clone(agentIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	// One pass over both sorted lists: count what is new or later.
	grow, changed := 0, false
	for i, j := 0, 0; j < len(ids); {
		switch {
		case i < len(old) && old[i].GetAgentId() < ids[j]:
			i++
		case i < len(old) && old[i].GetAgentId() == ids[j]:
			if cmpTS(until, old[i].GetUntil()) > 0 {
				changed = true
			}
			i++
			j++
		default:
			grow++
			changed = true
			j++
		}
	}
	if !changed {
		return
	}
	merged := make([]*agorav1.OfferFilter, 0, len(old)+grow)
	i, j := 0, 0
	for i < len(old) || j < len(ids) {
		switch {
		case j == len(ids) || (i < len(old) && old[i].GetAgentId() < ids[j]):
			merged = append(merged, old[i])
			i++
		case i < len(old) && old[i].GetAgentId() == ids[j]:
			if cmpTS(until, old[i].GetUntil()) > 0 {
				merged = append(merged, &agorav1.OfferFilter{AgentId: ids[j], Until: clone(until)})
			} else {
				merged = append(merged, old[i])
			}
			i++
			j++
		default:
			merged = append(merged, &agorav1.OfferFilter{AgentId: ids[j], Until: clone(until)})
			j++
		}
	}
	n := cloneWithoutFilters(f)
	n.Filters = merged
	x.putFramework(n)
}
