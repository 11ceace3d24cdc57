package radix

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// TestBuildEqualsInserts: a tree made by Build holds what inserting the
// runs' keys one by one holds (the same Len, lookups, walks and iteration
// under every prefix), and goes on behaving the same under further
// transactions of inserts and deletes, committed and not. Runs come in
// two kinds: one per table (keys that begin with the table's
// NUL-terminated prefix, the restore's case) and arbitrary keys (which
// may share prefixes across runs and take the one-subtree path); keys may
// repeat and come out of order.
func TestBuildEqualsInserts(t *testing.T) {
	tables := []string{"t\x00", "ta\x00", "ti\x00", "a\x00", "fr\x00", "f\x00", "b"}
	prefixes := []string{"", "t", "t\x00", "t\x00a", "ta", "ta\x00", "a\x00", "f", "fr\x00b", "b", "c", "zz"}
	for seed := int64(1); seed <= 120; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			suffix := func() string {
				b := make([]byte, rng.Intn(6))
				for i := range b {
					b[i] = "ab\x00c"[rng.Intn(4)]
				}
				return string(b)
			}
			perTable := seed%3 != 0
			var runs [][]KV
			for r := range rng.Intn(6) {
				var run []KV
				n := rng.Intn(40)
				if rng.Intn(4) == 0 {
					n = rng.Intn(3)
				}
				for range n {
					k := suffix()
					if perTable {
						k = tables[r%len(tables)] + k
					}
					run = append(run, KV{Key: []byte(k), Val: rng.Int()})
				}
				if rng.Intn(2) == 0 {
					slices.SortStableFunc(run, func(a, b KV) int { return slices.Compare(a.Key, b.Key) })
				}
				runs = append(runs, run)
			}
			// The reference: the same keys inserted one by one.
			m := model{}
			tx := New().Txn()
			for _, run := range runs {
				for _, kv := range run {
					m[string(kv.Key)] = kv.Val.(int)
					tx.Insert(kv.Key, kv.Val)
				}
			}
			inserted := tx.CommitOnly()
			built := Build(runs...)
			checkTree(t, inserted, m, prefixes)
			checkTree(t, built, m, prefixes)
			assertSameShape(t, built.Root(), inserted.Root())

			// Both trees then take the same writes.
			trees := []*Tree{built, inserted}
			for round := range 20 {
				next := model{}
				for k, v := range m {
					next[k] = v
				}
				txs := []*Txn{trees[0].Txn(), trees[1].Txn()}
				for range 1 + rng.Intn(15) {
					k := suffix()
					if perTable && rng.Intn(4) != 0 {
						k = tables[rng.Intn(len(tables))] + k
					}
					if rng.Intn(2) == 0 {
						_, had := next[k]
						for i, x := range txs {
							if old, ok := x.Delete([]byte(k)); ok != had || (ok && old.(int) != next[k]) {
								t.Fatalf("round %d tree %d Delete(%q) = %v %v, model has %v", round, i, k, old, ok, had)
							}
						}
						delete(next, k)
					} else {
						v := rng.Int()
						prev, had := next[k]
						for i, x := range txs {
							if old, ok := x.Insert([]byte(k), v); ok != had || (ok && old.(int) != prev) {
								t.Fatalf("round %d tree %d Insert(%q) = %v %v, model has %v %v", round, i, k, old, ok, prev, had)
							}
						}
						next[k] = v
					}
				}
				if rng.Intn(4) == 0 {
					continue // dropped: the committed trees stay as they were
				}
				for i, x := range txs {
					trees[i] = x.CommitOnly()
				}
				m = next
				checkTree(t, trees[0], m, prefixes)
				checkTree(t, trees[1], m, prefixes)
				assertSameShape(t, trees[0].Root(), trees[1].Root())
			}
			// Build's own tree was never changed by the transactions.
			checkTree(t, built, modelOf(runs), prefixes)
		})
	}
}

func modelOf(runs [][]KV) model {
	m := model{}
	for _, run := range runs {
		for _, kv := range run {
			m[string(kv.Key)] = kv.Val.(int)
		}
	}
	return m
}

