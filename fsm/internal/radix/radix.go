package radix

import (
	"sync/atomic"
	"unsafe"
)

// generations hands every Txn a number no other Txn has had; a node whose
// gen equals its Txn's is reachable only from that Txn and may be changed
// in place. Committed trees never hold the current gen of any live Txn.
var generations atomic.Uint64

// Node is one node of a Tree. Nodes reachable from a committed Tree are
// immutable.
//
// A node is 80 bytes (it was 112: []byte prefix and key, and a bool of
// its own for leaf): a master holding a million tasks holds about six
// million of them. Prefix and key are strings over the bytes of the keys
// given to Insert and Build (which must not change afterwards), and the
// leaf flag is the top bit of gen.
type Node struct {
	// prefix is the part of the key this node adds to its parent's (it
	// starts with the edge label; empty at the root). It usually aliases
	// key.
	prefix string
	// key and val are the leaf stored at this node when it is a leaf.
	key   string
	val   interface{}
	edges []edge // sorted by label
	// gen is the generation of the Txn that owns the node (low 63 bits)
	// and, in leafBit, whether the node holds a leaf.
	gen uint64
}

// leafBit marks a leaf in Node.gen; generations stay far below it.
const leafBit = 1 << 63

func (n *Node) isLeaf() bool { return n.gen&leafBit != 0 }

// owner is the generation of the Txn that may change n in place.
func (n *Node) owner() uint64 { return n.gen &^ leafBit }

// setLeaf makes n hold k and v.
func (n *Node) setLeaf(k string, v interface{}) {
	n.key, n.val = k, v
	n.gen |= leafBit
}

// clearLeaf drops n's leaf.
func (n *Node) clearLeaf() {
	n.key, n.val = "", nil
	n.gen &^= leafBit
}

// str is b as a string without a copy: b must never change afterwards
// (keys given to Insert and Build never do).
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// keyBytes is n's key as the []byte the caller inserted.
func (n *Node) keyBytes() []byte { return unsafe.Slice(unsafe.StringData(n.key), len(n.key)) }

// hasPrefix reports whether b starts with p.
func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

type edge struct {
	label byte
	node  *Node
}

// WalkFn is called for each key and value; returning true stops the walk.
type WalkFn func(k []byte, v interface{}) bool

// Tree is an immutable radix tree.
type Tree struct {
	root *Node
	size int
}

// New returns an empty tree.
func New() *Tree { return &Tree{root: &Node{}} }

// Len returns the number of keys in the tree.
func (t *Tree) Len() int { return t.size }

// Root returns the root node.
func (t *Tree) Root() *Node { return t.root }

// Get returns the value stored under k.
func (t *Tree) Get(k []byte) (interface{}, bool) { return t.root.Get(k) }

// Txn starts a transaction over t; t itself is never modified.
func (t *Tree) Txn() *Txn {
	return &Txn{root: t.root, size: t.size, gen: generations.Add(1)}
}

// edgeIndex returns the index of the edge labelled b, or -1.
func (n *Node) edgeIndex(b byte) int {
	es := n.edges
	if len(es) <= 8 {
		for i := range es {
			if es[i].label == b {
				return i
			}
		}
		return -1
	}
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].label < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(es) && es[lo].label == b {
		return lo
	}
	return -1
}

// Get returns the value stored under k.
func (n *Node) Get(k []byte) (interface{}, bool) {
	search := k
	for {
		if len(search) == 0 {
			if n.isLeaf() {
				return n.val, true
			}
			return nil, false
		}
		i := n.edgeIndex(search[0])
		if i < 0 {
			return nil, false
		}
		child := n.edges[i].node
		if !hasPrefix(search, child.prefix) {
			return nil, false
		}
		search = search[len(child.prefix):]
		n = child
	}
}

// seekPrefix returns the node under which every key has the given prefix
// and no key outside it does, or nil when no key has it.
func (n *Node) seekPrefix(prefix []byte) *Node {
	search := prefix
	for {
		if len(search) == 0 {
			return n
		}
		i := n.edgeIndex(search[0])
		if i < 0 {
			return nil
		}
		child := n.edges[i].node
		switch {
		case hasPrefix(search, child.prefix):
			search = search[len(child.prefix):]
			n = child
		case len(search) < len(child.prefix) && child.prefix[:len(search)] == string(search):
			return child
		default:
			return nil
		}
	}
}

// Walk calls fn for every key under n in key order until fn returns true.
func (n *Node) Walk(fn WalkFn) { walk(n, fn) }

// WalkPrefix calls fn for every key with the given prefix in key order
// until fn returns true.
func (n *Node) WalkPrefix(prefix []byte, fn WalkFn) {
	if m := n.seekPrefix(prefix); m != nil {
		walk(m, fn)
	}
}

func walk(n *Node, fn WalkFn) bool {
	if n.isLeaf() && fn(n.keyBytes(), n.val) {
		return true
	}
	for i := range n.edges {
		if walk(n.edges[i].node, fn) {
			return true
		}
	}
	return false
}

// Iterator walks the keys under a node in key order.
type Iterator struct {
	node  *Node
	stack [][]edge
}

// Iterator returns an iterator over the keys under n.
func (n *Node) Iterator() *Iterator { return &Iterator{node: n} }

// SeekPrefix restricts the iterator to the keys with the given prefix.
func (it *Iterator) SeekPrefix(prefix []byte) {
	it.stack = nil
	it.node = it.node.seekPrefix(prefix)
}

// Next returns the next key and value; ok is false at the end.
func (it *Iterator) Next() (k []byte, v interface{}, ok bool) {
	if it.stack == nil && it.node != nil {
		it.stack = [][]edge{{{node: it.node}}}
		it.node = nil
	}
	for len(it.stack) > 0 {
		top := len(it.stack) - 1
		es := it.stack[top]
		n := es[0].node
		if len(es) > 1 {
			it.stack[top] = es[1:]
		} else {
			it.stack = it.stack[:top]
		}
		if len(n.edges) > 0 {
			it.stack = append(it.stack, n.edges)
		}
		if n.isLeaf() {
			return n.keyBytes(), n.val, true
		}
	}
	return nil, nil, false
}
