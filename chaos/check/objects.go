package check

import "sort"

// LostObjects checks objects the cluster acknowledged creating (tasks by
// "framework/task", volumes by id): each must be present in the final
// state unless a removal (kill, destroy) of it was attempted. kind labels
// the violations.
func LostObjects(kind string, acked, removed, present map[string]bool) []Violation {
	ids := make([]string, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []Violation
	for _, id := range ids {
		if !present[id] && !removed[id] {
			out = append(out, violation("lost-write", "%s %s was acknowledged but is not in the final state", kind, id))
		}
	}
	return out
}

// OfferTokens checks that no offer was accepted successfully more than once:
// accepted maps offer id -> number of acknowledged accepts naming it.
func OfferTokens(accepted map[string]int) []Violation {
	ids := make([]string, 0, len(accepted))
	for id := range accepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []Violation
	for _, id := range ids {
		if n := accepted[id]; n > 1 {
			out = append(out, violation("double-allocation", "offer %s was accepted %d times", id, n))
		}
	}
	return out
}
