package check

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

// Pending is the Return time of an operation whose outcome the client never
// learned (timeout, connection lost, Unavailable after the command may have
// been proposed): it may take effect at any time after its call.
const Pending int64 = math.MaxInt64

// Absent is the register value of a role that is not configured.
const Absent = 0.0

// RegisterOp is one operation on one role's configuration as a client saw
// it. Writes carry values unique within a run so that a read names the write
// it observed.
type RegisterOp struct {
	// Client is the recording client (for the visualisation's lanes).
	Client int
	// Key is the role name.
	Key string
	// Write is true for SetRole (Value = weight) and DeleteRole (Value =
	// Absent); false for a read (Value = weight read, Absent if missing).
	Write bool
	Value float64
	// Call and Return are nanoseconds since the start of the run; Return is
	// Pending for a write whose outcome is unknown. Failed reads are not
	// recorded.
	Call, Return int64
}

// Acked reports whether the cluster acknowledged a write.
func (o RegisterOp) Acked() bool { return o.Write && o.Return != Pending }

type regInput struct {
	write bool
	value float64
}

// registerModel is a per-role register; the history is partitioned by role.
func registerModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range h {
				k := op.Metadata.(string)
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			sort.Strings(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return Absent },
		Step: func(state, input, output any) (bool, any) {
			in := input.(regInput)
			if in.write {
				return true, in.value
			}
			return output.(float64) == state.(float64), state
		},
		DescribeOperation: func(input, output any) string {
			in := input.(regInput)
			if in.write {
				return "set(" + fmtValue(in.value) + ")"
			}
			return "get() -> " + fmtValue(output.(float64))
		},
		DescribeState: func(state any) string { return fmtValue(state.(float64)) },
		DescribeOperationMetadata: func(info any) string {
			return "role " + info.(string)
		},
	}
}

func fmtValue(v float64) string {
	if v == Absent {
		return "absent"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// LinResult is the outcome of the linearizability check.
type LinResult struct {
	// Result is porcupine's verdict: Ok, Illegal or Unknown (timed out).
	Result porcupine.CheckResult
	// Ops is the number of operations checked; Pruned the pending writes
	// left out (see Prune) and Pending those kept.
	Ops, Pruned, Pending int
	info                 porcupine.LinearizationInfo
	model                porcupine.Model
}

// Linearizable is true only when porcupine proved the history
// linearizable; a timeout (Unknown) proves nothing and counts as false.
func (r LinResult) Linearizable() bool { return r.Result == porcupine.Ok }

// Violations returns one violation when the history is not linearizable,
// or when the check could not decide within its budget.
func (r LinResult) Violations() []Violation {
	switch r.Result {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return []Violation{violation("linearizability", "role configuration history of %d ops (%d pending writes after pruning) could not be decided within the time budget", r.Ops, r.Pending)}
	}
	return []Violation{violation("linearizability", "role configuration history of %d ops is not linearizable", r.Ops)}
}

// Visualize writes porcupine's HTML visualisation of the check to path.
func (r LinResult) Visualize(path string) error {
	if err := porcupine.VisualizePath(r.model, r.info, path); err != nil {
		return fmt.Errorf("check: visualize %s: %w", path, err)
	}
	return nil
}

// Prune drops the pending writes (outcome unknown) that no read could have
// observed: those whose value no read returned after the write's call. It
// keeps everything else, in order.
//
// This is sound and complete for a register. If the pruned history has a
// linearization, appending the dropped writes at its end gives one of the
// whole history (a pending write may take effect at any time after its
// call, and nothing follows it there). If the whole history has one,
// removing such a write W from it leaves it valid: a read between W and the
// next write would have returned W's value after W's call, and there is
// none. Without pruning every pending write doubles porcupine's search (it
// may or may not have happened at each point), and a history with a
// kill-all fault holds dozens of them.
func Prune(ops []RegisterOp) (kept []RegisterOp, pruned int) {
	type kv struct {
		key   string
		value float64
	}
	// The latest return of a read of each (role, value).
	lastRead := map[kv]int64{}
	for _, o := range ops {
		if !o.Write {
			k := kv{o.Key, o.Value}
			if t, ok := lastRead[k]; !ok || o.Return > t {
				lastRead[k] = o.Return
			}
		}
	}
	kept = make([]RegisterOp, 0, len(ops))
	for _, o := range ops {
		if o.Write && o.Return == Pending {
			if t, ok := lastRead[kv{o.Key, o.Value}]; !ok || t <= o.Call {
				pruned++
				continue
			}
		}
		kept = append(kept, o)
	}
	return kept, pruned
}

// Roles checks that ops are linearizable as per-role registers. Pending
// writes may take effect at any point after their call; the ones no read
// can have observed are pruned first (see Prune). timeout bounds the search
// (0 = none).
func Roles(ops []RegisterOp, timeout time.Duration) LinResult {
	ops, pruned := Prune(ops)
	pending := 0
	var end int64
	for _, o := range ops {
		if o.Return == Pending {
			pending++
		}
		if o.Return != Pending && o.Return > end {
			end = o.Return
		}
		if o.Call > end {
			end = o.Call
		}
	}
	h := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		ret := o.Return
		if ret == Pending {
			ret = end + 1
		}
		out := any(o.Value)
		if o.Write {
			out = Absent
		}
		h = append(h, porcupine.Operation{ClientId: o.Client, Input: regInput{write: o.Write, value: o.Value},
			Call: o.Call, Output: out, Return: ret, Metadata: o.Key})
	}
	m := registerModel()
	res, info := porcupine.CheckOperationsVerbose(m, h, timeout)
	return LinResult{Result: res, Ops: len(h), Pruned: pruned, Pending: pending, info: info, model: m}
}

// LostWrites checks the final role configuration (role -> weight) against
// the writes: for every role with an acknowledged write, the final value
// must be the value of a write (acknowledged or pending) that no
// acknowledged write strictly follows in real time. A role nobody wrote
// is ignored.
func LostWrites(ops []RegisterOp, final map[string]float64) []Violation {
	writes := map[string][]RegisterOp{}
	for _, o := range ops {
		if o.Write {
			writes[o.Key] = append(writes[o.Key], o)
		}
	}
	keys := make([]string, 0, len(writes))
	for k := range writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Violation
	for _, k := range keys {
		ws := writes[k]
		var lastAckedCall int64 = -1
		var acked *RegisterOp
		for i, w := range ws {
			if w.Acked() && w.Call > lastAckedCall {
				lastAckedCall = w.Call
				acked = &ws[i]
			}
		}
		if acked == nil {
			continue
		}
		got := final[k]
		ok := false
		for _, w := range ws {
			// w may be last unless an acknowledged write began after w returned.
			superseded := false
			for _, a := range ws {
				if a.Acked() && w.Return != Pending && a.Call > w.Return {
					superseded = true
					break
				}
			}
			if !superseded && w.Value == got {
				ok = true
				break
			}
		}
		if !ok {
			out = append(out, violation("lost-write", "role %s: final value %s, but the acknowledged write of %s (and nothing that may follow it) says otherwise",
				k, fmtValue(got), fmtValue(acked.Value)))
		}
	}
	return out
}
