package radix

import (
	"bytes"
	"runtime"
	"slices"
	"sort"
	"sync"
)

// KV is a key and its value, for Build.
type KV struct {
	Key []byte
	Val interface{}
}

// Build returns a tree holding the keys of runs as if they were inserted
// one by one, run after run, into an empty tree: a later value replaces an
// earlier one under the same key. Keys are kept, not copied, and must not
// be modified afterwards; Build may reorder the runs in place.
//
// Build is meant for restoring a large tree. It sorts a run whose keys are
// out of order (stably, so the last of equal keys wins), then builds each
// run's subtree bottom-up from its sorted keys, at most GOMAXPROCS runs at
// a time, with nodes and edges cut from slabs; and it joins the subtrees
// under the root when no run's common prefix is a prefix of another run's
// (as with one run per table of keys that begin with the table's
// NUL-terminated prefix). Otherwise it builds one subtree of all the runs'
// keys. The tree is the one inserts would build (a radix tree's shape is
// given by its keys); its nodes belong to no Txn, so a Txn copies them
// before writing, as it does any committed tree's.
func Build(runs ...[]KV) *Tree {
	var rs [][]KV
	for _, r := range runs {
		if len(r) > 0 {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return New()
	}
	parallel(len(rs), func(i int) { rs[i] = normalize(rs[i]) })
	subs := make([]subtree, len(rs))
	for i, r := range rs {
		first, last := r[0].Key, r[len(r)-1].Key
		subs[i] = subtree{prefix: first[:commonPrefix(first, last)], kvs: r}
	}
	slices.SortFunc(subs, func(a, b subtree) int { return bytes.Compare(a.prefix, b.prefix) })
	for i := 1; i < len(subs); i++ {
		// In sorted order a prefix of any later run's prefix is one of
		// the next run's.
		if bytes.HasPrefix(subs[i].prefix, subs[i-1].prefix) {
			var all []KV
			for _, r := range rs {
				all = append(all, r...)
			}
			all = normalize(all)
			first, last := all[0].Key, all[len(all)-1].Key
			subs = []subtree{{prefix: first[:commonPrefix(first, last)], kvs: all}}
			break
		}
	}
	parallel(len(subs), func(i int) {
		var b builder
		subs[i].node = b.build(subs[i].kvs, 0)
	})
	size := 0
	for _, s := range subs {
		size += len(s.kvs)
	}
	if len(subs) == 1 && len(subs[0].prefix) == 0 {
		return &Tree{root: subs[0].node, size: size}
	}
	return &Tree{root: &Node{edges: join(subs, 0)}, size: size}
}

// subtree is one run and, once built, its node, whose prefix is the run's
// whole common prefix.
type subtree struct {
	prefix []byte
	kvs    []KV
	node   *Node
}

// join returns the edges under a node at depth for subtrees whose prefixes
// (sorted, none a prefix of another, all longer than depth) agree up to
// depth.
func join(subs []subtree, depth int) []edge {
	var edges []edge
	for i := 0; i < len(subs); {
		label := subs[i].prefix[depth]
		j := i + 1
		for j < len(subs) && subs[j].prefix[depth] == label {
			j++
		}
		if j == i+1 {
			n := subs[i].node
			n.prefix = n.prefix[depth:]
			edges = append(edges, edge{label: label, node: n})
		} else {
			first, last := subs[i].prefix, subs[j-1].prefix
			end := depth + commonPrefix(first[depth:], last[depth:])
			edges = append(edges, edge{label: label, node: &Node{prefix: str(first[depth:end]), edges: join(subs[i:j], end)}})
		}
		i = j
	}
	return edges
}

// parallel calls f(0..n-1) on at most GOMAXPROCS goroutines.
func parallel(n int, f func(int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// normalize returns kvs sorted by key with only the last of equal keys
// kept (in place when kvs is already strictly ascending, the fast path).
func normalize(kvs []KV) []KV {
	i := 1
	for i < len(kvs) && bytes.Compare(kvs[i-1].Key, kvs[i].Key) < 0 {
		i++
	}
	if i >= len(kvs) {
		return kvs
	}
	// Sort a permutation stably: a radix sort by the keys' bytes, which
	// touches each key a few times instead of comparing it log(n) times
	// (a million index keys, out of order, are a restore's longest step).
	perm := make([]int32, len(kvs))
	for i := range perm {
		perm[i] = int32(i)
	}
	rs := radixSorter{kvs: kvs, tmp: make([]int32, len(kvs)), cur: make([]uint16, len(kvs)),
		spare: make(chan struct{}, runtime.GOMAXPROCS(0)-1)}
	rs.sort(perm, 0, 0, 0)
	rs.wg.Wait()
	sorted := make([]KV, 0, len(kvs))
	for i, p := range perm {
		if i+1 < len(perm) && bytes.Equal(kvs[p].Key, kvs[perm[i+1]].Key) {
			continue // a later value of the same key follows
		}
		sorted = append(sorted, kvs[p])
	}
	return sorted
}

// radixSorter sorts permutations of kvs by key (most significant byte
// first), stably: equal keys keep their order.
type radixSorter struct {
	kvs []KV
	tmp []int32  // scratch for scattering a range of the permutation
	cur []uint16 // scratch: each key's byte at the current depth, +1 (0: the key ends)
	// spare holds a token for each goroutine that may sort a large bucket
	// beside the caller's (other runs may have finished with their cores).
	spare chan struct{}
	wg    sync.WaitGroup
}

const (
	// radixMinSort is the shortest range sorted by bytes: shorter ranges are
	// sorted by comparisons.
	radixMinSort = 64
	// radixMaxLevels bounds the recursion (keys nested like "a", "aa", ...
	// would otherwise recurse once per key); deeper ranges are sorted by
	// comparisons.
	radixMaxLevels = 32
	// radixMinSpawn is the shortest bucket sorted on a goroutine of its own.
	radixMinSpawn = 1 << 15
)

// sort sorts perm, whose keys all agree on their first depth bytes, at
// the given level of recursion. perm starts at off in the whole
// permutation; tmp and cur are used at the same offsets.
func (rs *radixSorter) sort(perm []int32, off, depth, level int) {
	for len(perm) > 1 {
		if len(perm) < radixMinSort || level >= radixMaxLevels {
			rs.compareSort(perm, depth)
			return
		}
		// Skip the bytes that every key shares.
		first := rs.kvs[perm[0]].Key[depth:]
		lcp := len(first)
		for _, p := range perm[1:] {
			if lcp = commonPrefix(first[:lcp], rs.kvs[p].Key[depth:]); lcp == 0 {
				break
			}
		}
		depth += lcp
		// Count the keys by their byte at depth (0: the key ends there).
		var counts [257]int
		cur := rs.cur[off : off+len(perm)]
		for i, p := range perm {
			c := uint16(0)
			if k := rs.kvs[p].Key; len(k) > depth {
				c = uint16(k[depth]) + 1
			}
			cur[i] = c
			counts[c]++
		}
		if counts[0] == len(perm) {
			return // equal keys: their order is the stable one
		}
		var next [257]int
		sum := 0
		for c, n := range counts {
			next[c] = sum
			sum += n
		}
		tmp := rs.tmp[off : off+len(perm)]
		for i, p := range perm {
			tmp[next[cur[i]]] = p
			next[cur[i]]++
		}
		copy(perm, tmp)
		// The keys that end at depth (equal, in order) come first; each
		// other bucket is sorted past the byte its keys share, the largest
		// by this loop instead of a call.
		largest, start := 0, 0
		for c := 1; c < 257; c++ {
			if counts[c] > counts[largest] {
				largest = c
			}
		}
		var rest []int32
		restOff := 0
		for c, n := range counts {
			if c > 0 && n > 1 {
				if c == largest {
					rest, restOff = perm[start:start+n], off+start
				} else {
					rs.sortBucket(perm[start:start+n], off+start, depth+1, level+1)
				}
			}
			start += n
		}
		perm, off = rest, restOff
		depth++
		level++
	}
}

// sortBucket sorts a bucket, on a goroutine of its own when it is large
// and a core is spare.
func (rs *radixSorter) sortBucket(perm []int32, off, depth, level int) {
	if len(perm) >= radixMinSpawn {
		select {
		case rs.spare <- struct{}{}:
			rs.wg.Add(1)
			go func() {
				defer rs.wg.Done()
				rs.sort(perm, off, depth, level)
				<-rs.spare
			}()
			return
		default:
		}
	}
	rs.sort(perm, off, depth, level)
}

// compareSort sorts perm, whose keys agree on their first depth bytes, by
// comparisons, equal keys in index order.
func (rs *radixSorter) compareSort(perm []int32, depth int) {
	slices.SortFunc(perm, func(a, b int32) int {
		if c := bytes.Compare(rs.kvs[a].Key[depth:], rs.kvs[b].Key[depth:]); c != 0 {
			return c
		}
		return int(a - b)
	})
}

// builder cuts nodes and edges from slabs.
type builder struct {
	nodes  []Node
	edges  []edge
	bounds []int
}

const (
	nodeSlab = 1024
	edgeSlab = 4096
)

func (b *builder) node() *Node {
	if len(b.nodes) == 0 {
		b.nodes = make([]Node, nodeSlab)
	}
	n := &b.nodes[0]
	b.nodes = b.nodes[1:]
	return n
}

// edgeSlice returns k edges whose capacity is k (an append copies them).
func (b *builder) edgeSlice(k int) []edge {
	if k > edgeSlab/4 {
		return make([]edge, k)
	}
	if len(b.edges) < k {
		b.edges = make([]edge, edgeSlab)
	}
	e := b.edges[:k:k]
	b.edges = b.edges[k:]
	return e
}

// build returns the node holding kvs (sorted, distinct, all agreeing up
// to start), whose prefix starts at start.
func (b *builder) build(kvs []KV, start int) *Node {
	first, last := kvs[0].Key, kvs[len(kvs)-1].Key
	end := start + commonPrefix(first[start:], last[start:])
	n := b.node()
	n.prefix = str(first[start:end])
	if len(first) == end {
		// The shortest key sorts first; only it can end here.
		n.setLeaf(str(first), kvs[0].Val)
		kvs = kvs[1:]
	}
	if len(kvs) == 0 {
		return n
	}
	// Every key left is longer than end: split them by their byte there.
	base := len(b.bounds)
	for i := 0; i < len(kvs); {
		label := kvs[i].Key[end]
		j := i + 1
		// Short runs are common near the leaves: look a few keys ahead
		// before searching.
		for j < len(kvs) && j < i+8 && kvs[j].Key[end] == label {
			j++
		}
		if j == i+8 {
			j = i + 8 + sort.Search(len(kvs)-i-8, func(x int) bool { return kvs[i+8+x].Key[end] != label })
		}
		b.bounds = append(b.bounds, j)
		i = j
	}
	k := len(b.bounds) - base
	n.edges = b.edgeSlice(k)
	i := 0
	for e := range k {
		j := b.bounds[base+e]
		child := b.build(kvs[i:j], end)
		n.edges[e] = edge{label: kvs[i].Key[end], node: child}
		i = j
	}
	b.bounds = b.bounds[:base]
	return n
}
