package radix

// Txn is a set of writes over a Tree, made visible as a new Tree by
// CommitOnly. It is not safe for concurrent use. Keys passed to Insert are
// kept (not copied) and must not be modified afterwards.
type Txn struct {
	root *Node
	size int
	gen  uint64
}

// Root returns the root of the tree as written so far. The node returned
// may change in place with the next write of this Txn, so walks over it
// must finish before the next Insert or Delete.
func (t *Txn) Root() *Node { return t.root }

// Len returns the number of keys as written so far.
func (t *Txn) Len() int { return t.size }

// Get returns the value stored under k as written so far.
func (t *Txn) Get(k []byte) (interface{}, bool) { return t.root.Get(k) }

// CommitOnly returns the tree as written; later writes of this Txn do not
// change it.
func (t *Txn) CommitOnly() *Tree {
	t.gen = generations.Add(1)
	return &Tree{root: t.root, size: t.size}
}

// writable returns n if this Txn created it, else a copy of n that it owns.
func (t *Txn) writable(n *Node) *Node {
	if n.owner() == t.gen {
		return n
	}
	c := &Node{prefix: n.prefix, key: n.key, val: n.val, gen: t.gen | n.gen&leafBit}
	if len(n.edges) > 0 {
		c.edges = make([]edge, len(n.edges), len(n.edges)+1)
		copy(c.edges, n.edges)
	}
	return c
}

func (n *Node) addEdge(e edge) {
	i := len(n.edges)
	for i > 0 && n.edges[i-1].label > e.label {
		i--
	}
	n.edges = append(n.edges, edge{})
	copy(n.edges[i+1:], n.edges[i:])
	n.edges[i] = e
}

func commonPrefix[A, B []byte | string](a A, b B) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Insert stores v under k, returning the value it replaced and whether
// there was one.
func (t *Txn) Insert(k []byte, v interface{}) (interface{}, bool) {
	old, updated := t.insertOwned(k, v)
	if !updated {
		t.size++
	}
	return old, updated
}

// insertOwned descends iteratively through the nodes this Txn owns (all of
// them in a tree the Txn built, as in a restore) as far as the key leads,
// and hands the rest of the key to insert at the last of them.
func (t *Txn) insertOwned(k []byte, v interface{}) (interface{}, bool) {
	n := t.root
	if n.owner() != t.gen {
		root, old, updated := t.insert(n, k, k, v)
		t.root = root
		return old, updated
	}
	search := k
	for len(search) > 0 {
		i := n.edgeIndex(search[0])
		if i < 0 {
			break
		}
		child := n.edges[i].node
		if child.owner() != t.gen || !hasPrefix(search, child.prefix) {
			break
		}
		search = search[len(child.prefix):]
		n = child
	}
	// n is owned: insert changes it in place (and copies what it does not
	// own below it).
	_, old, updated := t.insert(n, k, search, v)
	return old, updated
}

func (t *Txn) insert(n *Node, k, search []byte, v interface{}) (*Node, interface{}, bool) {
	if len(search) == 0 {
		old, updated := n.val, n.isLeaf()
		nc := t.writable(n)
		nc.setLeaf(str(k), v)
		return nc, old, updated
	}
	i := n.edgeIndex(search[0])
	if i < 0 {
		nc := t.writable(n)
		nc.addEdge(edge{label: search[0], node: &Node{prefix: str(search), key: str(k), val: v, gen: t.gen | leafBit}})
		return nc, nil, false
	}
	child := n.edges[i].node
	common := len(child.prefix)
	if !hasPrefix(search, child.prefix) {
		common = commonPrefix(search, child.prefix)
	}
	if common == len(child.prefix) {
		nchild, old, updated := t.insert(child, k, search[common:], v)
		if nchild == child {
			return n, old, updated
		}
		nc := t.writable(n)
		nc.edges[i].node = nchild
		return nc, old, updated
	}
	// The key leaves the child's prefix part way: split it.
	nc := t.writable(n)
	split := &Node{prefix: str(search[:common]), gen: t.gen}
	nc.edges[i].node = split
	mod := t.writable(child)
	mod.prefix = child.prefix[common:]
	split.edges = make([]edge, 1, 2)
	split.edges[0] = edge{label: mod.prefix[0], node: mod}
	search = search[common:]
	if len(search) == 0 {
		split.setLeaf(str(k), v)
		return nc, nil, false
	}
	split.addEdge(edge{label: search[0], node: &Node{prefix: str(search), key: str(k), val: v, gen: t.gen | leafBit}})
	return nc, nil, false
}

// Delete removes k, returning its value and whether it was there.
func (t *Txn) Delete(k []byte) (interface{}, bool) {
	root, old, deleted := t.delete(t.root, k, true)
	if !deleted {
		return nil, false
	}
	if root == nil {
		root = &Node{gen: t.gen}
	}
	t.root = root
	t.size--
	return old, true
}

// delete removes search under n; it returns n's replacement (nil when n is
// left empty and is not the root).
func (t *Txn) delete(n *Node, search []byte, isRoot bool) (*Node, interface{}, bool) {
	if len(search) == 0 {
		if !n.isLeaf() {
			return n, nil, false
		}
		old := n.val
		if !isRoot && len(n.edges) == 0 {
			return nil, old, true
		}
		nc := t.writable(n)
		nc.clearLeaf()
		if !isRoot && len(nc.edges) == 1 {
			t.mergeChild(nc)
		}
		return nc, old, true
	}
	i := n.edgeIndex(search[0])
	if i < 0 {
		return n, nil, false
	}
	child := n.edges[i].node
	if !hasPrefix(search, child.prefix) {
		return n, nil, false
	}
	nchild, old, deleted := t.delete(child, search[len(child.prefix):], false)
	if !deleted {
		return n, nil, false
	}
	nc := t.writable(n)
	if nchild != nil {
		nc.edges[i].node = nchild
		return nc, old, true
	}
	copy(nc.edges[i:], nc.edges[i+1:])
	nc.edges[len(nc.edges)-1] = edge{}
	nc.edges = nc.edges[:len(nc.edges)-1]
	if !isRoot && !nc.isLeaf() {
		switch len(nc.edges) {
		case 0:
			return nil, old, true
		case 1:
			t.mergeChild(nc)
		}
	}
	return nc, old, true
}

// mergeChild folds the only child of n (which holds no leaf) into n.
func (t *Txn) mergeChild(n *Node) {
	child := n.edges[0].node
	n.prefix += child.prefix
	n.key, n.val = child.key, child.val
	n.gen = n.owner() | child.gen&leafBit
	if len(child.edges) > 0 {
		n.edges = make([]edge, len(child.edges), len(child.edges)+1)
		copy(n.edges, child.edges)
	} else {
		n.edges = nil
	}
}
