// Package raftlog is the masters' Raft log and stable store: a bbolt file
// in raft-boltdb's format (buckets "logs" and "conf", big-endian uint64
// keys, each raft.Log as MessagePack with the same codec settings), so a
// data directory written by raft-boltdb opens here and one written here
// opens with raft-boltdb (the chaos checker reads logs that way).
//
// It exists for the write path. raft-boltdb encodes every entry into a
// buffer that starts empty and doubles as the encoder flushes, which at
// a million tasks was half of a follower's time in StoreLogs and a tenth
// of everything it allocated. [Store.StoreLogs] encodes a whole batch
// into one buffer sized from the entries up front and hands bbolt slices
// of it (bbolt keeps a value's bytes until the transaction commits, not
// after).
//
// Every write commits with an fsync (bbolt's default; NoSync is never
// set). Get of a missing key answers an error whose text is "not found",
// which hashicorp/raft checks for on a fresh store.
package raftlog
