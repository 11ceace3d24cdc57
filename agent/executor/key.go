package executor

// Validate reports whether both ids of k can be directory names (no "/",
// NUL, "." or ".."): what Launch requires, for callers that build a
// sandbox path from ids they were given (the agent's /sandbox endpoint).
func (k TaskKey) Validate() error { return k.validate() }
