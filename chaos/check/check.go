package check

import "fmt"

// Violation is one broken promise found by a checker.
type Violation struct {
	// Checker names the checker: "linearizability", "lost-write",
	// "double-allocation", "offer-lifecycle", "teardown", "delivery", "preemption",
	// "kv-lost-write", ...
	Checker string
	// Detail says what was wrong, with ids.
	Detail string
}

// String formats the violation as "checker: detail".
func (v Violation) String() string { return v.Checker + ": " + v.Detail }

func violation(checker, format string, args ...any) Violation {
	return Violation{Checker: checker, Detail: fmt.Sprintf(format, args...)}
}