// assertSameShape checks that two trees have the same nodes: prefixes,
// leaves and edges (a radix tree's shape is given by its keys).
func assertSameShape(t *testing.T, a, b *Node) {
	t.Helper()
	if string(a.prefix) != string(b.prefix) || a.isLeaf() != b.isLeaf() || string(a.key) != string(b.key) || len(a.edges) != len(b.edges) {
		t.Fatalf("nodes differ: prefix %q/%q leaf %v/%v key %q/%q edges %d/%d", a.prefix, b.prefix, a.isLeaf(), b.isLeaf(), a.key, b.key, len(a.edges), len(b.edges))
	}
	for i := range a.edges {
		if a.edges[i].label != b.edges[i].label {
			t.Fatalf("under %q: edge %d labelled %q vs %q", a.prefix, i, a.edges[i].label, b.edges[i].label)
		}
		assertSameShape(t, a.edges[i].node, b.edges[i].node)
	}
}

func BenchmarkBuildSorted(b *testing.B) {
	keys := make([][]byte, 1<<20)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("t\x00fw-1\x00task-%07d", i))
	}
	run := make([]KV, len(keys))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for i, k := range keys {
			run[i] = KV{Key: k}
		}
		if Build(run).Len() != len(keys) {
			b.Fatal("lost keys")
		}
	}
}

// TestNormalizeSortsStably: normalize returns the keys sorted with the last
// value of equal keys, as a stable comparison sort does, for runs long
// enough to be radix sorted: keys with long shared prefixes, keys that are
// prefixes of others, repeats, and keys nested deeper than the radix sort
// recurses.
func TestNormalizeSortsStably(t *testing.T) {
	for seed := int64(1); seed <= 61; seed++ {
		rng := rand.New(rand.NewSource(seed))
		n := rng.Intn(3000)
		if seed == 61 {
			n = 5 * radixMinSpawn // buckets large enough to be sorted on goroutines
		}
		prefixes := []string{"", "ta\x00agent-0", "ta\x00agent-1", "t\x00fw-1\x00task-"}
		var run []KV
		switch seed % 4 {
		case 0: // nested: "a", "aa", ... in a random order, some twice
			for i := range n {
				run = append(run, KV{Key: bytes.Repeat([]byte("a"), rng.Intn(200)), Val: i})
			}
		default:
			for i := range n {
				b := []byte(prefixes[rng.Intn(len(prefixes))])
				for range rng.Intn(int(seed%7) + 2) {
					b = append(b, "ab\x00c\xff0"[rng.Intn(6)])
				}
				run = append(run, KV{Key: b, Val: i})
			}
		}
		want := slices.Clone(run)
		slices.SortStableFunc(want, func(a, b KV) int { return bytes.Compare(a.Key, b.Key) })
		var dedup []KV
		for i, kv := range want {
			if i+1 < len(want) && bytes.Equal(kv.Key, want[i+1].Key) {
				continue
			}
			dedup = append(dedup, kv)
		}
		got := normalize(slices.Clone(run))
		if len(got) != len(dedup) {
			t.Fatalf("seed %d: %d keys, want %d", seed, len(got), len(dedup))
		}
		for i := range got {
			if !bytes.Equal(got[i].Key, dedup[i].Key) || got[i].Val != dedup[i].Val {
				t.Fatalf("seed %d: key %d is %q=%v, want %q=%v", seed, i, got[i].Key, got[i].Val, dedup[i].Key, dedup[i].Val)
			}
		}
	}
}

// BenchmarkNormalizeIndex sorts a restore's task-by-agent index: a million
// keys in task order, their agents round-robin.
func BenchmarkNormalizeIndex(b *testing.B) {
	const tasks, agents = 1 << 20, 10_000
	run := make([]KV, tasks)
	keys := make([][]byte, tasks)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("ta\x00agent-%05d\x00fw-1\x00task-%07d", i%agents, i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for i, k := range keys {
			run[i] = KV{Key: k}
		}
		if len(normalize(run)) != tasks {
			b.Fatal("lost keys")
		}
	}
}
