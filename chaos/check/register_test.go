package check

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// loadRegisters reads a recorded register history (gzipped JSON lines).
func loadRegisters(t *testing.T, path string) []RegisterOp {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var ops []RegisterOp
	sc := bufio.NewScanner(z)
	for sc.Scan() {
		var o RegisterOp
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, o)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestRolesDecidesKillAllHistory replays the role history of process seed
// 301 x 60 s (a kill-all fault among 11): 70 writes with unknown outcomes
// made porcupine answer Unknown after its whole minute. With the writes
// nobody could have observed pruned it must decide, and say Ok.
func TestRolesDecidesKillAllHistory(t *testing.T) {
	ops := loadRegisters(t, "testdata/roles-process-301.jsonl.gz")
	res := Roles(ops, 2*time.Minute)
	if res.Result != porcupine.Ok {
		t.Fatalf("recorded history judged %s (%d ops, %d pruned, %d pending kept)", res.Result, res.Ops, res.Pruned, res.Pending)
	}
	if res.Pruned < 50 {
		t.Errorf("only %d pending writes pruned; expected most of the 70", res.Pruned)
	}
	// The same history with its last read of a written value changed to
	// a value nobody wrote must be caught.
	for i := len(ops) - 1; i >= 0; i-- {
		if !ops[i].Write && ops[i].Value != Absent {
			ops[i].Value = -1
			break
		}
	}
	if res := Roles(ops, 2*time.Minute); res.Result != porcupine.Illegal {
		t.Fatalf("planted read of an unwritten value judged %s", res.Result)
	}
}

// TestPruneKeepsObservablePendingWrites: a pending write a later read
// returned stays; one nobody read goes; one whose value was read only
// before it was called goes too, so that read is caught as impossible.
func TestPruneKeepsObservablePendingWrites(t *testing.T) {
	ops := []RegisterOp{
		w(0, "a", 1, 0, Pending),  // read below: kept
		r(1, "a", 1, 5, 6),        //
		w(0, "a", 2, 10, Pending), // never read: pruned
		w(0, "a", 3, 20, Pending), // read only before its call: pruned
		r(1, "a", 3, 15, 16),      // so this read has no write
		w(0, "a", Absent, 30, Pending),
		r(1, "a", Absent, 31, 32), // a read of absent after the pending delete keeps it
	}
	kept, pruned := Prune(ops)
	if pruned != 2 || len(kept) != len(ops)-2 {
		t.Fatalf("pruned %d, kept %d: %+v", pruned, len(kept), kept)
	}
	for _, o := range kept {
		if o.Write && (o.Value == 2 || o.Value == 3) {
			t.Fatalf("kept unobservable write %+v", o)
		}
	}
	if res := Roles(ops, 0); res.Result != porcupine.Illegal {
		t.Fatalf("read of a value whose write began later judged %s", res.Result)
	}
}

// TestRolesManyPendingWritesDecided: forty unknown-outcome writes nobody
// read, interleaved with acknowledged writes and reads, are decided.
func TestRolesManyPendingWritesDecided(t *testing.T) {
	var ops []RegisterOp
	v := 1.0
	for i := int64(0); i < 40; i++ {
		base := i * 100
		ops = append(ops, w(0, "a", v, base, base+10))
		ops = append(ops, r(1, "a", v, base+20, base+30))
		v++
		ops = append(ops, w(2, "a", v, base+40, Pending))
		v++
	}
	res := Roles(ops, time.Minute)
	if res.Result != porcupine.Ok || res.Pruned != 40 {
		t.Fatalf("judged %s with %d pruned", res.Result, res.Pruned)
	}
}

func TestRolesUnknownIsNotLinearizable(t *testing.T) {
	res := LinResult{Result: porcupine.Unknown, Ops: 10}
	if res.Linearizable() {
		t.Fatal("an undecided check counted as linearizable")
	}
	if v := res.Violations(); len(v) != 1 || v[0].Checker != "linearizability" {
		t.Fatalf("violations %v", v)
	}
}
