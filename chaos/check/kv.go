package check

import (
	"sort"
)

// KVRead reads one key back from the key-value service: its value and
// whether the service holds it. An error means the read got no answer (an
// unknown, not a missing key).
type KVRead func(key string) (value string, found bool, err error)

// KVResult is what KVLost found.
type KVResult struct {
	// Acked is the number of acknowledged writes checked, Read the number
	// read back (present or not), Unread the number whose read failed.
	Acked, Read, Unread int
	// FirstErr is the first read error, nil when every read answered.
	FirstErr error
	// Violations name every acknowledged write that was read back absent or
	// with another value ("kv-lost-write").
	Violations []Violation
}

// KVLost checks that no acknowledged write to the replicated key-value
// service (examples/kvservice) was lost. acked maps every key whose PUT was
// answered 2xx to the value written; the workload writes each key once,
// with a value of its own, so the key must be present with that value.
// read reads a key after the run, once the faults are healed. A key whose
// read fails is counted in Unread, not as a violation: whether an
// unavailable service is itself a failure is the caller's judgement.
func KVLost(acked map[string]string, read KVRead) KVResult {
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	res := KVResult{Acked: len(keys)}
	for _, k := range keys {
		want := acked[k]
		got, found, err := read(k)
		if err != nil {
			res.Unread++
			if res.FirstErr == nil {
				res.FirstErr = err
			}
			continue
		}
		res.Read++
		switch {
		case !found:
			res.Violations = append(res.Violations, violation("kv-lost-write", "key %q: write of %q was acknowledged but the key is absent", k, want))
		case got != want:
			res.Violations = append(res.Violations, violation("kv-lost-write", "key %q: write of %q was acknowledged but the key holds %q", k, want, got))
		}
	}
	return res
}
