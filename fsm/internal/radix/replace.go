package radix

// Replace stores v under k when k is in the tree already, returning the
// value it replaced; it changes nothing and returns false when k is not.
// Unlike Insert it does not keep k (the node keeps its own key), so k may
// be scratch space the caller reuses: a caller that rewrites a stored
// value (a new version of a record) needs no new key.
func (t *Txn) Replace(k []byte, v interface{}) (interface{}, bool) {
	root, old, ok := t.replace(t.root, k, v)
	if ok {
		t.root = root
	}
	return old, ok
}

// replace returns n's replacement: n itself when nothing below it changed
// or n is owned, else a copy that this Txn owns.
func (t *Txn) replace(n *Node, search []byte, v interface{}) (*Node, interface{}, bool) {
	if len(search) == 0 {
		if !n.isLeaf() {
			return n, nil, false
		}
		old := n.val
		nc := t.writable(n)
		nc.val = v
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
	nchild, old, ok := t.replace(child, search[len(child.prefix):], v)
	if !ok || nchild == child {
		return n, old, ok
	}
	nc := t.writable(n)
	nc.edges[i].node = nchild
	return nc, old, true
}
