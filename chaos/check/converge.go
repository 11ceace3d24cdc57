package check

import (
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
)

// Converged checks that replicas which applied the same number of entries
// hold the same state: roles, agents, frameworks, offers, tasks,
// reservations and volumes must be equal between any two states with the
// same index.
func Converged(states []*fsm.State) []Violation {
	var out []Violation
	for i := 0; i < len(states); i++ {
		for j := i + 1; j < len(states); j++ {
			a, b := states[i], states[j]
			if a == nil || b == nil || a.Index() != b.Index() {
				continue
			}
			if what := firstDiff(a, b); what != "" {
				out = append(out, violation("divergence", "replicas %d and %d differ at index %d in %s", i, j, a.Index(), what))
			}
		}
	}
	return out
}

func firstDiff(a, b *fsm.State) string {
	type table struct {
		name string
		get  func(*fsm.State) []proto.Message
	}
	tables := []table{
		{"roles", func(s *fsm.State) []proto.Message { return msgs(s.Roles()) }},
		{"agents", func(s *fsm.State) []proto.Message { return msgs(s.Agents()) }},
		{"frameworks", func(s *fsm.State) []proto.Message { return msgs(s.Frameworks()) }},
		{"offers", func(s *fsm.State) []proto.Message { return msgs(s.Offers()) }},
		{"tasks", func(s *fsm.State) []proto.Message { return msgs(s.Tasks()) }},
		{"reservations", func(s *fsm.State) []proto.Message { return msgs(s.Reservations()) }},
		{"volumes", func(s *fsm.State) []proto.Message { return msgs(s.Volumes()) }},
	}
	for _, t := range tables {
		x, y := t.get(a), t.get(b)
		if len(x) != len(y) {
			return t.name
		}
		for k := range x {
			if !proto.Equal(x[k], y[k]) {
				return t.name
			}
		}
	}
	return ""
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}
