package radix

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"unsafe"
)

// model is the sorted map a Tree must equal.
type model map[string]int

func (m model) keys(prefix string) []string {
	var out []string
	for k := range m {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func checkTree(t *testing.T, tr *Tree, m model, prefixes []string) {
	t.Helper()
	if tr.Len() != len(m) {
		t.Fatalf("Len %d, want %d", tr.Len(), len(m))
	}
	for k, v := range m {
		got, ok := tr.Get([]byte(k))
		if !ok || got.(int) != v {
			t.Fatalf("Get(%q) = %v %v, want %d", k, got, ok, v)
		}
	}
	for _, p := range prefixes {
		want := m.keys(p)
		var walked, iterated []string
		tr.Root().WalkPrefix([]byte(p), func(k []byte, v interface{}) bool {
			if m[string(k)] != v.(int) {
				t.Fatalf("walk %q: %q holds %v, want %d", p, k, v, m[string(k)])
			}
			walked = append(walked, string(k))
			return false
		})
		it := tr.Root().Iterator()
		it.SeekPrefix([]byte(p))
		for k, _, ok := it.Next(); ok; k, _, ok = it.Next() {
			iterated = append(iterated, string(k))
		}
		if !slices.Equal(walked, want) || !slices.Equal(iterated, want) {
			t.Fatalf("prefix %q: walk %q, iterator %q, want %q", p, walked, iterated, want)
		}
	}
}

// TestAgainstMap applies random inserts and deletes over a small alphabet
// (so that keys share prefixes and nodes split and merge) in transactions,
// and checks after each commit that the new tree equals a map and that
// every earlier committed tree still equals its own map (immutability).
func TestAgainstMap(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			key := func() string {
				b := make([]byte, rng.Intn(6))
				for i := range b {
					b[i] = "ab\x00c"[rng.Intn(4)]
				}
				return string(b)
			}
			prefixes := []string{"", "a", "ab", "a\x00", "b", "ba", "c", "abc", "zz"}
			tr, m := New(), model{}
			var scratch []byte
			var trees []*Tree
			var models []model
			for round := range 60 {
				tx := tr.Txn()
				next := model{}
				for k, v := range m {
					next[k] = v
				}
				for range 1 + rng.Intn(20) {
					k := key()
					if rng.Intn(4) == 0 {
						// Replace from scratch space that is overwritten
						// right after: the tree must not keep the key.
						scratch = append(scratch[:0], k...)
						v := rng.Int()
						prev, had := next[k]
						old, ok := tx.Replace(scratch, v)
						if ok != had || (ok && old.(int) != prev) {
							t.Fatalf("round %d Replace(%q) = %v %v, model has %v %v", round, k, old, ok, prev, had)
						}
						for i := range scratch {
							scratch[i] = 'z'
						}
						if had {
							next[k] = v
						}
					} else if rng.Intn(3) == 0 {
						_, had := next[k]
						old, ok := tx.Delete([]byte(k))
						if ok != had || (ok && old.(int) != next[k]) {
							t.Fatalf("round %d Delete(%q) = %v %v, model has %v", round, k, old, ok, had)
						}
						delete(next, k)
					} else {
						v := rng.Int()
						prev, had := next[k]
						old, ok := tx.Insert([]byte(k), v)
						if ok != had || (ok && old.(int) != prev) {
							t.Fatalf("round %d Insert(%q) = %v %v, model has %v %v", round, k, old, ok, prev, had)
						}
						next[k] = v
					}
					if got, ok := tx.Get([]byte(k)); ok != (next[k] != 0 || func() bool { _, h := next[k]; return h }()) {
						t.Fatalf("txn Get(%q) = %v %v", k, got, ok)
					}
				}
				if rng.Intn(5) == 0 {
					continue // dropped transaction
				}
				tr, m = tx.CommitOnly(), next
				// Writes after the commit must not show in the committed tree.
				tx.Insert([]byte("after-commit"), -1)
				tx.Delete([]byte(key()))
				trees, models = append(trees, tr), append(models, m)
				for i := range trees {
					checkTree(t, trees[i], models[i], prefixes)
				}
			}
		})
	}
}

func TestDeleteToEmptyAndReinsert(t *testing.T) {
	tx := New().Txn()
	keys := []string{"t\x00a", "t\x00ab", "t\x00b", "ta\x00x", ""}
	for i, k := range keys {
		tx.Insert([]byte(k), i)
	}
	full := tx.CommitOnly()
	for _, k := range keys {
		if _, ok := tx.Delete([]byte(k)); !ok {
			t.Fatalf("Delete(%q) found nothing", k)
		}
	}
	if tx.Len() != 0 || len(tx.Root().edges) != 0 || tx.Root().isLeaf() {
		t.Fatalf("tree not empty after deleting every key: len %d", tx.Len())
	}
	tx.Insert([]byte("x"), 9)
	empty := tx.CommitOnly()
	checkTree(t, empty, model{"x": 9}, []string{"", "x", "t"})
	checkTree(t, full, model{"t\x00a": 0, "t\x00ab": 1, "t\x00b": 2, "ta\x00x": 3, "": 4}, []string{"", "t", "t\x00", "t\x00a", "ta"})
}

func BenchmarkInsertSorted(b *testing.B) {
	keys := make([][]byte, 1<<20)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("t\x00fw-1\x00task-%07d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tx := New().Txn()
		for _, k := range keys {
			tx.Insert(k, nil)
		}
		if tx.CommitOnly().Len() != len(keys) {
			b.Fatal("lost keys")
		}
	}
	_ = bytes.Compare
}

// TestNodeSize: a node stays in the 80-byte size class (six million of
// them at a million tasks).
func TestNodeSize(t *testing.T) {
	if s := unsafe.Sizeof(Node{}); s != 80 {
		t.Fatalf("a Node is %d bytes, want 80", s)
	}
}
