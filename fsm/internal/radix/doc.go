// Package radix is the immutable (persistent) radix tree that holds the
// replicated state of package fsm: a copy-on-write tree in which a Txn
// copies the path to each key it writes and a committed Tree is never
// modified again, so readers share it freely without locks.
//
// It offers the subset of github.com/hashicorp/go-immutable-radix that the
// fsm uses (Get, Insert, Delete, prefix walks and iterators) with two
// differences that matter at a million keys: there are no watch channels
// (iradix allocates one per node and per leaf, about half of the tree's
// memory; nothing in agora watched them), and a Txn recognises the nodes
// it created by a generation number instead of an LRU cache of writable
// nodes, so a transaction that writes many keys (Restore) modifies its own
// nodes in place without hashing or copying. A node holds its leaf inline.
package radix
